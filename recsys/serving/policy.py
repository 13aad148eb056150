"""An arm's serving policy: the order of the first page sampled by a logging policy
(:mod:`recsys.causal.policies`), every served item carrying the ``policy_id`` and its item-at-position
``propensity`` that /feedback logs back (what ``recsys run propensity`` / ``ope`` divide by).

- ``deterministic`` (default): the ranked page as is, propensity 1;
- ``shuffle_topk``: the top ``top_k`` ranked items (``top_k`` may exceed the page's ``k``: items ranked
  below the page can be shuffled in) in a uniformly random order, propensity ``1/top_k`` there, 1 below;
- ``plackett_luce``: the page sampled without replacement from ``softmax(score / temperature)`` over the
  top ``top_k`` ranked items (``score`` as the response returns it), propensity the Monte Carlo
  item-at-position marginal (``n_samples`` draws).

The randomness is a per-request generator seeded by ``(seed, request_id)``: a logged request can be
replayed exactly. Only page 0 is sampled (later pages are the deterministic ranking, logged as such):
a page past the first of a stochastic arm may repeat an item the sampled first page showed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from recsys.causal.policies import LoggingPolicy, rank

DETERMINISTIC_ID = "deterministic"


@dataclass(frozen=True)
class ServingPolicy:
    """One arm's policy (frozen: crosses into the Ingress replica)."""

    kind: Literal["deterministic", "shuffle_topk", "plackett_luce"] = "deterministic"
    temperature: float = 1.0
    top_k: int = 10
    n_samples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        self.logging_policy()  # validates kind, temperature, n_samples
        if self.top_k < 2:
            raise ValueError(f"policy.top_k must be >= 2 (got {self.top_k})")

    def logging_policy(self) -> LoggingPolicy:
        return LoggingPolicy(self.kind, self.temperature, self.top_k, self.n_samples)

    @property
    def policy_id(self) -> str:
        return self.logging_policy().policy_id

    def fetch_k(self, k: int, page: int = 0) -> int:
        """How many ranked items to ask the pipeline for: the sampling pool on a stochastic first page."""
        return max(k, self.top_k) if self.kind != "deterministic" and page == 0 else k

    def rng(self, request_id: str) -> np.random.Generator:
        digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
        return np.random.default_rng([self.seed, int.from_bytes(digest, "big")])

    def serve(
        self, items: list[dict[str, Any]], k: int, request_id: str, page: int = 0
    ) -> list[dict[str, Any]]:
        """``items`` (ranked best first, each with ``score``; at least :meth:`fetch_k` of them when the catalog
        has them) -> the served page of ``min(k, len(items))`` distinct items, each with ``position``
        (``page * k + i``), ``policy_id`` and ``propensity``."""
        if self.kind == "deterministic" or page > 0:
            return [
                dict(it, position=page * k + i, policy_id=DETERMINISTIC_ID, propensity=1.0)
                for i, it in enumerate(items[:k])
            ]
        pool = items[: self.fetch_k(k)]
        if not pool:
            return []
        scores = np.array([float(it["score"]) for it in pool])
        shown, prop = rank(scores, self.logging_policy(), k, self.rng(request_id))
        pid = self.policy_id
        return [
            dict(pool[j], position=i, policy_id=pid, propensity=float(p))
            for i, (j, p) in enumerate(zip(shown.tolist(), prop.tolist()))
        ]
