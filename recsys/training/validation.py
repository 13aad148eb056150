"""In-loop validation metrics, computed by the Evaluation code (``recsys.evaluation``).

The training tasks (``recsys.kinds``) turn their validation batches into scores (``RankingScores`` /
``PairScores``) and ``validate`` turns those into metrics; every number comes
from ``recsys.evaluation.metrics`` (ranking: ranks with pessimistic ties, then ``M.compute``) or
``recsys.evaluation.classification`` (pairs), so ``ndcg@10`` / ``mrr`` / ``f1`` in a training report
mean exactly what the ``evaluate`` job reports under those names. Like the evaluators, the dict
carries ``primary_metric`` (the name of the metric to select on) and ``n_queries`` / ``n_pairs``.

Per worker and cheap: numpy on the worker's own scores, no Ray calls (it runs inside Ray Train workers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from recsys.evaluation import metrics as M
from recsys.evaluation.classification import best_threshold, classification_metrics, per_pair_correct
from recsys.kinds.base import PairScores, Task


def validate(task: Task, batches: Iterable[Any], primary_metric: str) -> dict[str, Any]:
    """The metrics of ``task`` on the validation ``batches`` ({} when there are none): ranking tasks'
    score blocks are ranked as they come (pessimistic ties), pair tasks' scores classified."""
    import torch  # lazy: torch costs seconds; the metric code here is numpy-only

    with torch.no_grad():
        scores = task.validation_scores(batches)
        if isinstance(scores, PairScores):
            if not len(scores.scores):
                return {}
            out = pair_metrics(scores.scores, scores.labels, scores.threshold, primary_metric)
            out["valid_size"] = float(len(scores.labels))
            out.update(scores.extra)
            return out
        parts = [M.ranks_from_scores(s, cols, (cols >= 0).astype(np.float64)) for s, cols in scores.blocks]
    if not parts:
        return {}
    tr = M.TargetRanks.concat(parts)
    out = ranking_summary(tr, with_primary(scores.metrics, primary_metric), primary_metric)
    out["valid_size"] = float(len(tr))  # rows ranked (a task whose rows are not its queries says so in extra)
    out.update(scores.extra)
    return out


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
    out: dict[str, Any] = {
        name: float(np.mean(v)) if len(v) else float("nan")
        for name, v in M.compute(tr, list(metrics)).items()
    }
    out["n_queries"] = int(len(tr))
    out["primary_metric"] = primary_metric
    return out


def pair_metrics(
    scores: np.ndarray, labels: np.ndarray, threshold: float, primary_metric: str
) -> dict[str, Any]:
    """Pair classification at a fixed ``threshold`` (predict ``score >= threshold``; labels > 0.5 match):
    precision / recall / f1 / pr_auc / roc_auc as ``classification_metrics`` gives them, ``accuracy``
    from ``per_pair_correct``, and ``valid_f1``: the F1 at the best threshold on these same pairs
    (what ``PairClassificationEvaluator`` chooses on validation before scoring test)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = (np.asarray(labels, dtype=np.float64).reshape(-1) > 0.5).astype(int)
    out: dict[str, Any] = classification_metrics(s, y, threshold)
    out["accuracy"] = float(per_pair_correct(s, y, threshold).mean()) if len(y) else float("nan")
    out["valid_f1"] = best_threshold(s, y)[1] if 0 < y.sum() < len(y) else float("nan")
    out["primary_metric"] = primary_metric
    return out
