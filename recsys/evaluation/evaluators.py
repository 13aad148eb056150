"""Evaluators: ``RankingEvaluator(eval_set, ...)(scorer) -> {"ndcg@10": ..., "primary_metric": "ndcg@10"}``.

The same evaluator serves the ``evaluate`` job, validation during training and tuning trials::

    from recsys.evaluation import RankingEvaluator, leave_one_out, sample_negatives
    split = leave_one_out(sequences)                       # canonical sequences table
    ev = RankingEvaluator(sample_negatives(split.valid, 100, seed=0),
                          metrics=["ndcg@10", "hit_rate@10"], primary_metric="ndcg@10")
    metrics = ev(my_scorer)                                # any recsys.evaluation.Scorer
    metrics[metrics["primary_metric"]]                     # the number to select on

``evaluate(scorer)`` returns a :class:`RankingResult` with per-query values (for bootstrap CIs,
paired tests and slicing by segment) and each query's top-k items (for beyond-accuracy metrics).

Scoring runs in query batches; for full ranking a batch never holds more than ``block_size``
scores (batch = block_size // catalog size queries). With ``num_workers > 1`` and Ray initialised,
query shards are scored in parallel Ray tasks (the scorer is shipped once via the object store).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from recsys.evaluation import metrics as M
from recsys.evaluation.beyond import catalog_coverage
from recsys.evaluation.protocols import EvalSet
from recsys.evaluation.scorer import QueryBatch, Scorer, as_scorer
from recsys.evaluation.stats import bootstrap_ci


@dataclass
class RankingResult:
    """Outcome of one scorer on one EvalSet."""

    eval_set: str
    protocol: str
    metrics: list[str]
    primary_metric: str
    per_query: pd.DataFrame  # query_id + one column per metric (+ segment columns)
    topk: np.ndarray | None = None  # (Q, K) object: each query's top-K item ids
    extra: dict[str, float] = field(default_factory=dict)  # corpus-level metrics (coverage)

    def means(self) -> dict[str, float]:
        return {
            m: float(np.nanmean(self.per_query[m])) if len(self.per_query) else float("nan")
            for m in self.metrics
        }

    def to_dict(self, *, ci: bool = False, n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {**self.means(), **self.extra}
        out["primary_metric"] = self.primary_metric
        out["n_queries"] = int(len(self.per_query))
        if ci:
            out["ci95"] = {
                m: list(bootstrap_ci(self.per_query[m].to_numpy(), n_resamples=n_resamples, seed=seed))
                for m in self.metrics
                if m in self.per_query
            }
        return out


def _target_columns(items: np.ndarray, es: EvalSet, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, T) column of each query's targets in ``items`` (B, C) or (1, N) and their gains."""
    n_t = max((len(es.targets[i]) for i in rows), default=1) or 1
    cols = np.full((len(rows), n_t), -1, dtype=np.int64)
    gains = np.zeros((len(rows), n_t))
    shared = items.shape[0] == 1 and len(rows) != 1
    index = pd.Index(items[0]) if shared else None
    for b, q in enumerate(rows):
        tgt = es.targets[q]
        if not tgt:
            continue
        g = es.gains[q] if es.gains is not None else [1.0] * len(tgt)
        if shared:
            assert index is not None  # built above when shared
            c = index.get_indexer(np.asarray(tgt, dtype=object))
        else:
            row_index = pd.Index(items[b if items.shape[0] > 1 else 0])
            c = (
                row_index.get_indexer(np.asarray(tgt, dtype=object))
                if row_index.is_unique
                else np.array(
                    [int(np.flatnonzero(items[b] == t)[0]) if (items[b] == t).any() else -1 for t in tgt]
                )
            )
        cols[b, : len(tgt)] = c
        gains[b, : len(tgt)] = g
    return cols, gains


def _exclude_mask(es: EvalSet, rows: np.ndarray, catalog_index: pd.Index, n_items: int) -> np.ndarray:
    """(B, N) bool: items removed from the ranking of each query (its seen items, not its targets)."""
    mask = np.zeros((len(rows), n_items), dtype=bool)
    if es.exclude is None:
        return mask
    for b, q in enumerate(rows):
        ex = set(es.exclude[q]) - set(es.targets[q])
        if ex:
            c = catalog_index.get_indexer(list(ex))
            mask[b, c[c >= 0]] = True
    return mask


