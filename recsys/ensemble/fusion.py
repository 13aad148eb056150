"""Score / rank fusion of several scorers: reciprocal rank fusion, weighted normalised scores
(weights fit on validation), a learned fusion (logistic regression over member scores), and a
two-stage re-ranker (a cheap first stage, a cross-encoder over each query's top cells).

Each fusion is itself a :class:`recsys.evaluation.Scorer`, so it is evaluated, compared with its
members (paired tests) and served like any model.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.evaluation.scorer import QueryBatch, as_scorer
from recsys.retrieval.fusion import average_ranks, rrf_scores

if TYPE_CHECKING:
    from recsys.evaluation.protocols import EvalSet


class CachedScorer:
    """Memoises a member's scores per (query ids, item matrix shape): fitting fusion weights
    re-scores the same validation batches many times. Valid for one EvalSet at a time."""

    def __init__(self, scorer: Any, max_entries: int = 4096):
        self.scorer, self.max_entries = as_scorer(scorer), max_entries
        self._cache: dict[tuple[Any, ...], np.ndarray] = {}

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        key = (tuple(batch.query_ids), item_ids.shape, tuple(item_ids[0, :3].tolist()))
        if key not in self._cache:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[key] = np.asarray(self.scorer.score(batch, item_ids), dtype=np.float64)
        return self._cache[key]

    def clear(self) -> None:
        self._cache.clear()


def row_ranks(scores: np.ndarray) -> np.ndarray:
    """(B, C) 1-based rank of each cell within its row (best = 1); -inf cells get rank C + 1.

    Tied scores share their average rank (the RRF tie rule, ``recsys.retrieval.fusion``): a rank must
    never depend on a cell's column, or the candidate order (e.g. targets listed first) would leak
    into the fused score.
    """
    ranks = average_ranks(scores)
    return np.where(np.isfinite(scores), ranks, scores.shape[1] + 1.0)


def zscore(scores: np.ndarray) -> np.ndarray:
    """Row-wise z-normalisation over finite cells; -inf stays -inf."""
    finite = np.isfinite(scores)
    x = np.where(finite, scores, np.nan)
    mu = np.nanmean(x, axis=1, keepdims=True)
    sd = np.nanstd(x, axis=1, keepdims=True)
    z = (x - mu) / np.where(sd > 0, sd, 1.0)
    return np.where(finite, z, -np.inf)


def _member_scores(members: Sequence[Any], batch: QueryBatch, item_ids: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(m.score(batch, item_ids), dtype=np.float64) for m in members]


class RRFScorer:
    """Reciprocal rank fusion, sum_m w_m / (k + rank_m), by the one RRF (``recsys.retrieval.fusion``):
    ranks are :func:`row_ranks` (ties share their average rank; a cell a member cannot score ranks
    last, C + 1); a cell no member can score stays -inf."""

    def __init__(self, members: Sequence[Any], k: float = 60.0, weights: Sequence[float] | None = None):
        self.members, self.k = [as_scorer(m) for m in members], k
        self.weights = np.asarray(
            weights if weights is not None else [1.0] * len(self.members), dtype=np.float64
        )

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        parts = _member_scores(self.members, batch, item_ids)
        out = rrf_scores([row_ranks(s) for s in parts], self.weights, self.k)
        dead = np.all([~np.isfinite(s) for s in parts], axis=0)
        return np.where(dead, -np.inf, out)


class WeightedScorer:
    """sum_m w_m * zscore(scores_m); a member's -inf cell counts as its row minimum."""

    def __init__(self, members: Sequence[Any], weights: Sequence[float]):
        self.members, self.weights = [as_scorer(m) for m in members], np.asarray(weights, dtype=np.float64)

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        parts = [zscore(s) for s in _member_scores(self.members, batch, item_ids)]
        out = np.zeros(parts[0].shape)
        for w, z in zip(self.weights, parts):
            floor = np.nanmin(np.where(np.isfinite(z), z, np.nan), axis=1, keepdims=True)
            out += w * np.where(np.isfinite(z), z, np.nan_to_num(floor, nan=0.0) - 1.0)
        dead = np.all([~np.isfinite(z) for z in parts], axis=0)
        return np.where(dead, -np.inf, out)


