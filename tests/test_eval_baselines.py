"""Baselines: fit on a tiny TrainData, score both candidate and full-catalog item matrices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.baselines import TrainData, build_baseline
from recsys.baselines.text import okapi_scores
from recsys.evaluation import QueryBatch

CATALOG = np.array([f"i{k}" for k in range(12)], dtype=object)
SEQS = pd.DataFrame(
    {
        "user_id": ["a", "b", "c", "d"],
        "items": [["i0", "i1", "i2"], ["i1", "i2", "i3"], ["i1", "i4"], ["i5", "i1", "i2"]],
    }
)
ITEMS = pd.DataFrame(
    {"item_id": CATALOG, "title": [f"game {k} {'mario' if k % 2 else 'zelda'}" for k in range(12)]}
)
DATA = TrainData(SEQS, CATALOG, ITEMS)
BATCH = QueryBatch(["a", "zz"], [["i0", "i1"], ["i3"]])
CANDS = np.array([["i2", "i1", "i7", None], ["i4", "i9", "i11", "unknown"]], dtype=object)


@pytest.mark.parametrize(
    "kind,params",
    [
        ("popularity", {}),
        ("popularity", {"half_life": 1.0}),
        ("itemknn", {"neighbors": 5}),
        ("als", {"factors": 4, "iterations": 3}),
        ("bpr", {"factors": 4, "iterations": 3}),
        ("bm25", {}),
        ("bpr", {"optimizer": "adam", "factors": 4, "epochs": 3, "valid_users": 2, "eval_every": 1}),
        ("bm25", {"corpus": "candidates"}),
    ],
)
def test_baseline_shapes(kind, params):
    s = build_baseline(kind, params).fit(DATA)
    cand = s.score(BATCH, CANDS)
    assert cand.shape == (2, 4) and not np.isnan(cand).any()
    full = s.score(BATCH, CATALOG[None, :])
    assert full.shape == (2, 12) and not np.isnan(full).any()


def test_popularity_counts_and_item_knn_neighbours():
    pop = build_baseline("popularity").fit(DATA)
    assert pop.counts["i1"] == 4 and pop.counts["i2"] == 3 and pop.counts["i11"] == 0
    knn = build_baseline("itemknn", {"neighbors": 5}).fit(DATA)
    s = knn.score(QueryBatch(["x"], [["i2"]]), np.array([["i1", "i4", "i9"]], dtype=object))
    assert s[0, 0] > s[0, 1] >= s[0, 2] == 0.0  # i1 co-occurs with i2 most


def test_okapi_and_zero_shot(tiny_bert_dir):
    s = okapi_scores("mario kart wii", ["Mario Kart Wii", "Zelda Wii", "Halo 3", "Mario Party"])
    assert np.argmax(s) == 0 and s[2] == 0.0
    zs = build_baseline("zeroshot", {"model": str(tiny_bert_dir)}).fit(DATA)
    out = zs.score(BATCH, CANDS)
    assert out.shape == (2, 4) and np.isinf(out[1, 3]) and np.isfinite(out[0, :3]).all()
    with pytest.raises(ValueError, match="item text"):
        build_baseline("zeroshot").fit(TrainData(SEQS, CATALOG, None))


def test_unknown_kind_and_params():
    with pytest.raises(ValueError, match="unknown baseline"):
        build_baseline("nope")
    with pytest.raises(ValueError, match="bad params"):
        build_baseline("itemknn", {"k": 3})


def _two_tastes(n_users: int = 40) -> TrainData:
    """Even users buy from items 0-5, odd users from 6-11: a factor model must learn the split."""
    rng = np.random.default_rng(0)
    seqs = [[f"i{k + 6 * (u % 2)}" for k in rng.permutation(6)[:4]] for u in range(n_users)]
    return TrainData(pd.DataFrame({"user_id": [f"u{u}" for u in range(n_users)], "items": seqs}), CATALOG)


def test_bpr_adam_learns_tastes_stops_early_and_is_deterministic():
    data = _two_tastes()
    params = {
        "optimizer": "adam",
        "factors": 8,
        "epochs": 200,
        "learning_rate": 0.05,
        "batch_size": 32,
        "valid_users": 10,
        "eval_every": 2,
        "patience": 3,
    }
    s = build_baseline("bpr", params).fit(data)
    full = s.score(QueryBatch(["u0", "u1"], [[], []]), CATALOG[None, :])  # (2, 12)
    assert full[0, :6].mean() > full[0, 6:].mean() and full[1, 6:].mean() > full[1, :6].mean()
    info = s.info()
    assert info["best_epoch"] % 2 == 0 and info["best_epoch"] in [e for e, _ in info["probe_ndcg@10"]]
    assert len(info["probe_ndcg@10"]) < 100  # the probe stopped it before epoch 200
    again = build_baseline("bpr", params).fit(data).score(QueryBatch(["u0"], [[]]), CATALOG[None, :])
    np.testing.assert_allclose(
        again[0], full[0], rtol=1e-5
    )  # same weights; BLAS rounds (1, F) and (2, F) alike to 1e-7
    cold = s.score(QueryBatch(["new"], [["i7", "i8"]]), CATALOG[None, :])  # folded in from its history
    assert cold[0, 6:].mean() > cold[0, :6].mean()


def test_bpr_negatives_avoid_seen_items_and_holdout_keeps_one_item():
    from recsys.baselines.bpr import holdout_last, sample_negatives

    data = _two_tastes(10)
    seen = data.matrix()
    users = np.repeat(np.arange(10), 50)
    neg = sample_negatives(np.random.default_rng(1), users, 12, seen)
    assert not np.asarray(seen[users, neg]).any()
    u, i = holdout_last(data, 4, np.random.default_rng(0))
    assert len(u) == 4 and all(seen[a].sum() >= 2 and seen[a, b] for a, b in zip(u, i))


def test_bpr_bad_optimizer_and_params_are_named():
    with pytest.raises(ValueError, match="optimizer must be 'sgd'"):
        build_baseline("bpr", {"optimizer": "adamw"})
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        build_baseline("bpr", {"optimizer": "adam", "epochs": 0})
    with pytest.raises(ValueError, match="bad params"):
        build_baseline("bpr", {"optimizer": "adam", "iterations": 3})  # implicit's name, not this one's


def test_llmrank_bm25_matches_its_character_query_by_hand():
    """LLMRank's BM25: the query is the history's characters, so only single-character tokens match."""
    catalog = np.array(["m", "z", "h"], dtype=object)
    items = pd.DataFrame({"item_id": catalog, "title": ["Mario Kart 2", "Zelda: Link", "Halo"]})
    data = TrainData(pd.DataFrame({"user_id": ["u"], "items": [["h"]]}), catalog, items)
    s = build_baseline("bm25", {"variant": "llmrank"}).fit(data)
    # 4 documents (3 titles + RecBole's [PAD]), 10 tokens: avgdl 2.5; length norm uses N / avgdl = 1.6
    idf_2 = np.log(4 - 1 + 0.5) - np.log(1 + 0.5)
    one = idf_2 * 2.5 / (1 + 1.5 * (1 - 0.75 + 0.75 * 4 / 2.5))
    out = s.score(
        QueryBatch(["u", "v"], [["h"], ["h", "m"]]), catalog[None, :]
    )  # "Halo" has no digit; "Mario Kart 2" one
    np.testing.assert_allclose(out, [[0, 0, 0], [one, 0, 0]], atol=1e-8)
    two = s.score(QueryBatch(["w"], [["m", "m"]]), catalog[None, :])  # '2' twice in the query: counted twice
    np.testing.assert_allclose(two[0, 0], 2 * one, atol=1e-8)
    assert len(set(out[0].tolist())) == 3  # ties broken by a target-blind jitter, not left equal
    with pytest.raises(ValueError, match="variant must be"):
        build_baseline("bm25", {"variant": "okapi"})
