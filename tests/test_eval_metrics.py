"""Every ranking metric agrees with ranx (exact to 1e-6) on random runs, graded and binary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.evaluation import metrics as M
from recsys.evaluation.beyond import beyond_accuracy
from recsys.evaluation.train_data import TrainData

RANX_NAMES = {
    "hit_rate@1": "hit_rate@1",
    "hit_rate@5": "hit_rate@5",
    "recall@5": "recall@5",
    "recall@20": "recall@20",
    "precision@3": "precision@3",
    "precision@10": "precision@10",
    "ndcg@5": "ndcg@5",
    "ndcg@10": "ndcg@10",
    "ndcg_burges@10": "ndcg_burges@10",
    "mrr": "mrr",
    "mrr@5": "mrr@5",
    "map": "map",
    "map@10": "map@10",
}


def _random_case(seed: int, graded: bool, n_q: int = 60, n_c: int = 30):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n_q, n_c))
    n_t = 4
    cols = np.stack([rng.choice(n_c, n_t, replace=False) for _ in range(n_q)])
    n_rel = rng.integers(1, n_t + 1, n_q)
    gains = (rng.integers(1, 4, (n_q, n_t)) if graded else np.ones((n_q, n_t))).astype(float)
    gains[np.arange(n_t)[None, :] >= n_rel[:, None]] = 0.0
    cols = np.where(gains > 0, cols, -1)
    return scores, cols, gains


def _ranx(scores, cols, gains, names):
    from ranx import Qrels, Run, evaluate

    qrels = {
        f"q{i:04d}": {f"d{c}": int(g) for c, g in zip(cols[i], gains[i]) if g > 0} for i in range(len(scores))
    }
    run = {f"q{i:04d}": {f"d{j}": float(s) for j, s in enumerate(scores[i])} for i in range(len(scores))}
    out = evaluate(Qrels(qrels), Run(run), list(names), return_mean=False, make_comparable=True)
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("graded", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_ranx(seed, graded):
    scores, cols, gains = _random_case(seed, graded)
    tr = M.ranks_from_scores(scores, cols, gains)
    ours = M.compute(tr, list(RANX_NAMES))
    ref = _ranx(scores, cols, gains, RANX_NAMES.values())
    for name, ranx_name in RANX_NAMES.items():
        np.testing.assert_allclose(ours[name], ref[ranx_name], atol=1e-6, err_msg=name)


def test_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    scores, cols, gains = _random_case(3, graded=False)
    ours = M.auc(M.ranks_from_scores(scores, cols, gains))
    for i in range(len(scores)):
        y = np.zeros(scores.shape[1])
        y[cols[i][cols[i] >= 0]] = 1
        assert ours[i] == pytest.approx(roc_auc_score(y, scores[i]), abs=1e-9)


def test_excluded_candidates_and_pessimistic_ties():
    # item 0 is the target; item 1 excluded (-inf); items 2, 3 tie with the target.
    scores = np.array([[1.0, -np.inf, 1.0, 1.0, 0.0]])
    tr = M.ranks_from_scores(scores, np.array([[0]]), np.array([[1.0]]))
    assert tr.ranks[0, 0] == 2 and tr.n_candidates[0] == 4
    tr_opt = M.ranks_from_scores(scores, np.array([[0]]), np.array([[1.0]]), ties="optimistic")
    assert tr_opt.ranks[0, 0] == 0
    # a constant scorer gets the worst rank under the default rule
    const = M.ranks_from_scores(np.zeros((1, 20)), np.array([[5]]), np.array([[1.0]]))
    assert M.ndcg(const, 10)[0] == 0.0 and M.auc(const)[0] == 0.0


def test_single_target_closed_forms():
    tr = M.TargetRanks(
        ranks=np.array([[0], [3], [25]]), gains=np.ones((3, 1)), n_candidates=np.array([21, 21, 101])
    )
    np.testing.assert_allclose(M.ndcg(tr, 10), [1.0, 1 / np.log2(5), 0.0])
    np.testing.assert_allclose(M.hit_rate(tr, 5), [1, 1, 0])
    np.testing.assert_allclose(M.mrr(tr), [1, 0.25, 1 / 26])
    np.testing.assert_allclose(M.auc(tr), [1.0, 17 / 20, 75 / 100])


@pytest.mark.parametrize("bad", ["ndcg", "foo@3", "recall@0", "ndcg@x"])
def test_bad_metric_names_are_clear(bad):
    with pytest.raises(ValueError, match="metric"):
        M.parse_metric(bad)


def test_beyond_accuracy_of_top_k_lists():
    train = TrainData(
        sequences=pd.DataFrame({"user_id": ["u", "v"], "items": [["a", "b", "a"], ["a"]]}),
        catalog=np.array(["a", "b", "c", "d"], dtype=object),
    )
    topk = np.array([["a", "b"], ["a", None]], dtype=object)
    vectors = (np.array(["a", "b"], dtype=object), np.array([[1.0, 0.0], [0.0, 2.0]]))
    # popularity = users per item (a: 2, b: 1); novelty of a = -log2(2/2) = 0, of b = -log2(1/2) = 1
    assert beyond_accuracy(topk, train, vectors) == {
        "coverage@2": 0.5,
        "novelty@2": 0.25,
        "popularity_bias@2": 1.75,
        "diversity@2": 1.0,
    }
    assert beyond_accuracy(None, train, vectors) == {}
