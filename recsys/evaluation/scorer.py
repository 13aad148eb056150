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
:class:`ItemIndex` maps string ids to a model's row indices fast (pandas hash index); it and
``gather_scores`` live in ``recsys.utils.items`` (the model kinds use them too) and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from recsys.utils.items import ItemIndex, gather_scores

__all__ = ["ItemIndex", "QueryBatch", "Scorer", "as_scorer", "gather_scores"]


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


def as_scorer(obj: Any) -> Scorer:
    """A Scorer, or a plain function wrapped as one; a clear error otherwise."""
    if isinstance(obj, Scorer):
        return obj
    if callable(obj):
        return _FnScorer(obj, getattr(obj, "__name__", "scorer"))
    raise TypeError(
        f"{type(obj).__name__} is not a scorer: give an object with score(batch, item_ids) -> (B, C) "
        "array, or a function fn(batch, item_ids) (see recsys.evaluation.scorer)"
    )
