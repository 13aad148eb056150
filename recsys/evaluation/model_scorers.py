"""Scorers for trained recsys models (``recsys.models``): plug any saved model into an evaluator.

``scorer_for_model(model, item_texts=...)`` asks the model's kind (``recsys.kinds``, by the saved
``model_type``) for its scorer: the sequential model scores next items from the user's history; the
bi-encoder embeds query texts (or users' recent item titles) against item vectors; the
cross-encoder re-ranks (query text, item text) pairs (candidate protocols or small catalogs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys import kinds
from recsys.kinds.bi_encoder import BiEncoderScorer
from recsys.kinds.cross_encoder import CrossEncoderScorer
from recsys.kinds.sequential import SequentialModelScorer

__all__ = ["BiEncoderScorer", "CrossEncoderScorer", "SequentialModelScorer", "scorer_for_model"]


def scorer_for_model(
    model: Any,
    *,
    item_texts: dict[str, str] | None = None,
    catalog: np.ndarray | None = None,
    history_len: int = 10,
) -> Any:
    """The evaluation scorer of a loaded recsys model (see the module docstring)."""
    name = getattr(model, "model_type", type(model).__name__)
    if name not in kinds.names():
        raise ValueError(f"no evaluation adapter for model type {name!r} ({', '.join(kinds.names())})")
    return kinds.get(name).scorer(model, item_texts=item_texts, catalog=catalog, history_len=history_len)
