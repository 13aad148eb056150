"""Post-processing of ranked lists: de-duplication, filtering already-bought items, diversity
re-ranking (maximal marginal relevance) and pagination."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def dedupe(items: Iterable[str], key: dict[str, str] | None = None) -> list[str]:
    """Keep the first occurrence of each item (or of each ``key[item]``, e.g. a product group)."""
    seen, out = set(), []
    for i in items:
        k = key.get(i, i) if key else i
        if k not in seen:
            seen.add(k)
            out.append(i)
    return out


def filter_seen(items: Iterable[str], seen: Iterable[str]) -> list[str]:
    """Drop items the user already bought / interacted with."""
    s = set(seen)
    return [i for i in items if i not in s]


def mmr(
    items: Sequence[str], scores: Sequence[float], vectors: np.ndarray, *, k: int = 10, lam: float = 0.7
) -> list[str]:
    """Maximal marginal relevance: greedily pick argmax lam * rel - (1 - lam) * max cos-sim to picked.

    items/scores: candidates and relevance (N,); vectors: (N, D) embeddings aligned with items.
    Relevance is min-max scaled so ``lam`` trades off comparable quantities.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError("mmr: lam must be in [0, 1] (1 = pure relevance)")
    s = np.asarray(scores, dtype=np.float64)
    rel = (s - s.min()) / (np.ptp(s) or 1.0)
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # (N, D)
    picked: list[int] = []
    max_sim = np.full(len(items), -np.inf)
    for _ in range(min(k, len(items))):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        value = lam * rel - (1 - lam) * penalty
        value[picked] = -np.inf
        j = int(np.argmax(value))
        picked.append(j)
        max_sim = np.maximum(max_sim, v @ v[j])
    return [items[j] for j in picked]


def paginate(items: Sequence[str], page: int, page_size: int) -> list[str]:
    """Items of 1-based ``page``."""
    if page < 1 or page_size < 1:
        raise ValueError("paginate: page and page_size must be >= 1")
    return list(items[(page - 1) * page_size : page * page_size])
