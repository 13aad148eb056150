"""End to end on 2 Ray Train workers: the cross-encoder with FGM on DeepSpeed ZeRO-2 and DDP (FGM reads
gradients through each strategy's own code), the bi-encoder with LoRA on DDP, the sequential model on DeepSpeed
(the sequential model takes neither FGM nor LoRA), resume from a previous run and a worker killed
mid-run (FailureConfig) in one test, export -> reload -> the evaluate code's metrics equal the reported ones."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.cli.entry import parse_job, run_parsed
from recsys.models import load_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seq_tables(tmp_path_factory):
    """200 users over 40 items with a country feature, plus item titles (canonical tables)."""
    d = tmp_path_factory.mktemp("seq")
    rng = random.Random(0)
    seqs = [
        {
            "user_id": f"u{u}",
            "items": [f"i{(u * 3 + k * 7) % 40}" for k in range(rng.randint(4, 12))],
            "country": rng.choice(["DE", "UK", "US"]),
        }
        for u in range(200)
    ]
    pq.write_table(pa.Table.from_pylist(seqs), d / "seqs.parquet")
    pq.write_table(
        pa.Table.from_pylist([{"item_id": f"i{i}", "title": f"item number {i}"} for i in range(40)]),
        d / "items.parquet",
    )
    return d


def seq_config(tables, out, strategy: str, max_steps: int, **extra):
    from recsys.training.config import TrainConfig

    return TrainConfig.model_validate(
        {
            "seed": 0,
            "output_dir": str(out),
            "model": {
                "kind": "sequential",
                "name_or_path": "random-bert-tiny",
                "sequential": {
                    "hidden_size": 16,
                    "num_heads": 2,
                    "max_len": 8,
                    "use_text": True,
                    "user_features": ["country"],
                    "num_negatives": 16,
                },
            },
            "data": {
                "train": {"path": str(tables / "seqs.parquet"), "format": "parquet", "table": "sequences"},
                "items": {"path": str(tables / "items.parquet"), "format": "parquet", "table": "items"},
                "holdout_last": 1,
            },
            "loss": {"name": "sampled_softmax"},
            "optim": {"lr": 0.005, "warmup_ratio": 0.0, "scheduler": "constant"},
            "strategy": {"name": strategy, "deepspeed": {"zero_stage": 2}},
            "train": {
                "batch_size": 16,
                "eval_batch_size": 100,
                "max_steps": max_steps,
                "eval_every": 3,
                "shuffle_buffer": 0,
                "num_to_keep": 2,
                "max_failures": 1,
                **extra,
            },
            "scaling": {"num_workers": 2, "cpus_per_worker": 0.5},
        }
    )


@pytest.mark.parametrize("strategy", [[], ["strategy.name=ddp"]], ids=["deepspeed-zero2", "ddp"])
def test_cross_encoder_fgm_tiny_config(ray_session, tmp_path, strategy):
    """The shipped tiny config through the CLI path: DeepSpeed ZeRO-2 bf16 (as shipped) or DDP, FGM on,
    on real Abt-Buy pairs."""
    spec, cfg = parse_job("train", "tiny", [f"output_dir={tmp_path}", *strategy])
    report = run_parsed(spec, cfg)
    assert report["status"] == "succeeded"
    assert report["counts"]["train_rows"] == 64 and report["counts"]["valid_rows"] == 64
    assert report["metrics"]["valid_size"] == 64 and report["metrics"]["n_pairs"] == 64
    assert {"f1", "roc_auc", "pr_auc", "valid_f1", "accuracy"} <= set(report["metrics"])
    assert report["history"][-1]["primary_metric"] == "f1"
    assert [h["step"] for h in report["history"]] == [2, 4]
    # throughput per window: tokens are the trimmed [CLS] q [SEP] item [SEP] positions, <= max_length each.
    # Both rates share one elapsed time, so their ratio is tokens per sample (up to float rounding: every
    # Abt-Buy batch here fills max_length, and (s * 48) / t may exceed (s / t) * 48 by one ulp).
    for h in report["history"]:
        assert h["samples_per_s"] > 0 and h["tokens_per_s"] > 0
        assert h["tokens_per_s"] / h["samples_per_s"] <= cfg.model.max_length * (1 + 1e-12)
        assert "gpu_mem_gb" not in h  # CPU run
    model = load_model(tmp_path / "model")
    assert type(model).__name__ == "CrossEncoder" and (tmp_path / "model" / "README.md").is_file()
    assert model.score([("a", "b"), ("c", "d")]).shape == (2,)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["artifacts"]["model"] == str(tmp_path / "model")


def test_bi_encoder_lora_export_matches_reported_metric(ray_session, tmp_path, shared_data):
    """DDP (as shipped), LoRA on (merged at export): the exported model, scored by the evaluate job's
    RankingEvaluator on the validation rows, reproduces the MRR / NDCG@10 reported in training. (LoRA under
    DeepSpeed runs no code of its own: the DeepSpeed strategy is the cross-encoder's and the sequential
    model's here, LoRA's wrap / freeze / merge this test's; the frozen-parameter filter is shared.)"""
    spec, cfg = parse_job(
        "train", "tiny-bi-encoder", [f"output_dir={tmp_path}", "train.max_steps=2", "train.eval_every=2"]
    )
    report = run_parsed(spec, cfg)
    assert report["status"] == "succeeded"
    model = load_model(tmp_path / "model")
    assert not any("lora" in k for k in model.state_dict())  # adapters merged
    from recsys.data.adapters import read_input
    from recsys.evaluation import EvalSet, RankingEvaluator

    df = read_input(cfg.data.train, "pairs").to_pandas()
    valid = df[df["split"] == "valid"].head(
        cfg.data.max_valid_rows
    )  # the loop's rows: first N, then positives
    valid = valid[valid["label"] > 0]
    # the retrieval protocol: one query per distinct left text, all its right texts relevant, every right ranked
    groups = valid.groupby("left", sort=True)["right"].agg(lambda r: sorted(set(r)))
    catalog = np.array(sorted(set(valid["right"])), dtype=object)
    es = EvalSet(
        name="valid",
        query_ids=groups.index.to_numpy(dtype=object),
        histories=[[] for _ in groups],
        targets=list(groups),
        catalog=catalog,
    )
    q = dict(zip(groups.index, model.encode(list(groups.index), tower="query"), strict=True))
    v = model.encode(list(catalog), tower="item")
    got = RankingEvaluator(es, ["mrr", "ndcg@10"])(
        lambda batch, items: np.stack([q[t] for t in batch.query_ids]) @ v.T
    )
    assert got["n_queries"] == report["metrics"]["n_queries"] and len(catalog) == report["metrics"]["n_items"]
    assert got["mrr"] == pytest.approx(report["metrics"]["mrr"], abs=2e-3)
    assert got["ndcg@10"] == pytest.approx(report["metrics"]["ndcg@10"], abs=2e-3)


@pytest.mark.timeout(1800)  # two DeepSpeed runs, one restarted: several minutes when the 2 cores are shared
def test_sequential_deepspeed_resumes_and_survives_worker_kill(ray_session, seq_tables, tmp_path):
    """A second run in the same output_dir continues from the first one's latest checkpoint (step 3), and
    its rank 1 is SIGKILLed at step 4: FailureConfig restarts the workers from that checkpoint again and the
    run ends at step 6, having validated step 3 once (from the first run) and step 6 once. Both restarts
    (a new run, a failed worker group) load the same DeepSpeed checkpoint; DDP's load is the tune tests'
    (every trial restart)."""
    from recsys.training.trainer import run_training

    out = tmp_path / "run"
    steps: list[tuple[int, int]] = []  # the console's progress callback (bar and ETA of `recsys run train`)
    first = run_training(
        seq_config(seq_tables, out, "deepspeed", 3), out, on_progress=lambda s, t: steps.append((s, t))
    )
    assert [h["step"] for h in first["history"]] == [3]
    assert steps and steps[-1] == (3, 3) and steps == sorted(steps), steps
    marker = tmp_path / "killed.pid"
    faulty = run_training(
        seq_config(seq_tables, out, "deepspeed", 6), out, fault={"rank": 1, "step": 4, "marker": str(marker)}
    )
    assert marker.is_file()  # the worker really was killed
    assert faulty["final_metrics"]["step"] == 6
    # the step-3 validation comes from the first run's checkpoint; the second run only trained steps 4-6
    assert [h["step"] for h in faulty["history"]] == [3, 6]
    assert faulty["history"][0] == first["history"][0]
    assert 0 < faulty["final_metrics"]["train_loss"] < first["final_metrics"]["train_loss"] * 1.5
    model = load_model(out / "model")
    assert model.user_features == {"country": ["DE", "UK", "US"]} and model.num_items == 40
    assert model.score(
        [["i1", "i8"]], candidates=[["i15", "i22"]], user_features=[{"country": "DE"}]
    ).shape == (1, 2)
