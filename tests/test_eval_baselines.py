"""Baselines: fit on a tiny TrainData, score both candidate and full-catalog item matrices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.baselines import TrainData, build_baseline
from recsys.baselines.text import okapi_scores
from recsys.evaluation import QueryBatch

CATALOG = np.array([f"i{k}" for k in range(12)], dtype=object)
SEQS = pd.DataFrame({"user_id": ["a", "b", "c", "d"],
                     "items": [["i0", "i1", "i2"], ["i1", "i2", "i3"], ["i1", "i4"], ["i5", "i1", "i2"]]})
ITEMS = pd.DataFrame({"item_id": CATALOG, "title": [f"game {k} {'mario' if k % 2 else 'zelda'}" for k in range(12)]})
DATA = TrainData(SEQS, CATALOG, ITEMS)
BATCH = QueryBatch(["a", "zz"], [["i0", "i1"], ["i3"]])
CANDS = np.array([["i2", "i1", "i7", None], ["i4", "i9", "i11", "unknown"]], dtype=object)


@pytest.mark.parametrize("kind,params", [
    ("popularity", {}), ("popularity", {"half_life": 1.0}), ("itemknn", {"neighbors": 5}),
    ("als", {"factors": 4, "iterations": 3}), ("bpr", {"factors": 4, "iterations": 3}), ("bm25", {}),
    ("bm25", {"corpus": "candidates"}),
])
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
