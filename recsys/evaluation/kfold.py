"""k-fold cross-validation over users (strong generalisation): fold f's users are held out
entirely; models fit on every other user's full sequence and rank fold f's last items from their
histories. For small data and for model selection without touching the test split."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from recsys.evaluation.protocols import EvalSet


def user_folds(user_ids: Iterable[Any], k: int, seed: int = 0) -> np.ndarray:
    """Fold number (0..k-1) of each user, fixed by (seed, user id) — stable under reordering."""
    if k < 2:
        raise ValueError("k-fold needs k >= 2")
    ids = [str(u) for u in user_ids]
    h = np.array(
        [
            int.from_bytes(hashlib.blake2b(f"{seed}|{u}".encode(), digest_size=8).digest(), "little")
            for u in ids
        ],
        dtype=np.uint64,
    )
    order = np.argsort(h, kind="stable")
    folds = np.empty(len(ids), dtype=np.int64)
    folds[order] = np.arange(len(ids)) % k  # balanced sizes
    return folds


def cross_validate(
    sequences: pd.DataFrame,
    k: int,
    fit: Callable[[pd.DataFrame], object],
    evaluate: Callable[[object, EvalSet], dict[str, float]],
    make_eval_set: Callable[[pd.DataFrame], EvalSet],
    *,
    seed: int = 0,
) -> dict[str, dict[str, float | list[float]]]:
    """Per metric: mean, std and per-fold values.

    fit(train_sequences) -> scorer; make_eval_set(held_out_sequences) -> EvalSet (e.g. the
    leave-one-out test queries of those users, with sampled candidates); evaluate(scorer, es) -> dict.
    """
    folds = user_folds(sequences["user_id"], k, seed)
    per_fold: list[dict[str, float]] = []
    for f in range(k):
        held = sequences[folds == f]
        scorer = fit(sequences[folds != f].reset_index(drop=True))
        out = evaluate(scorer, make_eval_set(held.reset_index(drop=True)))
        per_fold.append({m: float(v) for m, v in out.items() if isinstance(v, float)})
    metrics = per_fold[0].keys() if per_fold else []
    return {
        m: {
            "mean": float(np.mean([p[m] for p in per_fold])),
            "std": float(np.std([p[m] for p in per_fold], ddof=1)),
            "folds": [p[m] for p in per_fold],
        }
        for m in metrics
    }
