"""Distillation pieces without Ray: student slicing, teacher scores, the two losses, config checks.

The kind and loss modules are imported inside the tests: ``recsys.training.config`` (imported here) loads
every registered kind and loss first, in the registry's order, which other tests assert."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.config.loader import ConfigError, load_config
from recsys.kinds import data as D
from recsys.models import load_model
from recsys.models.base import RANDOM_TINY_BERT, load_tokenizer
from recsys.models.cross_encoder import CrossEncoder
from recsys.models.distil import slice_encoder, student_from_teacher, teacher_scores
from recsys.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [("sony bravia 40in tv", "Sony Bravia KDL-40 LCD TV"), ("canon lens", "Nikon D90 body"), ("a", "b")]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    """A tiny random 3-layer BERT cross-encoder, saved."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    tok = load_tokenizer(RANDOM_TINY_BERT)
    enc = BertModel(
        BertConfig(
            vocab_size=tok.vocab_size,
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    )
    model = CrossEncoder(enc, tokenizer=tok, max_length=32)
    torch.nn.init.normal_(model.head.weight)
    return model.save_pretrained(tmp_path_factory.mktemp("teacher") / "model")


def test_student_keeps_the_chosen_layers_embeddings_and_head(teacher_dir, tmp_path):
    teacher = load_model(teacher_dir)
    out = student_from_teacher(teacher_dir, [0, 2], tmp_path / "student")
    student = load_model(out)
    assert student.encoder.config.num_hidden_layers == 2 and len(student.encoder.encoder.layer) == 2
    t, s = teacher.state_dict(), student.state_dict()
    for key, value in s.items():
        src = key.replace("encoder.encoder.layer.1.", "encoder.encoder.layer.2.")
        assert torch.equal(value, t[src]), key
    assert any(k.startswith("encoder.embeddings.") for k in s) and torch.equal(
        s["head.weight"], t["head.weight"]
    )
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    scores = student.score(PAIRS)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    # all layers kept: the very same function as the teacher
    full = student_from_teacher(teacher_dir, [0, 1, 2], tmp_path / "full")
    np.testing.assert_allclose(load_model(full).score(PAIRS), teacher.score(PAIRS), atol=1e-6)


def test_the_train_job_builds_the_same_student_in_memory(teacher_dir):
    from recsys.config.base import ModelConfig
    from recsys.kinds.cross_encoder import StudentInputs, build_model

    class _Cfg(ModelConfig):
        freeze_layers: int = 0
        dropout: float | None = None

    model = build_model(_Cfg(name_or_path=RANDOM_TINY_BERT), StudentInputs(str(teacher_dir), (2,)))
    teacher = load_model(teacher_dir)
    assert len(model.encoder.encoder.layer) == 1 and model.training
    assert torch.equal(
        model.encoder.encoder.layer[0].output.dense.weight,
        teacher.encoder.encoder.layer[2].output.dense.weight,
    )


def test_slicing_refuses_bad_layers_and_other_architectures(teacher_dir):
    from transformers import DistilBertConfig, DistilBertModel

    enc = load_model(teacher_dir).encoder
    with pytest.raises(ValueError, match=r"has 3 layers \(indices 0..2\)"):
        slice_encoder(enc, [0, 3])
    with pytest.raises(ValueError, match="increasing order"):
        slice_encoder(enc, [2, 0])
    distil_bert = DistilBertModel(
        DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=100)
    )
    with pytest.raises(ValueError, match="cannot slice a 'distilbert' encoder: .*BERT-style"):
        slice_encoder(distil_bert, [0])


def test_teacher_scores_become_a_column_the_tokenizer_keeps(teacher_dir):
    batch = pd.DataFrame(
        {"left": [a for a, _ in PAIRS], "right": [b for _, b in PAIRS], "label": [1.0, 0.0, 0.0]}
    )
    scored = D.score_with_teacher(batch, str(teacher_dir), batch_size=2)
    expected = load_model(teacher_dir).score(PAIRS)
    assert scored["teacher_score"].dtype == np.float32
    np.testing.assert_allclose(scored["teacher_score"].to_numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(
        teacher_scores(load_model(teacher_dir), *zip(*PAIRS), batch_size=1), expected, atol=1e-6
    )
    tok = D.tokenize_cross(scored, RANDOM_TINY_BERT, 16)
    assert set(tok) >= {"input_ids", "attention_mask", "label", "teacher_score"}
    np.testing.assert_array_equal(tok["teacher_score"], scored["teacher_score"].to_numpy())


def test_bm25_mines_the_queries_top_matches_minus_the_given_pairs():
    lefts = ["sony bravia tv", "sony bravia tv", "canon eos camera"]
    rights = ["Sony Bravia 40in LCD TV", "Canon EOS 50D body", "Sony Bravia 32in LCD TV"]
    mined = D.bm25_mined_pairs(lefts, rights, k=2)  # the given pairs are (lefts[i], rights[i])
    # each query's BM25 matches (score > 0) among the 3 right texts, minus its given pairs
    assert set(zip(mined["left"], mined["right"])) == {
        ("sony bravia tv", "Sony Bravia 32in LCD TV"),
        ("canon eos camera", "Canon EOS 50D body"),
    }
    assert (mined["label"] == 0).all() and mined["label"].dtype == np.float32


def test_distil_mse_exact():
    from recsys.losses.distil_mse import distil_mse_loss

    s, t = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 0.0, 5.0])
    assert distil_mse_loss(s, t).item() == pytest.approx(8 / 3)  # (0 + 4 + 4) / 3


