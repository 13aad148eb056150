"""The one interface every ranker implements: baselines, trained models, ensembles.

A :class:`Scorer` gets a batch of queries (a user's time-ordered history and/or a query text) and a
matrix of item ids, and returns one score per cell. Higher = better. The evaluator decides which
items to score (sampled candidates, files shipped with a data set, or the whole catalog), so one
scorer works with every protocol:

    class MyScorer:
        def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
            # item_ids: (B, C) str, or (1, N) str = the same N items for every query (full ranking)
            # returns (B, C) / (B, N) float; -inf for an item the model cannot score
            ...

Plain callables ``fn(batch, item_ids) -> scores`` are accepted too (:func:`as_scorer`).
:class:`ItemIndex` maps string ids to a model's row indices fast (pandas hash index).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd


@dataclass
class QueryBatch:
    """A batch of queries.

    query_ids: (B,) the user id (recommendation) or query id (search / matching).
    histories: B time-ordered lists of item ids the user interacted with before the target
        (empty lists for pure text queries).
    texts: B query strings (search, product matching), or None.
    """

    query_ids: list[str]
    histories: list[list[str]]
    texts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.query_ids)


@runtime_checkable
class Scorer(Protocol):
    """Scores (query, item) cells. See the module docstring for shapes."""

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray: ...


class _FnScorer:
    def __init__(self, fn: Callable[[QueryBatch, np.ndarray], np.ndarray], name: str):
        self.fn, self.name = fn, name

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        return self.fn(batch, item_ids)


def as_scorer(obj) -> Scorer:
    """A Scorer, or a plain function wrapped as one; a clear error otherwise."""
    if isinstance(obj, Scorer):
        return obj
    if callable(obj):
        return _FnScorer(obj, getattr(obj, "__name__", "scorer"))
    raise TypeError(
        f"{type(obj).__name__} is not a scorer: give an object with score(batch, item_ids) -> (B, C) "
        "array, or a function fn(batch, item_ids) (see recsys.evaluation.scorer)"
    )


class ItemIndex:
    """Maps item id strings to row indices of a model's item table (-1 = unknown item)."""

    def __init__(self, item_ids: Sequence[str]):
        self.item_ids = np.asarray(item_ids, dtype=object)
        self._index = pd.Index(self.item_ids)
        if not self._index.is_unique:
            raise ValueError("ItemIndex: item ids must be unique; de-duplicate the items table first")
        self._cache: tuple[object, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.item_ids)

    def lookup(self, ids: np.ndarray | Sequence[str]) -> np.ndarray:
        """Same-shape int64 array of rows; the last full-catalog lookup is cached (full ranking)."""
        arr = np.asarray(ids, dtype=object)
        if self._cache is not None and self._cache[0] is ids:
            return self._cache[1]
        rows = self._index.get_indexer(arr.reshape(-1)).reshape(arr.shape).astype(np.int64)
        if arr.ndim == 2 and arr.shape[0] == 1:
            self._cache = (ids, rows)  # holds the array, so identity cannot be reused
        return rows

    def histories(self, histories: list[list[str]]) -> list[np.ndarray]:
        """Each history as known rows only (unknown items dropped)."""
        out = []
        for h in histories:
            r = self._index.get_indexer(np.asarray(h, dtype=object)) if len(h) else np.zeros(0, np.int64)
            out.append(r[r >= 0].astype(np.int64))
        return out


def gather_scores(table: np.ndarray, rows: np.ndarray, fill: float = -np.inf) -> np.ndarray:
    """Pick ``table[b, rows[b, c]]`` (or ``table[b, rows[0, c]]`` when rows is (1, N)); -1 -> fill.

    table: (B, n_items) scores over a model's whole item table. rows: (B, C) or (1, C) int.
    """
    safe = np.where(rows >= 0, rows, 0)
    if rows.shape[0] == 1 and table.shape[0] != 1:
        out = table[:, safe[0]]  # (B, C)
        return np.where(rows >= 0, out, fill)
    out = np.take_along_axis(table, safe, axis=1)
    return np.where(rows >= 0, out, fill)
