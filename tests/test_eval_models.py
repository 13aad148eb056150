"""Trained recsys models plug into the evaluators through ``kind: model`` (saved dirs, tiny sizes)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.baselines import TrainData
from recsys.evaluation import RankingEvaluator, leave_one_out, sample_negatives
from recsys.evaluation.config import ModelSpec
from recsys.experiments.scorers import build_scorer, pair_scorer

SEQS = {f"u{u}": [f"i{(u * 3 + j) % 25}" for j in range(7)] for u in range(20)}


def test_sequential_model_sampled_and_full(tmp_path):
    import torch

    from recsys.models import SequentialRecommender

    torch.manual_seed(0)
    split = leave_one_out(SEQS)
    items = sorted({i for s in SEQS.values() for i in s})
    SequentialRecommender(items, hidden_size=8, num_layers=1, num_heads=1, max_len=10).save_pretrained(
        tmp_path / "seq"
    )
    scorer, info = build_scorer(
        ModelSpec(name="sasrec", kind="model", path=str(tmp_path / "seq")),
        TrainData(split.train, split.test.catalog),
        None,
        0,
    )
    sampled = RankingEvaluator(sample_negatives(split.test, 10, seed=0), ["ndcg@10", "auc"])(scorer)
    full = RankingEvaluator(split.test, ["ndcg@10", "auc"], block_size=50)(scorer)
    assert sampled["n_queries"] == full["n_queries"] == 20 and 0 <= full["auc"] <= 1 and info["path"]
    # the full-ranking path agrees with scoring the catalog as explicit candidates
    cand = split.test.catalog[None, :].repeat(20, 0)
    es = split.test
    es_c = type(es)(**{**es.__dict__, "candidates": cand, "exclude": None})
    explicit = RankingEvaluator(es_c, ["auc"]).evaluate(scorer).per_query["auc"].to_numpy()
    noexcl = type(es)(**{**es.__dict__, "exclude": None})
    implicit_full = RankingEvaluator(noexcl, ["auc"]).evaluate(scorer).per_query["auc"].to_numpy()
    np.testing.assert_allclose(explicit, implicit_full)


def test_bi_and_cross_encoder(tmp_path, tiny_bert_dir):
    from recsys.models import BiEncoder, CrossEncoder

    BiEncoder.from_encoder(str(tiny_bert_dir), max_length=16).save_pretrained(tmp_path / "bi")
    CrossEncoder.from_encoder(str(tiny_bert_dir), max_length=32).save_pretrained(tmp_path / "ce")
    catalog = np.array([f"p{k}" for k in range(6)], dtype=object)
    items = pd.DataFrame({"item_id": catalog, "title": [f"product {k} camera" for k in range(6)]})
    train = TrainData(pd.DataFrame({"user_id": [], "items": []}), catalog, items)
    bi, _ = build_scorer(ModelSpec(name="bi", kind="model", path=str(tmp_path / "bi")), train, None, 0)
    from recsys.evaluation import EvalSet

    es = EvalSet(
        "q",
        np.array(["q1", "q2"], dtype=object),
        [[], []],
        [["p1"], ["p4"]],
        catalog,
        texts=["product 1", "camera 4"],
    )
    assert RankingEvaluator(es, ["mrr"])(bi)["n_queries"] == 2
    ce, _ = build_scorer(ModelSpec(name="ce", kind="model", path=str(tmp_path / "ce")), train, None, 0)
    assert RankingEvaluator(sample_negatives(es, 3, seed=0), ["mrr"])(ce)["n_queries"] == 2
    scores = pair_scorer(ModelSpec(name="ce", kind="model", path=str(tmp_path / "ce")), 0)(
        ["a b", "c"], ["a b", "d"]
    )
    assert scores.shape == (2,) and np.isfinite(scores).all()
