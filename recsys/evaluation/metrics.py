"""Ranking metrics computed from the ranks of each query's relevant items.

Every ranking metric (HR/Recall/Precision/NDCG/MRR/MAP@k, AUC) depends only on *where* the relevant
items landed, their graded relevance, and how many candidates were ranked. So the evaluator turns
scores into a :class:`TargetRanks` (one row per query, padded over targets) and every metric is a
short vectorised function of it. Definitions follow ``ranx`` / ``trec_eval`` (checked to 1e-6 in
``tests/test_eval_metrics.py``):

- ``hit_rate@k``: 1 if any relevant item is in the top k.
- ``recall@k``: relevant in top k / number of relevant items.
- ``precision@k``: relevant in top k / k.
- ``ndcg@k``: Järvelin DCG (gain = relevance, discount log2(rank+1)) / ideal DCG of the judged items.
- ``ndcg_burges@k``: the same with gain 2^rel - 1.
- ``mrr@k``: 1 / rank of the first relevant item in the top k (0 if none).
- ``map@k``: sum of precision@rank at each relevant item in the top k / number of relevant items.
- ``auc``: fraction of (relevant, non-relevant) candidate pairs ordered correctly.

Ties between scores are broken **pessimistically** by default (a relevant item tied with a
non-relevant one is ranked below it), so a constant scorer cannot look good; ``ties="optimistic"``
is the opposite bound.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np

Ties = Literal["pessimistic", "optimistic"]
NOT_RANKED = np.iinfo(np.int64).max // 4  # rank of a relevant item that the run did not retrieve

# name -> needs k
RANKING_METRICS = {
    "hit_rate": True,
    "hr": True,
    "recall": True,
    "precision": True,
    "ndcg": True,
    "ndcg_burges": True,
    "mrr": False,
    "map": False,
    "auc": False,
}
_ALIASES = {"hr": "hit_rate", "hits": "hit_rate"}
_NAME_RE = re.compile(r"^([a-z_]+?)(?:@(\d+))?$")


@dataclass
class TargetRanks:
    """Ranks of each query's relevant items.

    ranks: (Q, T) int64, 0-based rank of each relevant item in the query's ranked list
        (``NOT_RANKED`` if it was not retrieved); padding entries have gain 0.
    gains: (Q, T) float64, graded relevance (> 0) of each target; 0 = padding.
    n_candidates: (Q,) int64, how many items were ranked for the query (for AUC).
    """

    ranks: np.ndarray
    gains: np.ndarray
    n_candidates: np.ndarray

    def __post_init__(self) -> None:
        self.ranks = np.asarray(self.ranks, dtype=np.int64).reshape(len(self.gains), -1)
        self.gains = np.asarray(self.gains, dtype=np.float64).reshape(len(self.ranks), -1)
        self.n_candidates = np.asarray(self.n_candidates, dtype=np.int64).reshape(-1)

    def __len__(self) -> int:
        return len(self.ranks)

    @property
    def valid(self) -> np.ndarray:  # (Q, T) bool: real (non-padding) relevant items
        return self.gains > 0

    @property
    def n_relevant(self) -> np.ndarray:  # (Q,)
        return self.valid.sum(1)

    @classmethod
    def concat(cls, parts: list[TargetRanks]) -> TargetRanks:
        width = max((p.ranks.shape[1] for p in parts), default=1)

        def pad(a: np.ndarray, fill: float) -> np.ndarray:
            return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill)

        return cls(
            ranks=np.concatenate([pad(p.ranks, NOT_RANKED) for p in parts]) if parts else np.zeros((0, 1)),
            gains=np.concatenate([pad(p.gains, 0.0) for p in parts]) if parts else np.zeros((0, 1)),
            n_candidates=np.concatenate([p.n_candidates for p in parts]) if parts else np.zeros(0),
        )


def ranks_from_scores(
    scores: np.ndarray, target_cols: np.ndarray, target_gains: np.ndarray, *, ties: Ties = "pessimistic"
) -> TargetRanks:
    """Ranks of the targets inside a score matrix.

    scores: (Q, C) float; ``-inf`` marks excluded candidates (not counted in ``n_candidates``).
    target_cols: (Q, T) int, column of each relevant item in ``scores``; -1 = the item is not
        among the ranked columns (it counts as relevant but not retrieved).
    target_gains: (Q, T) float, relevance of each target (<= 0 = padding / not relevant).
    Targets are never excluded, even if their score is ``-inf``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    cols = np.asarray(target_cols, dtype=np.int64).reshape(len(scores), -1)
    gains = np.asarray(target_gains, dtype=np.float64).reshape(cols.shape)
    gains = np.where(gains > 0, gains, 0.0)
    valid = (gains > 0) & (cols >= 0)  # relevant and present among the columns
    q_idx = np.arange(len(scores))[:, None]
    safe_cols = np.where(valid, cols, 0)
    t_scores = scores[q_idx, safe_cols]  # (Q, T)
    is_target = np.zeros(scores.shape, dtype=bool)  # (Q, C)
    is_target[np.repeat(q_idx, cols.shape[1], 1)[valid], cols[valid]] = True
    finite = np.isfinite(scores) | (scores == np.inf)
    n_cand = (finite | is_target).sum(1)
    ranks = np.full(cols.shape, NOT_RANKED, dtype=np.int64)
    for t in range(cols.shape[1]):
        s = t_scores[:, t : t + 1]  # (Q, 1)
        above = (scores > s).sum(1)  # (Q,)
        tied = scores == s  # (Q, C)
        tied_nonrel = (tied & ~is_target).sum(1)
        # relevant items tied with this one: order them by column (a deterministic, fair rule)
        tied_rel_before = (tied & is_target & (np.arange(scores.shape[1])[None, :] < cols[:, t : t + 1])).sum(
            1
        )
        r = above + tied_rel_before + (tied_nonrel if ties == "pessimistic" else 0)
        ranks[:, t] = np.where(valid[:, t], r, NOT_RANKED)
    return TargetRanks(ranks=ranks, gains=gains, n_candidates=n_cand)


