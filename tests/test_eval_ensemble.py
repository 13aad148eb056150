"""Fusion scorers and post-processing on hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ensemble import (
    RerankScorer,
    RRFScorer,
    WeightedScorer,
    dedupe,
    filter_seen,
    fit_rerank_weight,
    fit_weights,
    mmr,
    paginate,
)
from recsys.evaluation import QueryBatch, RankingEvaluator, leave_one_out, sample_negatives


class Fixed:
    def __init__(self, table):
        self.table = np.asarray(table, dtype=float)

    def score(self, batch, item_ids):
        return self.table[: len(batch)]


BATCH = QueryBatch(["u"], [[]])
ITEMS = np.array([["a", "b", "c"]], dtype=object)


def test_rrf_and_weighted_fusion():
    a, b = Fixed([[3.0, 2.0, 1.0]]), Fixed([[1.0, 3.0, 2.0]])
    rrf = RRFScorer([a, b], k=1).score(BATCH, ITEMS)
    np.testing.assert_allclose(rrf, [[1 / 2 + 1 / 4, 1 / 3 + 1 / 2, 1 / 4 + 1 / 3]])
    w = WeightedScorer([a, b], [1.0, 0.0]).score(BATCH, ITEMS)
    assert np.argsort(-w[0]).tolist() == [0, 1, 2]
    # an item one member cannot score stays rankable through the other
    c = Fixed([[-np.inf, 1.0, 0.0]])
    assert np.isfinite(WeightedScorer([a, c], [1.0, 1.0]).score(BATCH, ITEMS)).all()


class Recorder:
    """A re-ranker that scores by a fixed item -> score map and records what it was asked."""

    def __init__(self, table):
        self.table, self.calls = table, []

    def score(self, batch, item_ids):
        self.calls.append(item_ids.copy())
        return np.array([[self.table[i] if i is not None else -np.inf for i in row] for row in item_ids])


def test_rerank_reorders_only_the_first_stage_top_n():
    items = np.array([["a", "b", "c", "d", "e"]], dtype=object)
    first = Fixed([[5.0, 4.0, 3.0, 2.0, -np.inf], [1.0, 2.0, 3.0, 4.0, 5.0]])
    second = Recorder({"a": 0.0, "b": 9.0, "c": 1.0, "d": 7.0, "e": 8.0})
    batch = QueryBatch(["u", "v"], [[], []])
    out = RerankScorer(first, second, top_n=3, weight=1.0).score(batch, items)  # items (1, 5): full ranking
    assert [sorted(map(str, row)) for row in second.calls[0]] == [["a", "b", "c"], ["c", "d", "e"]]
    assert np.argsort(-out[0]).tolist()[:4] == [
        1,
        2,
        0,
        3,
    ]  # b > c > a re-ranked, then d (first stage), e unrankable
    assert out[0, 4] == -np.inf
    assert np.argsort(-out[1]).tolist() == [4, 3, 2, 1, 0]  # e 8 > d 7 > c 1, then b, a in first-stage order
    assert np.argsort(-RerankScorer(first, second, top_n=3, weight=0.0).score(batch, items)[1]).tolist() == [
        4,
        3,
        2,
        1,
        0,
    ]
    # a row with fewer rankable cells than top_n: the re-ranker is never asked about the -inf cell
    one = RerankScorer(Fixed([[1.0, -np.inf, -np.inf]]), second, top_n=2).score(BATCH, ITEMS)
    assert (
        np.isfinite(one[0, 0])
        and np.isinf(one[0, 1:]).all()
        and second.calls[-1].tolist()[0].count(None) == 1
    )


def test_fit_rerank_weight_trusts_a_good_reranker_and_ignores_a_bad_one():
    seqs = {f"u{u}": [f"i{(u + j) % 40}" for j in range(6)] for u in range(30)}
    es = sample_negatives(leave_one_out(seqs).valid, 10, seed=0)
    ev = RankingEvaluator(es, ["ndcg@5"])
    tgt = {q: t[0] for q, t in zip(es.query_ids, es.targets)}

    def judge(sign):
        return lambda b, items: np.array(
            [[sign * (i == tgt[q]) for i in row] for q, row in zip(b.query_ids, items)], float
        )

    def noisy(b, items):  # a weak first stage: the target is usually in its top 8, rarely first
        return np.random.default_rng(len(b)).normal(size=items.shape) + np.array(
            [[0.8 * (i == tgt[q]) for i in row] for q, row in zip(b.query_ids, items)]
        )

    w_good, best_good = fit_rerank_weight(noisy, judge(1.0), 8, lambda s: ev(s)["ndcg@5"])
    w_bad, best_bad = fit_rerank_weight(noisy, judge(-1.0), 8, lambda s: ev(s)["ndcg@5"])
    assert w_good == 1.0 and w_bad == 0.0 and best_good > best_bad


def test_fusion_of_tied_scores_cannot_find_the_target_by_position():
    seqs = {f"u{u}": [f"i{(u + j) % 40}" for j in range(6)] for u in range(30)}
    es = sample_negatives(leave_one_out(seqs).test, 19, seed=0)
    const = lambda b, items: np.zeros(items.shape)  # noqa: E731 - carries no information
    for fused in (RRFScorer([const, const]), WeightedScorer([const, const], [1.0, 1.0])):
        assert RankingEvaluator(es, ["hit_rate@10"])(fused)["hit_rate@10"] == 0.0  # pessimistic ties


def test_fit_weights_finds_the_useful_member():
    seqs = {f"u{u}": [f"i{(u + j) % 40}" for j in range(6)] for u in range(30)}
    es = sample_negatives(leave_one_out(seqs).valid, 10, seed=0)
    ev = RankingEvaluator(es, ["ndcg@5"])

    class Oracle:  # knows the target
        def score(self, batch, item_ids):
            tgt = {q: t[0] for q, t in zip(es.query_ids, es.targets)}
            return np.array(
                [[1.0 if i == tgt[q] else 0.0 for i in row] for q, row in zip(batch.query_ids, item_ids)]
            )

    class Noise:
        def score(self, batch, item_ids):
            return np.random.default_rng(len(batch)).normal(size=item_ids.shape)

    w, best = fit_weights([Noise(), Oracle()], lambda s: ev(s)["ndcg@5"])
    assert w[1] > 0 and best == pytest.approx(1.0)


def test_postprocessing():
    assert dedupe(["a", "b", "a", "c"]) == ["a", "b", "c"]
    assert dedupe(["a", "b", "c"], key={"a": "g", "b": "g"}) == ["a", "c"]
    assert filter_seen(["a", "b", "c"], ["b"]) == ["a", "c"]
    assert paginate(list("abcdefg"), 2, 3) == ["d", "e", "f"]
    vecs = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0]])
    assert mmr(["a", "a2", "b"], [1.0, 0.95, 0.5], vecs, k=2, lam=1.0) == ["a", "a2"]
    assert mmr(["a", "a2", "b"], [1.0, 0.95, 0.5], vecs, k=2, lam=0.5) == ["a", "b"]
    with pytest.raises(ValueError, match="page"):
        paginate(["a"], 0, 3)