def fit_weights(
    members: Sequence[Any],
    objective: Callable[[object], float],
    grid: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 2.0),
    rounds: int = 2,
) -> tuple[list[float], float]:
    """Coordinate ascent of the weights on ``objective(scorer)`` (a validation metric); member 0
    is fixed at 1 (scale invariance). Returns (weights, best objective)."""
    cached = [m if isinstance(m, CachedScorer) else CachedScorer(m) for m in members]
    w = [1.0] * len(cached)
    best = objective(WeightedScorer(cached, w))
    for _ in range(rounds):
        improved = False
        for j, value in itertools.product(range(1, len(cached)), grid):
            trial = list(w)
            trial[j] = value
            score = objective(WeightedScorer(cached, trial))
            if score > best + 1e-12:
                best, w, improved = score, trial, True
        if not improved:
            break
    return w, best


class RerankScorer:
    """Two stages: ``first`` scores every cell; ``second`` (a cross-encoder) re-scores each row's
    ``top_n`` best cells only. Those are ordered by ``weight * z(second) + (1 - weight) * z(first)``
    (z-scores within the row's top cells) and placed above every other cell, which keep the first
    stage's order. So ``second`` scores B x top_n pairs, never the whole catalog."""

    def __init__(self, first: Any, second: Any, top_n: int = 20, weight: float = 1.0):
        if top_n < 1 or not 0.0 <= weight <= 1.0:
            raise ValueError(f"RerankScorer: top_n >= 1 and 0 <= weight <= 1 (got {top_n}, {weight})")
        self.first, self.second = as_scorer(first), as_scorer(second)
        self.top_n, self.weight = top_n, weight

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        base = np.asarray(self.first.score(batch, item_ids), dtype=np.float64)  # (B, C)
        n = min(self.top_n, base.shape[1])
        top = np.argpartition(-base, n - 1, axis=1)[:, :n]  # (B, n) columns of each row's n best cells
        top_base = np.take_along_axis(base, top, axis=1)  # (B, n)
        live = np.isfinite(top_base)
        sub = np.take_along_axis(np.broadcast_to(item_ids, base.shape), top, axis=1).astype(
            object
        )  # (B, n) item ids
        sub[~live] = None  # fewer than n rankable cells: the re-ranker skips the rest
        second = np.asarray(self.second.score(batch, sub), dtype=np.float64)  # (B, n)
        fused = _blend(zscore(np.where(live, second, -np.inf)), zscore(top_base), self.weight)  # (B, n)
        rest = base.copy()
        np.put_along_axis(rest, top, -np.inf, axis=1)
        rest_max = _row_extreme(rest, np.isfinite(rest), np.max)
        fused_min = _row_extreme(fused, live, np.min)
        out = base.copy()
        np.put_along_axis(out, top, np.where(live, fused - fused_min + rest_max + 1.0, -np.inf), axis=1)
        return out


def _blend(z_second: np.ndarray, z_first: np.ndarray, weight: float) -> np.ndarray:
    """weight * z_second + (1 - weight) * z_first; a cell the re-ranker could not score sinks below
    its row's scored cells (ordered by the first stage)."""
    fin = np.isfinite(z_first)
    zf = np.where(fin, z_first, 0.0)
    ok = np.isfinite(z_second)
    mixed = weight * np.where(ok, z_second, 0.0) + (1.0 - weight) * zf
    floor = _row_extreme(mixed, ok & fin, np.min)
    lo, hi = _row_extreme(zf, fin, np.min), _row_extreme(zf, fin, np.max)
    sunk = floor - 2.0 + (zf - lo) / (hi - lo + 1.0)  # in [floor - 2, floor - 1): below every scored cell
    return np.where(~fin, -np.inf, np.where(ok, mixed, sunk))


