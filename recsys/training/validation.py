"""In-loop validation metrics, computed by the Evaluation code (``recsys.evaluation``).

The training tasks turn their validation batches into scores and hand them here; every number comes
from ``recsys.evaluation.metrics`` (ranking: ranks with pessimistic ties, then ``M.compute``) or
``recsys.evaluation.classification`` (pairs), so ``ndcg@10`` / ``mrr`` / ``f1`` in a training report
mean exactly what the ``evaluate`` job reports under those names. Like the evaluators, the dict
carries ``primary_metric`` (the name of the metric to select on) and ``n_queries`` / ``n_pairs``.

Per worker and cheap: numpy on the worker's own scores, no Ray calls (it runs inside Ray Train workers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recsys.evaluation import metrics as M

BLOCK_SCORES = 2**22  # most scores ranked at once (queries x candidates): bounds validation memory


def ranking_metrics(scores: np.ndarray, target_cols: np.ndarray, metrics: Sequence[str],
                    primary_metric: str) -> dict[str, Any]:
    """Mean of each metric over queries.

    scores: (Q, C) float, ``-inf`` = not ranked (padding, excluded items); target_cols: (Q, T) int,
    each query's relevant columns (binary relevance), -1 = padding. Ties rank the relevant item last
    (the evaluate job's default).
    """
    scores = np.asarray(scores, dtype=np.float64)
    cols = np.asarray(target_cols, dtype=np.int64).reshape(len(scores), -1)
    tr = M.ranks_from_scores(scores, cols, (cols >= 0).astype(np.float64))
    return ranking_summary(tr, metrics, primary_metric)


def retrieval_metrics(query_vecs: np.ndarray, item_vecs: np.ndarray, targets: Sequence[Sequence[int]],
                      metrics: Sequence[str], primary_metric: str) -> dict[str, Any]:
    """Dot-product retrieval: query ``i`` (row of ``query_vecs`` (Q, D)) ranks every row of ``item_vecs``
    (N, D); ``targets[i]`` are its relevant rows. Scored in blocks of at most ``BLOCK_SCORES``."""
    width = max((len(t) for t in targets), default=1) or 1
    cols = np.full((len(targets), width), -1, dtype=np.int64)
    for i, t in enumerate(targets):
        cols[i, : len(t)] = t
    step = max(1, BLOCK_SCORES // max(len(item_vecs), 1))
    parts = [M.ranks_from_scores(query_vecs[a : a + step] @ item_vecs.T, cols[a : a + step],
                                 (cols[a : a + step] >= 0).astype(np.float64))
             for a in range(0, len(cols), step)]
    return ranking_summary(M.TargetRanks.concat(parts), metrics, primary_metric)


def with_primary(metrics: Sequence[str], primary_metric: str) -> list[str]:
    """``metrics`` plus ``primary_metric`` when that is another ranking metric name (``ndcg@20``)."""
    try:
        M.parse_metric(primary_metric)
    except ValueError:
        return list(metrics)
    return list(metrics) if primary_metric in metrics else [*metrics, primary_metric]


def ranking_summary(tr: M.TargetRanks, metrics: Sequence[str], primary_metric: str) -> dict[str, Any]:
    """``{metric: mean, ..., "n_queries": Q, "primary_metric": name}`` of already-ranked targets
    (queries without a relevant item are dropped, as the evaluators do)."""
    keep = tr.n_relevant > 0
    tr = M.TargetRanks(tr.ranks[keep], tr.gains[keep], tr.n_candidates[keep])
    out: dict[str, Any] = {name: float(np.mean(v)) if len(v) else float("nan") for name, v in M.compute(tr, list(metrics)).items()}
    out["n_queries"] = int(len(tr))
    out["primary_metric"] = primary_metric
    return out


def pair_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float, primary_metric: str) -> dict[str, Any]:
    """Pair classification at a fixed ``threshold`` (predict ``score >= threshold``; labels > 0.5 match):
    precision / recall / f1 / pr_auc / roc_auc as ``classification_metrics`` gives them, ``accuracy``
    from ``per_pair_correct``, and ``valid_f1``: the F1 at the best threshold on these same pairs
    (what ``PairClassificationEvaluator`` chooses on validation before scoring test)."""
    from recsys.evaluation.classification import best_threshold, classification_metrics, per_pair_correct

    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = (np.asarray(labels, dtype=np.float64).reshape(-1) > 0.5).astype(int)
    out: dict[str, Any] = classification_metrics(s, y, threshold)
    out["accuracy"] = float(per_pair_correct(s, y, threshold).mean()) if len(y) else float("nan")
    out["valid_f1"] = best_threshold(s, y)[1] if 0 < y.sum() < len(y) else float("nan")
    out["primary_metric"] = primary_metric
    return out
