"""Graded relevance from behaviour, for tables without human labels.

A (query/user, item) pair's label is the strongest event between them: impression/view < click <
cart/fav < buy. ``relevance_labels(event_types)`` maps event names to gains; ``scale=True`` divides
by the maximum gain so labels lie in [0, 1] (for BCE); unknown events raise a clear error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

DEFAULT_GAINS: dict[str, float] = {
    "impression": 0.0,
    "view": 1.0,
    "search": 1.0,
    "click": 2.0,
    "fav": 3.0,
    "cart": 3.0,
    "buy": 4.0,
    "return": 0.0,
    "rate": 2.0,
}


def relevance_labels(
    event_types: Iterable[str], gains: Mapping[str, float] | None = None, scale: bool = False
) -> np.ndarray:
    """Event names [N] -> float32 gains [N] (divided by the largest gain when ``scale``)."""
    table = dict(DEFAULT_GAINS if gains is None else gains)
    out = []
    for ev in event_types:
        if ev not in table:
            raise ValueError(
                f"event_type {ev!r} has no relevance gain; known: {sorted(table)}. Add it to "
                "data.relevance_gains in the train config"
            )
        out.append(table[ev])
    arr = np.asarray(out, dtype=np.float32)
    top = max(table.values()) or 1.0
    return arr / top if scale else arr
