"""The compress job and its library (recsys.compress): ONNX fp32 / int8 variants of tiny random
cross-encoders and bi-encoders, their scores against torch, the variant directory, bad input. No Ray."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from recsys.compress.report import builtin_pairs
from recsys.compress.scorers import load_scorer, load_variant
from recsys.compress.variants import VariantError, export_variant, read_variant

PAIRS = [(a, b) for a, b, _ in builtin_pairs(48, seed=1)]

# int8 bound: max |int8 - fp32 score| <= 0.15 x the spread (max - min) of the fp32 scores on the sample, and
# Spearman >= 0.95 (measured on this model: 0.045 x spread / 0.997 for ONNX int8, 0.095 / 0.990 for torch int8).
# A default-initialised random BERT (std 0.02) scores every input alike (spread ~0.007): int8 noise swamps it,
# so the tiny encoder here is initialised at std 0.2, where scores depend on the input as a trained model's do.
INT8_REL_BOUND = 0.15
INT8_MIN_SPEARMAN = 0.95
INT8_MIN_COSINE = 0.95


def _encoder():
    from transformers import BertConfig, BertModel

    from recsys.models.base import load_tokenizer

    tok = load_tokenizer("random-bert-tiny")
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        initializer_range=0.2,
    )
    return BertModel(cfg), tok


@pytest.fixture(scope="module")
def cross_dir(tmp_path_factory):
    from recsys.models.cross_encoder import CrossEncoder

    encoder, tok = _encoder()
    model = CrossEncoder(encoder, tokenizer=tok, max_length=48)
    return model.save_pretrained(tmp_path_factory.mktemp("ce") / "model")


@pytest.fixture(scope="module")
def bi_dir(tmp_path_factory):
    import copy

    from recsys.models.bi_encoder import BiEncoder

    encoder, tok = _encoder()
    model = BiEncoder(encoder, copy.deepcopy(encoder), tokenizer=tok, projection_dim=16, max_length=48)
    return model.save_pretrained(tmp_path_factory.mktemp("bi") / "model")


@pytest.fixture(scope="module")
def cross_variants(cross_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ce-variants")
    return {k: export_variant(cross_dir, out / k, k) for k in ("onnx", "onnx-int8", "torch-int8")}


def _spearman(a, b):
    from scipy.stats import spearmanr

    return spearmanr(a, b).statistic


def test_cross_encoder_variants_score_like_torch(cross_dir, cross_variants):
    ref = load_scorer(cross_dir).score(PAIRS, batch_size=8)
    assert np.ptp(ref) > 0.5  # scores depend on the input
    onnx = load_variant(cross_variants["onnx"], threads=1)
    np.testing.assert_allclose(onnx.score(PAIRS, batch_size=8), ref, atol=1e-4)
    np.testing.assert_allclose(
        onnx.score(PAIRS, batch_size=8, activation="sigmoid"), 1 / (1 + np.exp(-ref)), atol=1e-4
    )
    for kind in ("onnx-int8", "torch-int8"):
        s = load_scorer(cross_variants[kind], backend=kind, threads=1).score(PAIRS, batch_size=8)
        assert np.max(np.abs(s - ref)) <= INT8_REL_BOUND * np.ptp(ref), kind
        assert _spearman(s, ref) >= INT8_MIN_SPEARMAN, kind
    meta = read_variant(cross_variants["onnx-int8"])
    assert (
        meta["kind"] == "onnx-int8"
        and meta["backend"] == "onnxruntime"
        and meta["model_type"] == "cross_encoder"
    )
    assert meta["source_model"] == str(cross_dir.resolve())
    assert meta["size_bytes"] < read_variant(cross_variants["onnx"])["size_bytes"]
    onnx_model = cross_variants["onnx-int8"] / "model.onnx"
    assert onnx_model.stat().st_size < 0.5 * (cross_variants["onnx"] / "model.onnx").stat().st_size


def test_bi_encoder_variants_encode_like_torch(bi_dir, tmp_path):
    texts = [a for a, _ in PAIRS]
    torch_model = load_scorer(bi_dir, backend="torch")
    for kind in ("onnx", "onnx-int8"):
        path = export_variant(bi_dir, tmp_path / kind, kind)
        assert sorted(read_variant(path)["onnx_files"]) == [
            "item_model.onnx",
            "model.onnx",
        ]  # separate towers
        model = load_variant(path, threads=1)
        assert model.embedding_dim == torch_model.embedding_dim == 16
        for tower in ("query", "item"):
            got = model.encode(texts, batch_size=16, tower=tower)
            ref = torch_model.encode(texts, tower=tower)
            if kind == "onnx":
                np.testing.assert_allclose(got, ref, atol=1e-4)
                continue
            # int8: the same bound as the cross-encoder's scores (x the spread), and every embedding points
            # the same way (measured with onnxruntime 1.32: 0.12 x spread, min cosine 0.974)
            assert np.max(np.abs(got - ref)) <= INT8_REL_BOUND * np.ptp(ref), tower
            cos = np.sum(got * ref, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
            assert cos.min() >= INT8_MIN_COSINE, tower


def test_variant_dir_is_atomic_and_complete(cross_dir, cross_variants, tmp_path, monkeypatch):
    import recsys.compress.quantize as quantize

    def broken(src, dst, per_channel=False):
        raise RuntimeError("quantizer crashed")

    monkeypatch.setattr(quantize, "quantize_onnx_int8", broken)
    with pytest.raises(RuntimeError, match="quantizer crashed"):
        export_variant(cross_dir, tmp_path / "int8", "onnx-int8")
    assert list(tmp_path.iterdir()) == []  # no variant, no temporary directory left behind
    # an existing variant survives a failed rebuild
    keep = shutil.copytree(cross_variants["onnx"], tmp_path / "keep")
    with pytest.raises(RuntimeError):
        export_variant(cross_dir, keep, "onnx-int8")
    assert read_variant(keep)["kind"] == "onnx" and sorted(p.name for p in tmp_path.iterdir()) == ["keep"]
    # a missing file names itself and the fix
    (keep / "tokenizer_config.json").unlink()
    with pytest.raises(VariantError, match=r"missing tokenizer_config.json.*recsys run compress"):
        load_variant(keep)


def test_bad_input_names_the_problem_and_the_fix(cross_dir, cross_variants, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from recsys.compress.export import UnsupportedModelError, check_exportable
    from recsys.models import load_model

    with pytest.raises(UnsupportedModelError, match=r"'sequential'.*cross_encoder or bi_encoder"):
        check_exportable("sequential")
    seq = tmp_path / "seq"
    seq.mkdir()
    (seq / "recsys_model.json").write_text(json.dumps({"model_type": "sequential", "config": {}}))
    with pytest.raises(UnsupportedModelError, match="sequential"):
        export_variant(seq, tmp_path / "out", "onnx")
    assert not (tmp_path / "out").exists()
    # an op ONNX Runtime cannot run
    bad = shutil.copytree(cross_variants["onnx"], tmp_path / "bad")
    node = helper.make_node("NoSuchOp", ["input_ids"], ["output"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "t"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["b"])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    onnx.save(model, str(bad / "model.onnx"))
    with pytest.raises(VariantError, match=r"cannot run.*NoSuchOp.*export.opset.*torch"):
        load_variant(bad)
    # backends and directories that do not match
    with pytest.raises(VariantError, match="is a 'onnx' variant, not 'onnx-int8'"):
        load_scorer(cross_variants["onnx"], backend="onnx-int8")
    with pytest.raises(VariantError, match="needs a variant directory"):
        load_scorer(cross_dir, backend="onnx")
    with pytest.raises(FileNotFoundError, match=r"compressed variant.*load_variant"):
        load_model(cross_variants["onnx"])


@pytest.mark.slow
def test_compress_job_tiny(ray_session, tmp_path, shared_data):
    """The job end to end: variants, the pruned model and its int8 chain, quality on the matching protocol
    with CIs and paired tests, the gate, report.html (its protocol readers take the session Ray)."""
    from recsys.cli.entry import parse_job, run_parsed

    spec, cfg = parse_job("compress", "tiny", [f"output_dir={tmp_path}", "bench.repeats=2"])
    report = run_parsed(spec, cfg)
    assert report["status"] == "succeeded", report.get("error")
    saved = json.loads((tmp_path / "report.json").read_text())
    rows = {r["variant"]: r for r in saved["variants"]}
    assert list(rows) == ["torch", "onnx", "onnx-int8", "torch-int8", "pruned", "pruned/onnx-int8"]
    for name, row in rows.items():
        assert {
            "backend",
            "size_mb",
            "p50_ms_b1",
            "p99_ms_b32",
            "pairs_s",
            "max_abs_diff",
            "decision_agreement",
            "f1",
            "f1_ci95",
            "promotable",
            "reason",
        } <= set(row)
        assert ("paired" in row) == (name != "torch")
        assert row["promotable"] == (row["relative_drop"] <= 0.01)
    assert rows["onnx"]["max_abs_diff"] < 1e-4
    assert rows["onnx"]["f1"] == rows["torch"]["f1"]  # fp32 export: the same decisions
    assert rows["onnx-int8"]["size_mb"] < rows["onnx"]["size_mb"]
    assert read_variant(tmp_path / "variants" / "onnx-int8")["kind"] == "onnx-int8"
    assert read_variant(tmp_path / "variants" / "pruned-onnx-int8")["kind"] == "onnx-int8"
    assert saved["quality"]["task"] == "matching" and saved["primary_metric"] == "f1"
    prune = saved["prune"]
    assert prune["ffn_width_after"] == 32 and prune["params_after"] < prune["params_before"]
    promoted = saved["promoted"]
    assert promoted is None or rows[promoted["variant"]]["promotable"]
    page = (tmp_path / "report.html").read_text()
    assert "quality vs latency" in page and "data:image/png;base64," in page and "pruned/onnx-int8" in page


def test_config_errors_name_the_fix(tmp_path):
    from recsys.compress.config import CompressConfig

    with pytest.raises(ValueError, match="exactly one of model.path"):
        CompressConfig(model={})
    with pytest.raises(ValueError, match="train it first"):
        CompressConfig(model={"path": str(tmp_path / "nope")})
    with pytest.raises(ValueError, match="no recsys_model.json"):
        CompressConfig(model={"path": str(tmp_path)})
    with pytest.raises(ValueError, match="throughput_batch"):
        CompressConfig(
            model={"random": "cross_encoder"}, bench={"batch_sizes": [1, 8], "throughput_batch": 32}
        )