def _topk_items(scores: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """(B, k) object: the k best items per row (None where fewer than k are rankable)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (B, k) unsorted
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
    best = np.take_along_axis(part, order, 1)  # (B, k)
    src = items if items.shape[0] == scores.shape[0] else np.broadcast_to(items, scores.shape)
    out = np.take_along_axis(src, best, 1).astype(object)
    out[~np.isfinite(np.take_along_axis(scores, best, 1))] = None
    return out


def score_shard(
    scorer: Scorer, es: EvalSet, *, batch_size: int, block_size: int, ties: M.Ties, keep_topk: int
) -> tuple[M.TargetRanks, np.ndarray | None]:
    """Score every query of ``es`` in batches; return the targets' ranks and the top-k items."""
    full = es.candidates is None
    catalog_items = es.catalog[None, :] if full else None  # (1, N), one object per shard: scorers cache on it
    catalog_index = pd.Index(es.catalog) if full else None
    bs = max(1, min(batch_size, block_size // max(len(es.catalog), 1))) if full else batch_size
    parts, tops = [], []
    for start in range(0, len(es), bs):
        rows = np.arange(start, min(start + bs, len(es)))
        batch = QueryBatch(
            query_ids=[str(x) for x in es.query_ids[rows]],
            histories=[es.histories[i] for i in rows],
            texts=[es.texts[i] for i in rows] if es.texts is not None else None,
        )
        items = (
            catalog_items if catalog_items is not None else cast(np.ndarray, es.candidates)[rows]
        )  # None iff full
        scores = np.asarray(scorer.score(batch, items), dtype=np.float64)
        expected = (len(rows), items.shape[1])
        if scores.shape != expected:
            raise ValueError(
                f"{type(scorer).__name__}.score returned shape {scores.shape}, expected {expected} "
                "(one score per query and item; item_ids (1, N) means every query ranks the same N items)"
            )
        if np.isnan(scores).any():
            raise ValueError(
                f"{type(scorer).__name__}.score returned NaN scores; return -inf for items it cannot score"
            )
        scores = scores.copy()
        if full:
            scores[_exclude_mask(es, rows, catalog_index, len(es.catalog))] = -np.inf
        else:
            scores[pd.isna(items)] = -np.inf  # padding of ragged candidate lists
        cols, gains = _target_columns(items, es, rows)
        parts.append(M.ranks_from_scores(scores, cols, gains, ties=ties))
        if keep_topk:
            tops.append(_topk_items(scores, items, keep_topk))
    top = np.concatenate(tops) if tops else None
    return M.TargetRanks.concat(parts), top


class RankingEvaluator:
    """Ranks an EvalSet's candidates (or its whole catalog) with a scorer and computes metrics.

    eval_set: the queries (see recsys.evaluation.protocols).
    metrics: names like ``ndcg@10``, ``hit_rate@10``, ``recall@20``, ``mrr``, ``map@10``, ``auc``.
    primary_metric: the one to select models on (default: the first metric).
    batch_size: queries per scorer call (sampled protocols).
    block_size: max scores held at once in full ranking (queries x catalog items).
    ties: 'pessimistic' (default, a tie ranks the relevant item last) or 'optimistic'.
    num_workers: parallel Ray tasks (needs ray.init(); 1 = score in this process).
    keep_topk: keep each query's top-k items (for beyond-accuracy metrics and reports); 0 = off.
    """

    def __init__(
        self,
        eval_set: EvalSet,
        metrics: list[str] | tuple[str, ...] = ("ndcg@10", "hit_rate@10", "mrr"),
        primary_metric: str | None = None,
        *,
        batch_size: int = 512,
        block_size: int = 2**23,
        ties: str = "pessimistic",
        num_workers: int = 1,
        keep_topk: int = 0,
        cpus_per_worker: float = 1.0,
    ):
        if not metrics:
            raise ValueError("RankingEvaluator: give at least one metric, e.g. ['ndcg@10']")
        self.metrics = [M.metric_key(m) for m in metrics]
        self.primary_metric = M.metric_key(primary_metric) if primary_metric else self.metrics[0]
        if self.primary_metric not in self.metrics:
            self.metrics.append(self.primary_metric)
        if ties not in ("pessimistic", "optimistic"):
            raise ValueError(f"ties must be 'pessimistic' or 'optimistic', got {ties!r}")
        if batch_size < 1 or block_size < 1 or num_workers < 1:
            raise ValueError("batch_size, block_size and num_workers must be >= 1")
        keep = [i for i, t in enumerate(eval_set.targets) if len(t) > 0]
        self.n_skipped = len(eval_set) - len(keep)  # queries without a target have no defined metric
        self.eval_set = eval_set if self.n_skipped == 0 else eval_set.subset(keep)
        self.batch_size, self.block_size, self.ties = batch_size, block_size, ties
        self.num_workers, self.keep_topk, self.cpus_per_worker = num_workers, keep_topk, cpus_per_worker

    def __call__(self, scorer: Any) -> dict[str, Any]:
        """Mean of every metric plus ``primary_metric`` (its name) and ``n_queries``."""
        return self.evaluate(scorer).to_dict()

    def _shards(self) -> list[np.ndarray]:
        n = len(self.eval_set)
        return [s for s in np.array_split(np.arange(n), min(n, self.num_workers * 2)) if len(s)]

    def _score(self, scorer: Scorer) -> tuple[M.TargetRanks, np.ndarray | None]:
        kw: dict[str, Any] = dict(
            batch_size=self.batch_size, block_size=self.block_size, ties=self.ties, keep_topk=self.keep_topk
        )
        if self.num_workers > 1 and len(self.eval_set) > 1:
            import ray  # lazy: Ray only when scoring in parallel tasks

            if ray.is_initialized():
                remote = ray.remote(num_cpus=self.cpus_per_worker)(score_shard)
                ref = ray.put(scorer)
                futures = [remote.remote(ref, self.eval_set.subset(s), **kw) for s in self._shards()]
                outs = ray.get(futures)
                tops = [o[1] for o in outs]
                return M.TargetRanks.concat([o[0] for o in outs]), (
                    np.concatenate(tops) if tops[0] is not None else None
                )
        return score_shard(scorer, self.eval_set, **kw)

    def evaluate(self, scorer: Any) -> RankingResult:
        scorer = as_scorer(scorer)
        tr, top = self._score(scorer)
        es = self.eval_set
        per = pd.DataFrame({"query_id": es.query_ids.astype(str)})
        for name, values in M.compute(tr, self.metrics).items():
            per[name] = values
        per["n_candidates"] = tr.n_candidates
        for seg, values in es.segments.items():
            per[seg] = values
        extra = {}
        if top is not None:
            extra[f"coverage@{top.shape[1]}"] = catalog_coverage(top, len(es.catalog))
        return RankingResult(
            eval_set=es.name,
            protocol=es.protocol,
            metrics=self.metrics,
            primary_metric=self.primary_metric,
            per_query=per,
            topk=top,
            extra=extra,
        )
