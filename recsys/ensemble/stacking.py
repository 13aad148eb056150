"""Learned fusion of pair matchers (product matching): logistic regression over the members' scores,
fit on the validation pairs.

Expected input: ``(N, M)`` member scores on validation pairs with their 0/1 labels, then ``(N', M)`` on test.
Scores that are all probabilities (within [0, 1]) enter as log-odds, others as they are; every column is
standardised. The F1 threshold is chosen on out-of-fold validation scores (each pair scored by a
model that did not see it), so the threshold is not fit to the very pairs the weights were fit on; the
weights used on test are then refit on all validation pairs.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from recsys.evaluation.classification import best_threshold


def _log_odds(scores: np.ndarray) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    out = x.copy()
    prob = (x.min(0) >= 0) & (x.max(0) <= 1)  # per column
    p = np.clip(x[:, prob], 1e-6, 1 - 1e-6)
    out[:, prob] = np.log(p / (1 - p))
    return out


class StackedMatcher:
    """``StackedMatcher(folds, C, seed).fit(valid_scores, labels)``; then ``score(test_scores)``,
    ``threshold`` (max F1 over the out-of-fold validation scores), ``valid_f1`` and ``coefficients``."""

    def __init__(self, folds: int = 5, C: float = 1.0, seed: int = 0):
        if folds < 2:
            raise ValueError(f"stacking needs folds >= 2, got {folds}")
        self.folds, self.C, self.seed = folds, C, seed
        self.threshold = self.valid_f1 = float("nan")
        self._clf: Any = None  # a fitted sklearn Pipeline

    def _new(self) -> Any:  # an unfitted sklearn Pipeline
        from sklearn.linear_model import LogisticRegression  # lazy: scikit-learn is slow to import
        from sklearn.pipeline import make_pipeline  # lazy: scikit-learn is slow to import
        from sklearn.preprocessing import StandardScaler  # lazy: scikit-learn is slow to import

        return make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))

    def fit(self, scores: np.ndarray, labels: np.ndarray) -> StackedMatcher:
        from sklearn.model_selection import StratifiedKFold  # lazy: scikit-learn is slow to import

        x, y = _log_odds(np.atleast_2d(scores)), np.asarray(labels).astype(int)
        n_pos = int(y.sum())
        if min(n_pos, len(y) - n_pos) < self.folds:
            raise ValueError(
                f"stacking needs >= {self.folds} pairs of each label on validation (has {n_pos} "
                f"positive of {len(y)}); lower the ensemble's folds or use more validation pairs"
            )
        oof = np.zeros(len(y))
        for fit_rows, held in StratifiedKFold(self.folds, shuffle=True, random_state=self.seed).split(x, y):
            oof[held] = self._new().fit(x[fit_rows], y[fit_rows]).decision_function(x[held])
        self.threshold, self.valid_f1 = best_threshold(oof, y)
        self._clf = self._new().fit(x, y)
        return self

    @property
    def coefficients(self) -> list[float]:
        """Weights per member, on standardised log-odds (comparable across members)."""
        return [float(c) for c in self._clf[-1].coef_.ravel()]

    def score(self, scores: np.ndarray) -> np.ndarray:
        if self._clf is None:
            raise RuntimeError("StackedMatcher.score before fit")
        return cast(np.ndarray, self._clf.decision_function(_log_odds(np.atleast_2d(scores))))
