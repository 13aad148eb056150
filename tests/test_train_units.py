"""Fast checks without Ray: config validation messages, FGM/PGD, freezing, LoRA merge, data encoding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.config.loader import ConfigError, load_config
from recsys.training.config import TrainConfig

BASE = {
    "model": {"kind": "cross_encoder", "name_or_path": "random-bert-tiny"},
    "data": {"train": {"path": "/tmp", "table": "pairs"}},
}


def _cfg(**over):
    data = {**BASE, **over}
    return load_config(TrainConfig, None, data=data)


@pytest.mark.parametrize(
    "over, fix",
    [
        ({"loss": {"name": "full_softmax"}}, "does not fit model.kind"),
        (
            {"strategy": {"name": "deepspeed"}, "adversarial": {"method": "pgd"}},
            "pgd needs strategy.name: ddp",
        ),
        ({"strategy": {"precision": "fp16"}}, "fp16 needs GPUs"),
        (
            {"loss": {"name": "listwise", "list_size": 3}, "train": {"batch_size": 8}},
            "multiple of loss.list_size",
        ),
        ({"data": {"train": {"path": "/tmp"}, "hard_negatives": True}}, "bi_encoder only"),
        ({"lora": {"enabled": True}, "adversarial": {"method": "fgm"}}, "which lora.enabled freezes"),
        (
            {"model": {**BASE["model"], "freeze_layers": 1}, "adversarial": {"method": "pgd"}},
            "model.freeze_layers freezes",
        ),
    ],
)
def test_config_errors_name_the_fix(over, fix):
    with pytest.raises(ConfigError, match=fix):
        _cfg(**over)


def test_sequential_text_needs_items_and_unknown_keys_are_reported():
    with pytest.raises(ConfigError, match="needs data.items"):
        load_config(
            TrainConfig,
            None,
            data={
                "model": {"kind": "sequential", "sequential": {"use_text": True}},
                "data": {"train": {"path": "/tmp"}},
            },
        )
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        _cfg(train={"batchsize": 3})


def test_defaults_follow_the_kind():
    cfg = _cfg()
    assert (cfg.loss_name, cfg.metric_name) == ("bce", "f1")


def test_fgm_and_pgd_perturb_within_epsilon_and_restore():
    from recsys.training.adversarial import EmbeddingAttack

    emb = torch.nn.Module()
    emb.word_embeddings = torch.nn.Embedding(4, 3)
    before = emb.word_embeddings.weight.detach().clone()
    grad = [torch.ones(4, 3)]
    fgm = EmbeddingAttack(emb, "fgm", epsilon=0.5)
    fgm.run(grad, lambda: None)
    delta = emb.word_embeddings.weight.detach() - before
    assert torch.norm(delta).item() == pytest.approx(0.5, abs=1e-5)  # exactly epsilon along the gradient
    fgm.restore()
    torch.testing.assert_close(emb.word_embeddings.weight.detach(), before)
    pgd = EmbeddingAttack(emb, "pgd", epsilon=0.4, alpha=0.3, steps=3)
    pgd.run(grad, lambda: (emb.word_embeddings.weight**2).sum())
    assert (
        torch.norm(emb.word_embeddings.weight.detach() - before).item() <= 0.4 + 1e-5
    )  # projected to the ball
    pgd.restore()
    torch.testing.assert_close(emb.word_embeddings.weight.detach(), before)
    with pytest.raises(ValueError, match="emb_name"):
        EmbeddingAttack(emb, "fgm", emb_name="nope")


def test_freeze_layers_and_lora_merge(tiny_bert_dir, tmp_path):
    from recsys.models import load_model
    from recsys.models.bi_encoder import BiEncoder
    from recsys.models.builders import prepare_encoder
    from recsys.training.lora import apply_lora, has_lora, merged_copy

    model = BiEncoder.from_encoder(str(tiny_bert_dir))
    prepare_encoder(model.encoder, freeze_layers=1)
    frozen = {n for n, p in model.encoder.named_parameters() if not p.requires_grad}
    assert any(n.startswith("embeddings.") for n in frozen) and any(
        n.startswith("encoder.layer.0.") for n in frozen
    )
    assert not any(n.startswith("encoder.layer.1.") for n in frozen) and any(
        n.startswith("pooler.") for n in frozen
    )
    apply_lora(model, r=2, alpha=4, dropout=0.0, target_modules=["query", "value"])
    assert has_lora(model)
    with torch.no_grad():  # make the adapters matter
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    texts = ["usb cable", "gaming mouse"]
    want = model.encode(texts)
    merged = merged_copy(model, tmp_path / "adapter")
    assert not has_lora(merged) and (tmp_path / "adapter" / "encoder" / "adapter_config.json").is_file()
    merged.save_pretrained(tmp_path / "m")
    np.testing.assert_allclose(load_model(tmp_path / "m").encode(texts), want, atol=1e-5)


def test_encode_sequences_windows_and_holdout():
    from recsys.kinds.data import encode_sequences

    batch = pd.DataFrame(
        {"items": [["a", "b", "c", "d"], ["a"], ["x", "b", "c"]], "country": ["DE", "UK", "FR"]}
    )
    index = {"a": 1, "b": 2, "c": 3, "d": 4}
    feats = {"country": {"DE": 1, "UK": 2}}
    train = encode_sequences(batch, index, feats, max_len=3, holdout=1, mode="train")
    # user 1: a b c (d held out) -> [0, 1, 2, 3]; user 2 too short;
    # user 3: unknown x dropped -> b (c held out) too short
    assert train["items"].tolist() == [[0, 1, 2, 3]] and train["user"].tolist() == [[1]]
    valid = encode_sequences(batch, index, feats, max_len=3, holdout=1, mode="valid")
    assert valid["history"].tolist() == [[1, 2, 3], [0, 0, 2]] and valid["target"].tolist() == [4, 3]
    assert valid["user"].tolist() == [[1], [0]]  # FR is unknown -> 0


# -- in-loop validation goes through recsys.evaluation ----------------------------------------------
class _StubSequential(torch.nn.Module):
    """Item table = identity, so a row's last hidden state IS its score per item (index 0 = padding)."""

    def __init__(self, scores: list[list[float]]):
        super().__init__()
        self.hidden = torch.tensor(scores)  # [B, V]
        self.table = torch.cat(
            [torch.zeros(1, self.hidden.shape[1]), torch.eye(self.hidden.shape[1])]
        )  # [V+1, V]

    def all_item_repr(self) -> torch.Tensor:
        return self.table

    def forward(self, history: torch.Tensor, user=None) -> torch.Tensor:
        return self.hidden[:, None, :].expand(-1, history.shape[1], -1)


