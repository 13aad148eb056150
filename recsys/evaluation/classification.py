"""Pair classification (product matching): precision / recall / F1 at a threshold chosen on the
validation split, and threshold-free PR-AUC (average precision) and ROC-AUC.

Expected input: per pair a score (higher = more likely a match) and a 0/1 label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Threshold maximising F1 on (validation) scores; returns (threshold, F1). Predict score >= t."""
    from sklearn.metrics import precision_recall_curve  # lazy: scikit-learn is slow to import (~1 s)

    p, r, t = precision_recall_curve(labels, scores)
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)[:-1]
    if len(t) == 0:
        return float("inf"), 0.0
    i = int(np.argmax(f1))
    return float(t[i]), float(f1[i])


def classification_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    from sklearn.metrics import (  # lazy: scikit-learn is slow to import (~1 s)
        average_precision_score,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y = np.asarray(labels).astype(int)
    pred = (np.asarray(scores) >= threshold).astype(int)
    p, r, f, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    both = len(np.unique(y)) == 2
    return {
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
        "threshold": float(threshold),
        "pr_auc": float(average_precision_score(y, scores)) if both else float("nan"),
        "roc_auc": float(roc_auc_score(y, scores)) if both else float("nan"),
        "n_pairs": int(len(y)),
        "n_positive": int(y.sum()),
    }


class PairClassificationEvaluator:
    """``PairClassificationEvaluator(valid_pairs, test_pairs)(pair_scorer) -> dict``.

    pairs: (lefts, rights, labels); pair_scorer(lefts, rights) -> (N,) scores (e.g.
    ``CrossEncoder.score`` wrapped as ``lambda l, r: model.score(list(zip(l, r)))``).
    The threshold maximises F1 on validation and is applied once to test.
    """

    def __init__(
        self,
        valid: tuple[Sequence[str], Sequence[str], Sequence[int] | np.ndarray],
        test: tuple[Sequence[str], Sequence[str], Sequence[int] | np.ndarray],
        primary_metric: str = "f1",
    ):
        self.valid, self.test, self.primary_metric = valid, test, primary_metric

    def evaluate(self, pair_scorer: Callable[[Sequence[str], Sequence[str]], np.ndarray]) -> dict[str, Any]:
        vs = np.asarray(pair_scorer(self.valid[0], self.valid[1]), dtype=np.float64)
        t, vf1 = best_threshold(vs, np.asarray(self.valid[2]))
        ts = np.asarray(pair_scorer(self.test[0], self.test[1]), dtype=np.float64)
        out = classification_metrics(ts, np.asarray(self.test[2]), t)
        out.update({"valid_f1": vf1, "primary_metric": self.primary_metric})
        out["_test_scores"], out["_valid_scores"] = ts, vs
        return out

    def __call__(self, pair_scorer: Callable[[Sequence[str], Sequence[str]], np.ndarray]) -> dict[str, Any]:
        out = self.evaluate(pair_scorer)
        out.pop("_test_scores"), out.pop("_valid_scores")
        return out


def per_pair_correct(scores: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """1/0 per test pair (for paired significance of two matchers)."""
    return cast(
        np.ndarray,
        ((np.asarray(scores) >= threshold).astype(int) == np.asarray(labels).astype(int)).astype(float),
    )


def f1_bootstrap_ci(
    scores: np.ndarray, labels: np.ndarray, threshold: float, n_resamples: int, seed: int
) -> list[float]:
    """95% percentile bootstrap CI of test F1 at a fixed threshold (pairs resampled with replacement)."""
    pred = scores >= threshold
    y = labels.astype(bool)
    rng = np.random.default_rng(seed)
    f1s = []
    for _ in range(n_resamples):
        i = rng.integers(0, len(y), len(y))
        tp = (pred[i] & y[i]).sum()
        denom = pred[i].sum() + y[i].sum()
        f1s.append(2 * tp / denom if denom else 0.0)
    return [float(np.quantile(f1s, 0.025)), float(np.quantile(f1s, 0.975))]