def parse_metric(name: str) -> tuple[str, int | None]:
    """``'ndcg@10'`` -> ``('ndcg', 10)``; raises ValueError naming the valid metrics."""
    m = _NAME_RE.match(name.strip().lower())
    base = _ALIASES.get(m.group(1), m.group(1)) if m else None
    if not m or base not in RANKING_METRICS:
        raise ValueError(
            f"unknown metric {name!r}; use one of hit_rate@k, recall@k, precision@k, ndcg@k, "
            "ndcg_burges@k, mrr, mrr@k, map, map@k, auc"
        )
    k = int(m.group(2)) if m.group(2) else None
    if RANKING_METRICS[base] and k is None:
        raise ValueError(f"metric {name!r} needs a cutoff, e.g. {base}@10")
    if k is not None and k < 1:
        raise ValueError(f"metric {name!r}: the cutoff must be >= 1")
    return base, k


def _in_top(tr: TargetRanks, k: int | None) -> np.ndarray:
    return tr.valid & (tr.ranks < (k if k is not None else NOT_RANKED))


def hit_rate(tr: TargetRanks, k: int) -> np.ndarray:
    return cast(
        np.ndarray, _in_top(tr, k).any(1).astype(np.float64)
    )  # numpy stubs: any(axis) may be a scalar


def recall(tr: TargetRanks, k: int) -> np.ndarray:
    return _in_top(tr, k).sum(1) / np.maximum(tr.n_relevant, 1)


def precision(tr: TargetRanks, k: int) -> np.ndarray:
    return _in_top(tr, k).sum(1) / float(k)