def test_margin_mse_exact():
    from recsys.losses.margin_mse import margin_mse_in_batch, margin_mse_loss

    # student margins (2 - 0.5, 2 - 1) = (1.5, 1.0); teacher (3 - 1, 3 - 0) = (2, 3); ((-0.5)^2 + (-2)^2) / 2
    student, teacher = torch.tensor([2.0, 0.5, 1.0]), torch.tensor([3.0, 1.0, 0.0])
    assert margin_mse_in_batch(student, teacher, torch.tensor([1.0, 0.0, 0.0])).item() == pytest.approx(2.125)
    assert margin_mse_loss(
        torch.tensor([2.0]), torch.tensor([0.5]), torch.tensor([3.0]), torch.tensor([1.0])
    ).item() == (pytest.approx(0.25))
    # a batch without negatives contributes zero, with a graph
    s = student.clone().requires_grad_(True)
    zero = margin_mse_in_batch(s, teacher, torch.ones(3))
    zero.backward()
    assert zero.item() == 0.0 and s.grad is not None


class _Fixed(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, inputs):
        return self.logits


@pytest.mark.parametrize("loss, expected", [("distil_mse", (0.25 + 0.25 + 1.0) / 3), ("margin_mse", 2.125)])
def test_cross_encoder_task_feeds_the_teacher_score(loss, expected):
    from recsys.kinds.cross_encoder import CrossEncoderTask

    logits = torch.tensor([2.0, 0.5, 1.0])
    batch = {
        "input_ids": torch.ones(3, 4, dtype=torch.long),
        "attention_mask": torch.ones(3, 4, dtype=torch.long),
        "label": torch.tensor([1.0, 0.0, 0.0]),
        "teacher_score": torch.tensor([3.0, 1.0, 0.0])
        if loss == "margin_mse"
        else torch.tensor([2.5, 0.0, 0.0]),
    }
    assert CrossEncoderTask(_Fixed(logits), loss)(batch).item() == pytest.approx(expected)


BASE = {
    "model": {"kind": "cross_encoder", "name_or_path": "random-bert-tiny"},
    "data": {"train": {"path": "/tmp", "table": "pairs"}},
}


def _cfg(**over):
    return load_config(TrainConfig, None, data={**BASE, **over})


@pytest.mark.parametrize(
    "over, fix",
    [
        ({"loss": {"name": "distil_mse"}}, "set distil.teacher to a saved cross-encoder"),
        ({"loss": {"name": "bce"}, "distil": {"teacher": "/tmp"}}, "set loss.name to one of"),
        ({"loss": {"name": "margin_mse"}, "distil": {"student_layers": [0]}}, "set distil.teacher"),
        (
            {"loss": {"name": "bce"}, "distil": {"mined_per_query": 3}},
            "set distil.teacher, or set distil.mined_per_query: 0",
        ),
        (
            {"distil": {"teacher": "/tmp", "student_layers": [2, 0]}, "loss": {"name": "margin_mse"}},
            "increasing order",
        ),
        (
            {"model": {"kind": "bi_encoder"}, "distil": {"teacher": "/tmp"}, "loss": {"name": "infonce"}},
            "applies to the cross_encoder only",
        ),
        (
            {
                "distil": {"teacher": "/tmp", "student_layers": [0]},
                "loss": {"name": "distil_mse"},
                "model": {**BASE["model"], "freeze_layers": 2},
            },
            "set model.freeze_layers <= 1",
        ),
    ],
)
def test_config_errors_name_the_fix(over, fix):
    with pytest.raises(ConfigError, match=fix):
        _cfg(**over)


def test_student_layers_are_checked_against_the_teacher(teacher_dir):
    with pytest.raises(ConfigError, match=r"the teacher has 3 layers"):
        _cfg(distil={"teacher": str(teacher_dir), "student_layers": [0, 3]}, loss={"name": "distil_mse"})
    cfg = _cfg(distil={"teacher": str(teacher_dir), "student_layers": [0, 2]}, loss={"name": "margin_mse"})
    assert cfg.distil.student_layers == [0, 2] and cfg.loss_name == "margin_mse"


@pytest.mark.parametrize("name", ["tiny-distil", "local-distil"])
def test_shipped_distil_configs_parse(name):
    cfg = load_config(TrainConfig, ROOT / "configs" / "train" / f"{name}.yaml", check_paths=False)
    assert cfg.distil.teacher and cfg.distil.student_layers and cfg.loss_name in ("distil_mse", "margin_mse")