def _evaluator_metrics(es, scores: np.ndarray, metrics: list[str]) -> dict:
    from recsys.evaluation import RankingEvaluator

    rows = {q: i for i, q in enumerate(es.query_ids)}
    return RankingEvaluator(es, metrics)(lambda batch, items: scores[[rows[q] for q in batch.query_ids]])


def test_sequential_validation_equals_the_evaluate_jobs_full_ranking():
    from recsys.evaluation import EvalSet
    from recsys.kinds.sequential import METRICS as SEQUENTIAL_METRICS
    from recsys.kinds.sequential import SequentialTask
    from recsys.training.validation import validate

    scores = [
        [0.9, 0.8, 0.7, 0.6, 0.5],  # history {1}, target 3: item 1 not ranked -> 0-based rank 1
        [0.1, 0.5, 0.5, 0.2, 0.3],  # history {4}, target 3 tied with item 2 -> ranked below it: rank 1
        [0.5, 0.4, 0.3, 0.2, 0.1],
    ]  # history {5, 1}, target 5 (a repeat stays rankable) -> rank 3
    batch = {"history": torch.tensor([[0, 0, 1], [0, 0, 4], [0, 5, 1]]), "target": torch.tensor([3, 3, 5])}
    got = validate(SequentialTask(_StubSequential(scores)), [batch], "auc")
    assert got["primary_metric"] == "auc" and got["n_queries"] == 3 and got["valid_size"] == 3.0
    assert got["mrr"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 4) / 3, abs=1e-12)
    assert got["ndcg@10"] == pytest.approx((2 / np.log2(3) + 1 / np.log2(5)) / 3, abs=1e-12)
    assert got["hit_rate@10"] == got["recall@10"] == 1.0
    assert got["auc"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3, abs=1e-12)  # 4 candidates each, 3 negatives
    es = EvalSet(
        name="valid",
        query_ids=np.array(["u0", "u1", "u2"]),
        histories=[["1"], ["4"], ["5", "1"]],
        targets=[["3"], ["3"], ["5"]],
        catalog=np.array(["1", "2", "3", "4", "5"]),
        exclude=[["1"], ["4"], ["5", "1"]],
    )
    want = _evaluator_metrics(es, np.asarray(scores), [*SEQUENTIAL_METRICS, "auc"])
    assert {k: got[k] for k in [*SEQUENTIAL_METRICS, "auc", "n_queries"]} == {
        k: want[k] for k in [*SEQUENTIAL_METRICS, "auc", "n_queries"]
    }


