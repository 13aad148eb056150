"""Serving, index and evaluate open a model by ``backend`` (torch | onnx | onnx-int8 | torch-int8 | auto):
config-time errors naming the field and the fix, the reranker on each backend, token-length batches with
padding buckets, the query encoder on an ONNX variant. No Ray (the Serve app on ``onnx-int8`` and a hot
reload between variants are in tests/test_serve_app.py)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pydantic import ValidationError

from recsys.compress.variants import VariantError, resolve_backend

PAIRS = [
    ("zelda", "The Legend of Zelda: Breath of the Wild - Nintendo Switch"),
    ("ps4 controller", "DualShock 4 Wireless Controller for PlayStation 4 - Jet Black"),
    ("mario", "Super Mario Odyssey"),
    ("xbox", "Xbox One S 1TB Console - Minecraft Bundle with an extra long title " * 3),
    ("fifa", "FIFA 18"),
    ("", "Halo 5"),
] * 4


def test_resolve_backend_accepts_matches_and_names_the_fix(tiny_cross_encoder, tiny_bert_dir, tmp_path):
    v = tiny_cross_encoder
    assert (
        resolve_backend(v["torch"]) == "torch" and resolve_backend(v["torch"], "torch-int8") == "torch-int8"
    )
    assert resolve_backend(v["onnx-int8"], "auto", "cross_encoder") == "onnx-int8"
    with pytest.raises(VariantError, match=r"is a 'onnx' variant, not 'onnx-int8'.*set backend: onnx"):
        resolve_backend(v["onnx"], "onnx-int8")
    with pytest.raises(VariantError, match=r"torch model directory.*set backend: torch.*recsys run compress"):
        resolve_backend(v["torch"], "onnx")
    with pytest.raises(VariantError, match=r"holds a 'cross_encoder' model; this field needs a 'bi_encoder'"):
        resolve_backend(v["onnx"], "auto", "bi_encoder")
    with pytest.raises(VariantError, match=r"neither a saved recsys model.*runs/train/<run>/model"):
        resolve_backend(tiny_bert_dir)
    partial = shutil.copytree(v["onnx-int8"], tmp_path / "partial")
    (partial / "model.onnx").unlink()
    with pytest.raises(VariantError, match=r"is missing model.onnx.*re-run the compress job"):
        resolve_backend(partial, "onnx-int8")


def test_serve_config_checks_rerank_and_encoder_backends_at_deploy_time(tiny_cross_encoder, tmp_path):
    from recsys.serving.config import RerankArgs, RetrievalArgs, ServeArgs

    v = tiny_cross_encoder
    args = RerankArgs(model=str(v["onnx-int8"]), backend="onnx-int8", pad_to_multiple_of=16)
    s = args.settings()
    assert (s.backend, s.precision, s.pad_to_multiple_of, s.torch_compile) == ("onnx-int8", "auto", 16, False)
    with pytest.raises(
        ValidationError, match=r"rerank.model / rerank.backend: .*'onnx' variant.*set backend: onnx"
    ):
        RerankArgs(model=str(v["onnx"]), backend="onnx-int8")
    with pytest.raises(ValidationError, match=r"rerank.backend='onnx' but rerank.model is unset"):
        RerankArgs(backend="onnx")
    with pytest.raises(ValidationError, match=r"retrieval.encoder / encoder_backend: .*needs a 'bi_encoder'"):
        RetrievalArgs(encoder=str(v["onnx"]))
    with pytest.raises(ValidationError, match=r"arms.0.rerank"):  # pydantic names where, the message what
        ServeArgs.model_validate(
            {
                "arms": [
                    {
                        "name": "A",
                        "artifacts": str(tmp_path),
                        "rerank": {"model": str(v["torch"]), "backend": "onnx"},
                    }
                ]
            }
        )
    with pytest.raises(ValidationError, match="precision"):
        RerankArgs(precision="int4")


def test_tokenize_by_length_groups_similar_lengths_and_pads_to_buckets(tiny_cross_encoder):
    from recsys.models.base import load_tokenizer
    from recsys.models.cross_encoder import tokenize_by_length

    tok = load_tokenizer(str(tiny_cross_encoder["torch"]))
    single = [len(tok(a, b, truncation="longest_first", max_length=40)["input_ids"]) for a, b in PAIRS]
    seen, widths = [], []
    for rows, batch in tokenize_by_length(tok, PAIRS, 40, 5):
        seen += rows.tolist()
        mask = batch["attention_mask"]
        assert mask.shape[1] == max(single[i] for i in rows)  # padded to its own longest row only
        assert mask.sum(axis=1).tolist() == [single[i] for i in rows]
        widths.append(mask.shape[1])
    assert sorted(seen) == list(range(len(PAIRS))) and widths == sorted(widths, reverse=True)
    assert widths[0] == 40 and widths[-1] < 16  # the long titles do not pad the short pairs
    for _, batch in tokenize_by_length(tok, PAIRS, 40, 5, pad_to_multiple_of=16):
        assert batch["input_ids"].shape[1] % 16 == 0
    assert list(tokenize_by_length(tok, [], 40, 5)) == []


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_reranker_scores_on_each_backend_like_torch(tiny_cross_encoder, backend):
    from recsys.search.stages import RerankerCore

    v = tiny_cross_encoder
    ref = RerankerCore(str(v["torch"]), "", 32, device="cpu", backend="torch", threads=1)
    core = RerankerCore(
        str(v[backend]), "", 32, device="cpu", backend="auto", threads=1, pad_to_multiple_of=16
    )
    assert (ref.backend, core.backend, core.cross.max_length) == (
        "torch",
        backend,
        32,
    )  # serve's limit applies
    requests = [("zelda", [b for _, b in PAIRS[:6]]), ("ps4 controller", [b for _, b in PAIRS[6:20]])]
    want, got = ref.score_many(requests), core.score_many(requests)
    assert [g.shape for g in got] == [(6,), (14,)]
    tol = (
        1e-4 if backend == "onnx" else 0.15 * float(np.ptp(np.concatenate(want)))
    )  # int8: tests/test_compress.py
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, atol=tol)


def test_query_encoder_runs_a_bi_encoder_variant(tmp_path, tiny_bert_dir):
    import copy

    from recsys.compress.variants import export_variant
    from recsys.models.base import build_encoder, load_tokenizer
    from recsys.models.bi_encoder import BiEncoder
    from recsys.retrieval.encoder import TextEncoder

    enc = build_encoder(str(tiny_bert_dir))
    bi = BiEncoder(enc, copy.deepcopy(enc), tokenizer=load_tokenizer(str(tiny_bert_dir)), max_length=32)
    src = bi.save_pretrained(tmp_path / "bi")
    onnx_dir = export_variant(src, tmp_path / "onnx", "onnx", model=bi)
    texts = ["zelda", "xbox one controller", "mario kart 8 deluxe"]
    want = TextEncoder(str(src), max_length=32).encode(texts, kind="item")
    got = TextEncoder(str(onnx_dir), max_length=32, backend="onnx").encode(texts, kind="item")
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, want, atol=1e-4)
    with pytest.raises(
        VariantError, match=r"retrieval.encoder / retrieval.encoder_backend: .*'onnx' variant"
    ):
        TextEncoder(str(onnx_dir), backend="onnx-int8", field="retrieval.encoder")
    with pytest.raises(ValueError, match=r"embed.model_backend='onnx' needs a bi-encoder variant"):
        TextEncoder(str(tiny_bert_dir), backend="onnx", field="embed.model")


def test_evaluate_model_specs_take_a_backend(tiny_cross_encoder):
    from recsys.compress.scorers import OnnxCrossEncoder
    from recsys.evaluation.config import ModelSpec
    from recsys.experiments.scorers import load_spec_model, pair_scorer

    spec = ModelSpec(
        name="CE-int8", kind="model", path=str(tiny_cross_encoder["onnx-int8"]), backend="onnx-int8"
    )
    assert isinstance(load_spec_model(spec), OnnxCrossEncoder)
    scores = pair_scorer(spec, seed=0)(["zelda", "mario"], ["Zelda", "Mario"])
    assert scores.shape == (2,) and np.isfinite(scores).all()
    with pytest.raises(ValidationError, match="backend is only for kind=model"):
        ModelSpec(name="Pop", kind="popularity", backend="onnx")
    bad = ModelSpec(name="CE", kind="model", path=str(tiny_cross_encoder["onnx"]), backend="onnx-int8")
    with pytest.raises(VariantError, match="'onnx' variant, not 'onnx-int8'"):
        load_spec_model(bad)
