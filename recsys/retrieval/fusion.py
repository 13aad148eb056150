"""Weighted reciprocal rank fusion (Cormack et al., 2009): the one RRF of recsys.

``score(d) = sum_m w_m / (k + rank_m(d))`` with 1-based ranks. Both the served hybrid retrieval
(:func:`reciprocal_rank_fusion`, over ranked id lists) and the offline ensemble
(``recsys.ensemble.RRFScorer``, over score matrices) compute it with :func:`rrf_scores`.

Tie rule (one rule, both callers):

1. *Within a member*, tied scores share their average rank (``scipy.stats.rankdata(method="average")``),
   so a rank never depends on where an item sits in the candidate list. A ranked id list has no
   ties: its position is its rank.
2. *Unranked*: an item a member did not rank contributes nothing (rank ``inf``). A score matrix's
   ``-inf`` cell is a rank the caller chooses (the ensemble ranks it last, ``C + 1``).
3. *Fused ties*: :func:`reciprocal_rank_fusion` orders equal fused scores by first appearance,
   reading the members' lists in the order given (every id of list 0, then the new ids of list 1,
   ...). Score matrices are left to the evaluator, which breaks ties pessimistically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """(B, C) 1-based rank of each cell within its row (best = 1); tied scores share their average rank."""
    from scipy.stats import rankdata  # lazy: scipy.stats costs ~0.5 s; only rank averaging needs it

    return cast(np.ndarray, rankdata(-np.asarray(scores, dtype=np.float64), method="average", axis=1))


def rrf_scores(
    ranks: Sequence[np.ndarray], weights: Sequence[float] | np.ndarray | None = None, k: float = 60.0
) -> np.ndarray:
    """``sum_m w_m / (k + ranks[m])`` element-wise; a rank of ``inf`` (unranked) contributes 0.

    Summed member by member from 0, in the order given (the float result is reproducible).
    """
    weights = list(weights) if weights is not None else [1.0] * len(ranks)
    if len(weights) != len(ranks):
        raise ValueError(f"got {len(weights)} weights for {len(ranks)} rankings; give one weight per ranking")
    out = np.zeros(np.shape(ranks[0]) if len(ranks) else (), dtype=np.float64)
    for r, w in zip(ranks, weights):
        r = np.asarray(r, dtype=np.float64)
        out = out + np.where(np.isinf(r), 0.0, w / (k + np.where(np.isinf(r), 0.0, r)))
    return out


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], weights: Sequence[float] | None = None, k: float = 60.0
) -> list[tuple[str, float]]:
    """Fuse ranked id lists. Returns ``(id, score)`` best first; equal scores keep the order of first
    appearance (rule 3 of the module docstring)."""
    ids = list(dict.fromkeys(doc for ranking in rankings for doc in ranking))  # first-appearance order
    col = {doc: i for i, doc in enumerate(ids)}
    ranks = []
    for ranking in rankings:
        r = np.full(len(ids), np.inf)
        r[[col[doc] for doc in ranking]] = np.arange(1, len(ranking) + 1)
        ranks.append(r)
    scores = rrf_scores(ranks, weights, k) if rankings else np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    return [(ids[i], float(scores[i])) for i in order]