def _ndcg(tr: TargetRanks, k: int, gain_fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    hit = _in_top(tr, k)
    disc = 1.0 / np.log2(np.where(hit, tr.ranks, 0) + 2.0)  # (Q, T)
    dcg = (np.where(hit, gain_fn(tr.gains), 0.0) * disc).sum(1)
    ideal = -np.sort(-np.where(tr.valid, tr.gains, 0.0), axis=1)[:, :k]  # (Q, min(T, k))
    idcg = (gain_fn(ideal) / np.log2(np.arange(ideal.shape[1]) + 2.0)).sum(1)
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def ndcg(tr: TargetRanks, k: int) -> np.ndarray:
    return _ndcg(tr, k, lambda g: g)


def ndcg_burges(tr: TargetRanks, k: int) -> np.ndarray:
    return _ndcg(tr, k, lambda g: np.where(g > 0, np.exp2(g) - 1.0, 0.0))


def mrr(tr: TargetRanks, k: int | None = None) -> np.ndarray:
    hit = _in_top(tr, k)
    return np.where(hit, 1.0 / (np.where(hit, tr.ranks, 0) + 1.0), 0.0).max(1, initial=0.0)


def average_precision(tr: TargetRanks, k: int | None = None) -> np.ndarray:
    hit = _in_top(tr, k)
    ranks = np.sort(np.where(hit, tr.ranks, NOT_RANKED), axis=1)  # (Q, T) hits first, ascending
    hit_sorted = ranks < NOT_RANKED
    nth = np.cumsum(hit_sorted, axis=1)  # i-th relevant hit (1-based)
    prec = np.where(hit_sorted, nth / (np.where(hit_sorted, ranks, 0) + 1.0), 0.0)
    return prec.sum(1) / np.maximum(tr.n_relevant, 1)


def auc(tr: TargetRanks) -> np.ndarray:
    """Per query: P(relevant ranked above non-relevant); unretrieved relevant items count as last."""
    valid = tr.valid
    n_rel = tr.n_relevant
    n_neg = tr.n_candidates - n_rel
    ranks = np.where(valid, np.minimum(tr.ranks, tr.n_candidates[:, None] - 1), 0)
    # rank - (relevant items above it) = non-relevant items above it
    order = np.argsort(np.where(valid, ranks, NOT_RANKED), axis=1, kind="stable")
    sorted_r = np.take_along_axis(ranks, order, 1)
    neg_above = np.where(
        np.take_along_axis(valid, order, 1), sorted_r - np.arange(ranks.shape[1])[None, :], 0
    )
    neg_above = np.clip(neg_above, 0, n_neg[:, None])
    bad = neg_above.sum(1)
    total = n_rel * n_neg
    return np.divide(total - bad, total, out=np.full(len(tr), np.nan), where=total > 0)


_FUNCS: dict[str, Callable[..., np.ndarray]] = {  # k: int, or None where the metric allows it
    "hit_rate": hit_rate,
    "recall": recall,
    "precision": precision,
    "ndcg": ndcg,
    "ndcg_burges": ndcg_burges,
    "mrr": mrr,
    "map": average_precision,
}


def per_query(tr: TargetRanks, metric: str) -> np.ndarray:
    """Per-query values (Q,) of one metric name such as ``'ndcg@10'``."""
    base, k = parse_metric(metric)
    if base == "auc":
        return auc(tr)
    return _FUNCS[base](tr, k)


def metric_key(metric: str) -> str:
    """Canonical key of a metric name: ``'HR@10'`` -> ``'hit_rate@10'``."""
    base, k = parse_metric(metric)
    return f"{base}@{k}" if k is not None else base


def compute(tr: TargetRanks, metrics: list[str]) -> dict[str, np.ndarray]:
    """``{canonical metric name: per-query values}``; queries with no relevant item are dropped
    by the caller (they have no defined value and ranx/trec_eval skip them too)."""
    return {metric_key(m): per_query(tr, m) for m in metrics}
