"""Logging policies over a scored candidate list and the propensities they log.

A policy turns scores ``[..., n]`` into a ranking (item indices, best first) and, for every shown
item, its *item-at-position propensity* ``P(the policy puts this item at this position | scores)``,
the quantity position-based IPS divides by (Li et al. 2018; Joachims et al. 2017):

- ``deterministic``: sort by score (propensity 1; the default, not usable for IPS of another ranking);
- ``shuffle_topk``: sort, then shuffle the top ``k`` uniformly (propensity ``1/k`` in the top k, 1 below):
  the randomised intervention that identifies the examination curve (Joachims et al. 2017, RandTop-k);
- ``plackett_luce``: sample without replacement with probabilities ``softmax(scores / temperature)``
  (Gumbel-max trick); the item-at-position marginals have no closed form and are estimated from
  ``n_samples`` further draws of the same distribution (relative error ~ ``sqrt((1-p)/(p n_samples))``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

PolicyName = Literal["deterministic", "shuffle_topk", "plackett_luce"]
POLICIES: tuple[str, ...] = ("deterministic", "shuffle_topk", "plackett_luce")


@dataclass(frozen=True)
class LoggingPolicy:
    """A logging policy and its options; ``policy_id`` is what the logs carry."""

    name: PolicyName = "deterministic"
    temperature: float = 1.0
    shuffle_k: int = 10
    n_samples: int = 2000

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise ValueError(f"policy {self.name!r} is unknown; use one of {POLICIES}")
        if self.temperature <= 0:
            raise ValueError(f"policy temperature must be > 0 (got {self.temperature})")
        if self.shuffle_k < 2:
            raise ValueError(f"policy shuffle_k must be >= 2 (got {self.shuffle_k})")
        if self.n_samples < 1:
            raise ValueError(f"policy n_samples must be >= 1 (got {self.n_samples})")

    @property
    def policy_id(self) -> str:
        if self.name == "plackett_luce":
            return f"plackett_luce@T={self.temperature:g}"
        if self.name == "shuffle_topk":
            return f"shuffle_top{self.shuffle_k}"
        return "deterministic"

    @property
    def stochastic(self) -> bool:
        return self.name != "deterministic"


def gumbel_rankings(scores: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Plackett-Luce samples: ``scores`` [..., n] -> rankings [..., n] (argsort of scores/T + Gumbel)."""
    g = rng.gumbel(size=scores.shape)
    return np.argsort(-(scores / temperature + g), axis=-1, kind="stable")


def pl_marginals(
    scores: np.ndarray, temperature: float, depth: int, n_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """Monte Carlo item-at-position marginals of Plackett-Luce: ``scores`` [n] or [L, n] (L lists) ->
    [n, depth] or [L, n, depth]."""
    lists = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    n_lists, n = lists.shape
    depth = min(depth, n)
    counts = np.zeros(n_lists * n * depth)
    chunk = max(1, 2_000_000 // (n_lists * n))
    for start in range(0, n_samples, chunk):  # bounded memory
        m = min(chunk, n_samples - start)
        r = gumbel_rankings(np.broadcast_to(lists, (m, n_lists, n)), temperature, rng)[..., :depth]
        flat = (np.arange(n_lists)[None, :, None] * n + r) * depth + np.arange(depth)[None, None, :]
        counts += np.bincount(flat.ravel(), minlength=len(counts))
    out = counts.reshape(n_lists, n, depth) / n_samples
    return out[0] if np.ndim(scores) == 1 else out


def rank(
    scores: np.ndarray, policy: LoggingPolicy, depth: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One list: ``scores`` [n] -> (shown item indices [depth], their item-at-position propensities [depth])."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) == 0:
        raise ValueError("rank: scores must be a non-empty 1-d array (one score per candidate)")
    depth = min(depth, len(scores))
    if policy.name == "deterministic":
        order = np.argsort(-scores, kind="stable")[:depth]
        return order, np.ones(depth)
    if policy.name == "shuffle_topk":
        order = np.argsort(-scores, kind="stable")
        k = min(policy.shuffle_k, len(scores))
        order[:k] = rng.permutation(order[:k])
        prop = np.where(np.arange(depth) < k, 1.0 / k, 1.0)
        return order[:depth], prop
    shown = gumbel_rankings(scores, policy.temperature, rng)[:depth]
    marg = pl_marginals(scores, policy.temperature, depth, policy.n_samples, rng)
    prop = marg[shown, np.arange(depth)]
    return shown, np.maximum(prop, 1.0 / policy.n_samples)  # the sampled ranking itself has p > 0


def rank_batch(
    scores: np.ndarray,
    policy: LoggingPolicy,
    depth: int,
    rng: np.random.Generator,
    marginals: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Many lists at once: ``scores`` [S, n] -> (shown [S, depth], propensities [S, depth]).

    ``marginals`` [S, n, depth] are the lists' Plackett-Luce item-at-position probabilities (needed for
    ``plackett_luce``; compute them once per distinct list with :func:`pl_marginals`).
    """
    s, n = scores.shape
    depth = min(depth, n)
    rows = np.arange(s)[:, None]
    if policy.name == "plackett_luce":
        if marginals is None:
            raise ValueError("rank_batch: plackett_luce needs the lists' marginals (pl_marginals)")
        shown = gumbel_rankings(scores, policy.temperature, rng)[:, :depth]
        prop = marginals[rows, shown, np.arange(depth)[None, :]]
        return shown, np.maximum(prop, 1.0 / policy.n_samples)
    order = np.argsort(-scores, axis=1, kind="stable")
    if policy.name == "shuffle_topk":
        k = min(policy.shuffle_k, n)
        perm = np.argsort(rng.random((s, k)), axis=1)
        order[:, :k] = order[rows, perm]
        prop = np.broadcast_to(np.where(np.arange(depth) < k, 1.0 / k, 1.0), (s, depth)).copy()
        return order[:, :depth], prop
    return order[:, :depth], np.ones((s, depth))
