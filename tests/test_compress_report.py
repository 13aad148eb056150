"""The compress job's report (quality on a shared protocol, paired tests, the promotion gate, report.html),
structured FFN pruning and its recovery start. The pure pieces run without Ray; the protocol readers
(Ray Data) take the session Ray."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from recsys.compress.report import apply_gate, builtin_pairs

ROWS = builtin_pairs(32, seed=2)
PAIRS = [(a, b) for a, b, _ in ROWS]
LABELS = np.asarray([y for _, _, y in ROWS])


def test_gate_marks_a_variant_over_the_bound_with_the_reason():
    rows = [
        {"variant": "torch", "f1": 0.80},
        {"variant": "onnx", "f1": 0.796},
        {"variant": "int8", "f1": 0.78},
    ]
    apply_gate(rows, "f1", 0.01)
    assert [r["promotable"] for r in rows] == [True, True, False]
    assert [r["relative_drop"] for r in rows] == [0.0, 0.005, 0.025]
    assert "reference" in rows[0]["reason"]
    assert "2.50% exceeds the bound quality.max_relative_drop=1.00%" in rows[2]["reason"]
    apply_gate(rows, "f1", 0.05)  # a looser bound promotes it
    assert rows[2]["promotable"]


@pytest.fixture(scope="module")
def cross_dir(tmp_path_factory):
    from recsys.models.cross_encoder import CrossEncoder

    torch.manual_seed(0)
    model = CrossEncoder.from_encoder("random-bert-tiny", max_length=32)
    return model.save_pretrained(tmp_path_factory.mktemp("ce") / "model")


def test_ffn_pruning_keeps_the_important_neurons_and_loads_the_hf_way(cross_dir, tmp_path):
    from transformers import AutoConfig

    from recsys.compress.prune import encoder_layers, prune_saved_model, taylor_importance
    from recsys.models import load_model

    model = load_model(cross_dir)
    imp = taylor_importance(model, PAIRS, LABELS, batch_size=8)
    assert [len(v) for v in imp] == [64, 64] and all(bool((v > 0).any()) for v in imp)
    # a neuron whose output weights are zero cannot change the loss: importance exactly 0, pruned first
    encoder_layers(model)[0].output.dense.weight.data[:, 5] = 0.0
    assert float(taylor_importance(model, PAIRS, LABELS, batch_size=8)[0][5]) == 0.0

    for importance in ("taylor", "magnitude"):
        out = tmp_path / importance
        info = prune_saved_model(
            cross_dir, out, ffn_keep=0.25, importance=importance, pairs=PAIRS, labels=LABELS, batch_size=8
        )
        assert (info["ffn_width_before"], info["ffn_width_after"]) == (64, 16)
        assert info["params_after"] < info["params_before"]
        assert AutoConfig.from_pretrained(out / "encoder").intermediate_size == 16  # a plain HF config
        pruned = load_model(out)  # strict weight check against that config
        assert sum(p.numel() for p in pruned.parameters()) == info["params_after"]
        scores = pruned.score(PAIRS[:6], batch_size=4)
        assert scores.shape == (6,) and np.isfinite(scores).all()
    with pytest.raises(ValueError, match="taylor importance needs labelled pairs"):
        prune_saved_model(cross_dir, tmp_path / "x", ffn_keep=0.5, importance="taylor")


def test_training_continues_from_a_saved_cross_encoder(cross_dir):
    """The recovery fine-tune's start: model.name_or_path = a saved (pruned) model -> its own weights."""
    from recsys.kinds.cross_encoder import build_model
    from recsys.models import load_model

    model_cfg = SimpleNamespace(name_or_path=str(cross_dir), freeze_layers=0, dropout=None)
    built = build_model(model_cfg)
    saved = load_model(cross_dir)
    assert built.training
    for (k, a), (_, b) in zip(built.state_dict().items(), saved.state_dict().items()):
        assert torch.equal(a, b), k


def test_bi_encoder_quality_on_the_retrieval_protocol(ray_session, tmp_path, shared_data):
    """MRR / Recall@10 of a bi-encoder and its ONNX variant on Abt-Buy retrieval (30 queries), paired."""
    import copy

    from recsys.compress.config import QualityConfig
    from recsys.compress.variants import export_variant
    from recsys.experiments.compression import add_quality, load_protocol
    from recsys.models.bi_encoder import BiEncoder
    from recsys.models.cross_encoder import CrossEncoder

    torch.manual_seed(0)
    enc = CrossEncoder.from_encoder("random-bert-tiny").encoder
    bi = BiEncoder(enc, copy.deepcopy(enc), tokenizer=None, max_length=32)
    bi.tokenizer = CrossEncoder.from_encoder("random-bert-tiny").tokenizer
    src = bi.save_pretrained(tmp_path / "bi")
    onnx = export_variant(src, tmp_path / "onnx", "onnx")
    q = QualityConfig(
        protocol="configs/evaluate/abt-buy-retrieval.yaml",
        overrides=["protocol.max_queries=30", "bootstrap=100", "significance_resamples=100"],
    )
    rows = [
        {"variant": "torch", "path": str(src), "pairs_s": 10.0},
        {"variant": "onnx", "path": str(onnx), "pairs_s": 20.0},
    ]
    report = {"variants": [{**r, "speedup_vs_torch": r["pairs_s"] / 10} for r in rows]}
    add_quality(report, q, load_protocol(q), threads=1)
    torch_row, onnx_row = report["variants"]
    assert report["primary_metric"] == "mrr" and report["quality"]["task"] == "retrieval"
    assert {"mrr", "recall@10"} <= set(onnx_row["quality"])
    assert onnx_row["mrr"] == pytest.approx(torch_row["mrr"], abs=0.02)  # ONNX fp32 ranks as torch does
    assert onnx_row["mrr_ci95"][0] <= onnx_row["mrr"] <= onnx_row["mrr_ci95"][1]
    assert onnx_row["paired"]["metric"] == "mrr" and 0 <= onnx_row["paired"]["p_permutation"] <= 1
    assert report["quality"]["significance"][0]["n"] == 30
    assert report["promoted"] == (
        {"variant": "onnx", "path": str(onnx), "speedup_vs_torch": 2.0} if onnx_row["promotable"] else None
    )


def test_isolated_peak_rss_of_one_variant(cross_dir, tmp_path):
    """A fresh process opens the ONNX variant and scores a batch: its peak RSS, alone."""
    from recsys.compress.bench import isolated_peak_rss_mb, peak_rss_mb
    from recsys.compress.variants import export_variant

    onnx = export_variant(cross_dir, tmp_path / "onnx", "onnx")
    rss = isolated_peak_rss_mb(str(onnx), 1, PAIRS, [1, 8])
    assert 50 < rss < max(peak_rss_mb(), 4000)
    with pytest.raises(RuntimeError, match="peak RSS of"):
        isolated_peak_rss_mb(str(tmp_path / "missing"), 1, PAIRS, [1])


def test_quality_protocol_must_score_pairs(tmp_path):
    from recsys.compress.config import QualityConfig
    from recsys.experiments.compression import load_protocol

    with pytest.raises(ValueError, match="scores pair models on task matching or retrieval"):
        load_protocol(QualityConfig(protocol="configs/evaluate/tiny.yaml"))
    with pytest.raises(ValueError, match="file not found"):
        QualityConfig(protocol=str(tmp_path / "nope.yaml"))