class _StubBiEncoder(torch.nn.Module):
    """Query / item vectors looked up by the first token id."""

    def __init__(self, queries: list[list[float]], items: list[list[float]]):
        super().__init__()
        self.vecs = {"query": torch.tensor(queries), "item": torch.tensor(items)}

    def embed(self, inputs: dict[str, torch.Tensor], tower: str) -> torch.Tensor:
        return self.vecs[tower][inputs["input_ids"][:, 0]]


def _bi_batch(q: list[list[int]], p: list[list[int]]) -> dict[str, torch.Tensor]:
    ids = {"q_": torch.tensor(q), "p_": torch.tensor(p)}
    return {
        **{f"{k}input_ids": v for k, v in ids.items()},
        **{f"{k}attention_mask": (v > 0).long() for k, v in ids.items()},
        "label": torch.ones(len(q)),
    }


def test_bi_encoder_validation_groups_duplicates_and_equals_the_evaluate_jobs_retrieval():
    from recsys.evaluation import EvalSet
    from recsys.kinds.bi_encoder import METRICS as BI_ENCODER_METRICS
    from recsys.kinds.bi_encoder import BiEncoderTask
    from recsys.training.validation import validate

    # token id k (k = 1..3) -> vector row k; items are one-hot, so a query's vector is its item scores
    queries = [[0, 0, 0], [0.2, 0.9, 0.5], [0.4, 0.4, 0.1], [0.3, 0.2, 0.1]]
    items = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    # rows: (q1, i1) (q1, i2) | (q2, i2) (q3 + one more token, i3): q1 has two relevant items, i2 is one item
    batches = [
        _bi_batch([[1, 0], [1, 0]], [[1, 0], [2, 0]]),
        _bi_batch([[2, 0, 0], [3, 9, 0]], [[2, 0, 0], [3, 0, 0]]),
    ]
    got = validate(BiEncoderTask(_StubBiEncoder(queries, items)), batches, "mrr")
    assert (
        got["primary_metric"] == "mrr"
        and got["n_queries"] == 3
        and got["n_items"] == 3
        and got["valid_size"] == 4.0
    )
    # q1 ranks i2 > i3 > i1 (targets i1, i2); q2: i2 tied with i1 -> rank 1; q3: i3 last -> rank 2
    assert got["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3, abs=1e-12)
    assert got["recall@1"] == pytest.approx(1 / 6, abs=1e-12) and got["recall@10"] == 1.0
    ndcg_q1 = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert got["ndcg@10"] == pytest.approx((ndcg_q1 + 1 / np.log2(3) + 1 / 2) / 3, abs=1e-12)
    es = EvalSet(
        name="valid",
        query_ids=np.array(["q1", "q2", "q3"]),
        histories=[[], [], []],
        targets=[["i1", "i2"], ["i2"], ["i3"]],
        catalog=np.array(["i1", "i2", "i3"]),
    )
    want = _evaluator_metrics(es, np.asarray(queries[1:]), list(BI_ENCODER_METRICS))
    assert {k: got[k] for k in [*BI_ENCODER_METRICS, "n_queries"]} == {
        k: want[k] for k in [*BI_ENCODER_METRICS, "n_queries"]
    }


class _StubCrossEncoder(torch.nn.Module):
    def __init__(self, logits: list[float]):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.logits[inputs["input_ids"][:, 0]]


def test_cross_encoder_validation_is_the_evaluate_jobs_pair_classification():
    from recsys.evaluation.classification import PairClassificationEvaluator, classification_metrics
    from recsys.kinds.cross_encoder import CrossEncoderTask
    from recsys.training.validation import validate

    logits = [2.0, -1.0, 0.5, -0.2, 0.0, 1.5]
    labels = [1.0, 0.0, 0.2, 0.8, 1.0, 1.0]  # graded: > 0.5 is a match
    batches = [
        {
            "input_ids": torch.tensor([[i, 5]]),
            "attention_mask": torch.ones(1, 2, dtype=torch.long),
            "label": torch.tensor([y]),
        }
        for i, y in enumerate(labels)
    ]
    got = validate(CrossEncoderTask(_StubCrossEncoder(logits)), batches, "f1")
    # logit >= 0 predicts a match: tp {0, 4, 5}, fp {2}, fn {3}
    assert (got["precision"], got["recall"], got["f1"], got["accuracy"]) == (0.75, 0.75, 0.75, 4 / 6)
    assert got["roc_auc"] == 0.75 and got["valid_f1"] == pytest.approx(
        8 / 9, abs=1e-12
    )  # best: predict all but -1.0
    assert got["primary_metric"] == "f1" and got["threshold"] == 0.0 and got["valid_size"] == 6.0
    y = (np.asarray(labels) > 0.5).astype(int)
    want = classification_metrics(np.asarray(logits), y, 0.0)
    assert {k: got[k] for k in want} == want
    pairs = ([str(i) for i in range(6)], [""] * 6, y)
    ev = PairClassificationEvaluator(pairs, pairs)(
        lambda lefts, rights: np.asarray(logits)[[int(q) for q in lefts]]
    )
    assert got["valid_f1"] == ev["valid_f1"]
    mse = validate(CrossEncoderTask(_StubCrossEncoder([0.7, 0.4]), loss="mse"), batches[:2], "f1")
    assert mse["threshold"] == 0.5 and mse["accuracy"] == 1.0  # mse regresses the label: 0.5 decides


def test_the_kinds_task_validates_on_the_selection_metric():
    from recsys import kinds
    from recsys.training.validation import validate

    cfg = load_config(
        TrainConfig, None, data={"model": {"kind": "sequential"}, "data": {"train": {"path": "/tmp"}}}
    )
    task = kinds.get("sequential").build_task(_StubSequential([[0.3, 0.1]]), "full_softmax", None, cfg.model)
    got = validate(task, [{"history": torch.tensor([[0, 2]]), "target": torch.tensor([1])}], "map@5")
    assert got["primary_metric"] == "map@5" and got["map@5"] == 1.0 and got["ndcg@10"] == 1.0
    assert validate(task, [], "map@5") == {}  # no validation rows: nothing to report


def test_zero_stage_override_from_the_command_line():
    from recsys.config.loader import parse_overrides

    errors: list[str] = []
    data = parse_overrides({**BASE}, ["strategy.name=deepspeed", "strategy.deepspeed.zero_stage=3"], errors)
    assert not errors and load_config(TrainConfig, None, data=data).strategy.deepspeed.zero_stage == 3
    with pytest.raises(ConfigError, match="zero_stage"):
        _cfg(strategy={"deepspeed": {"zero_stage": 4}})


def test_loop_counts_every_encoder_input_token():
    from recsys.training.loop import _tokens

    batch = {
        "q_input_ids": torch.zeros(4, 7),
        "q_attention_mask": torch.ones(4, 7),
        "p_input_ids": torch.zeros(4, 5),
        "label": torch.ones(4),
    }
    assert _tokens(batch) == 4 * 7 + 4 * 5
    assert _tokens({"items": torch.zeros(2, 3)}) == 0  # the sequential model has no token inputs


def test_adamw_fused_only_for_cuda_modules():
    from recsys.training.strategy import on_cuda

    assert on_cuda(torch.nn.Linear(2, 2)) is None  # torch's default (foreach) on CPU


@pytest.mark.slow
def test_hard_negative_rows_from_split_files(ray_session, tmp_path):
    """A pairs set of one file per split: filtering to ``train`` empties the valid/test blocks, and the
    hard-negative groupby must still run (Ray Data passes emptied blocks on without columns unless the
    UDF returns a typed table); each positive gets a label-0 right text of its own query."""
    from recsys.config.base import InputConfig
    from recsys.kinds.data import bi_encoder_rows, load_pairs

    rows = {
        "train": [("q1", "a", 1), ("q1", "b", 0), ("q2", "c", 1), ("q2", "d", 0), ("q3", "e", 1)],
        "valid": [("q4", "f", 1), ("q4", "g", 0)],
        "test": [("q5", "h", 0)],
    }
    for split, rs in rows.items():
        (tmp_path / f"{split}.txt").write_text(
            "".join(f"COL name VAL {q}\tCOL name VAL {r}\t{y}\n" for q, r, y in rs)
        )
    ds = load_pairs(InputConfig(path=str(tmp_path), preset="product-matching"), "train", None, None)
    got = bi_encoder_rows(ds, hard_negatives=True, seed=0).to_pandas().sort_values("left")
    assert [(r.left, r.right, r.negative) for r in got.itertuples()] == [
        ("name: q1", "name: a", "name: b"),
        ("name: q2", "name: c", "name: d"),
    ]


@pytest.mark.slow
def test_grouped_events_follow_the_evaluations_time_order():
    """Training's per-partition grouping orders each user's items as the evaluation does (timestamp, then
    source_row, then input order) and keeps each feature's last value."""
    import pyarrow as pa

    from recsys.evaluation.data import sequences_from_events
    from recsys.kinds.data import _group_events

    rng = np.random.default_rng(0)
    n = 600
    ev = pd.DataFrame(
        {
            "user_id": rng.integers(0, 40, n).astype(str),
            "item_id": rng.integers(0, 90, n).astype(str),
            "timestamp": pd.to_datetime(rng.integers(0, 6, n), unit="s", utc=True),  # many ties
            "source_row": rng.permutation(n),
            "country": rng.choice(["de", "fr", "it"], n),
        }
    )
    got = _group_events(pa.Table.from_pandas(ev, preserve_index=False), ["country"]).to_pandas()
    want = sequences_from_events(ev).set_index("user_id")
    assert sorted(got["user_id"]) == sorted(want.index)
    assert [list(x) for x in got["items"]] == [want.loc[u, "items"] for u in got["user_id"]]
    last = ev.sort_values(["timestamp", "source_row"], kind="stable").groupby("user_id")["country"].last()
    assert got.set_index("user_id")["country"].to_dict() == last.to_dict()
    # hand-checked: a tie at t=1 goes to the lower source_row; no feature column -> nulls
    t = pa.table(
        {
            "user_id": ["u", "u", "u"],
            "item_id": ["c", "b", "a"],
            "timestamp": pa.array([2, 1, 1], pa.int64()),
            "source_row": [0, 9, 3],
        }
    )
    one = _group_events(t, ["segment"]).to_pylist()
    assert one == [{"user_id": "u", "items": ["a", "b", "c"], "segment": None}]


@pytest.mark.slow
def test_a_capped_sequence_load_keeps_the_same_users_every_run(ray_session, shared_data):
    """max_train_rows over grouped events keeps the users first in id order, not whichever the groupby's
    shuffle delivers first: a resumed trial rebuilds the same item vocabulary as its checkpoint."""
    from recsys.config.base import InputConfig
    from recsys.kinds import data as D

    inp = InputConfig(path=str(shared_data / "amazon-games-6k"), preset="amazon-games-6k")
    capped = D.load_sequences(inp, [], 50).to_pandas()
    users = sorted(D.read_table(inp, "events").select_columns(["user_id"]).to_pandas()["user_id"].unique())
    assert capped["user_id"].tolist() == users[:50]