def _row_extreme(x: np.ndarray, mask: np.ndarray, fn: Callable[..., np.ndarray]) -> np.ndarray:
    """(B, 1) row min / max (``fn``) over the masked cells; 0 for a row with none."""
    fill = np.inf if fn is np.min else -np.inf
    out = fn(np.where(mask, x, fill), axis=1, keepdims=True)
    return np.where(np.isfinite(out), out, 0.0)


def fit_rerank_weight(
    first: Any,
    second: Any,
    top_n: int,
    objective: Callable[[object], float],
    grid: Sequence[float] = (1.0, 0.75, 0.5, 0.25, 0.0),
) -> tuple[float, float]:
    """The re-ranker's share (``weight``) that maximises ``objective(scorer)`` (a validation metric);
    both stages are scored once (cached). Ties keep the earlier grid value. Returns (weight, best)."""
    first, second = CachedScorer(first), CachedScorer(second)
    best: tuple[float, float] | None = None
    for w in grid:
        value = objective(RerankScorer(first, second, top_n, w))
        if best is None or value > best[1] + 1e-12:
            best = (w, value)
    if best is None:
        raise ValueError("fit_rerank_weight needs a non-empty grid")
    return best


class LearnedFusionScorer:
    """Logistic regression over per-member features (z-score, 1/rank) plus log history length.

    Fit with :meth:`fit` on a validation EvalSet that has candidates (the label is 1 for targets).
    """

    def __init__(self, members: Sequence[Any], C: float = 1.0):
        self.members, self.C = [as_scorer(m) for m in members], C
        self._model: Any = None  # a fitted sklearn LogisticRegression

    def _features(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        parts = _member_scores(self.members, batch, item_ids)
        feats = []
        for s in parts:
            z = zscore(s)
            floor = np.nanmin(np.where(np.isfinite(z), z, np.nan), axis=1, keepdims=True)
            feats += [np.where(np.isfinite(z), z, np.nan_to_num(floor, nan=0.0) - 1.0), 1.0 / row_ranks(s)]
        hist = np.log1p([len(h) for h in batch.histories])[:, None] * np.ones(parts[0].shape)
        feats.append(hist)
        return np.stack(feats, axis=-1)  # (B, C, F)

    def fit(self, eval_set: EvalSet, batch_size: int = 256) -> LearnedFusionScorer:
        from sklearn.linear_model import LogisticRegression  # lazy: scikit-learn is slow to import

        if eval_set.candidates is None:
            raise ValueError(
                "learned fusion is fit on a candidate EvalSet; sample negatives for validation first"
            )
        X, y = [], []
        for start in range(0, len(eval_set), batch_size):
            rows = np.arange(start, min(start + batch_size, len(eval_set)))
            items = eval_set.candidates[rows]
            batch = QueryBatch(
                [str(q) for q in eval_set.query_ids[rows]],
                [eval_set.histories[i] for i in rows],
                [eval_set.texts[i] for i in rows] if eval_set.texts is not None else None,
            )
            f = self._features(batch, items)  # (B, C, F)
            lab = np.array([[it in set(eval_set.targets[r]) for it in items[b]] for b, r in enumerate(rows)])
            ok = ~(items == None)  # noqa: E711 - element-wise on an object array
            X.append(f[ok])
            y.append(lab[ok])
        self._model = LogisticRegression(C=self.C, max_iter=1000, class_weight="balanced").fit(
            np.concatenate(X), np.concatenate(y)
        )
        return self

    @property
    def coefficients(self) -> list[float]:
        return [] if self._model is None else self._model.coef_.ravel().tolist()

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("LearnedFusionScorer.fit(validation EvalSet) must run before scoring")
        f = self._features(batch, item_ids)  # (B, C, F)
        s = self._model.decision_function(f.reshape(-1, f.shape[-1])).reshape(f.shape[:2])
        grid = np.broadcast_to(item_ids, s.shape)
        return np.where(grid == None, -np.inf, s)  # noqa: E711
