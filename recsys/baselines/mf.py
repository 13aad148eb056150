"""Matrix factorisation baselines from ``implicit``: ALS (weighted implicit feedback) and BPR.

Users seen in training use their learned factors; a user the model has not seen (or k-fold test
users) is folded in from their history: ALS solves its least-squares step exactly
(``recalculate_user``), BPR uses the mean of the history items' factors.
"""

from __future__ import annotations

from typing import Literal, cast

import numpy as np
import scipy.sparse as sp

from recsys.evaluation.scorer import ItemIndex, QueryBatch, gather_scores
from recsys.evaluation.train_data import TrainData


class FactorScorer:
    """Score = user factors . item factors (``_user_f`` (U, F), ``_item_f`` (N, F), set by ``fit``); a user
    not seen in training is folded in from their history (default: the mean of its items' factors)."""

    _items: ItemIndex
    _users: ItemIndex
    _user_f: np.ndarray
    _item_f: np.ndarray

    def _fold_in(self, hist: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, self._item_f[hist].mean(0))

    def _user_vectors(self, batch: QueryBatch) -> np.ndarray:
        rows = self._users.lookup(np.asarray(batch.query_ids, dtype=object))
        out = np.zeros((len(batch), self._item_f.shape[1]), dtype=np.float32)  # (B, F)
        for b, (r, hist) in enumerate(zip(rows, self._items.histories(batch.histories))):
            if r >= 0:
                out[b] = self._user_f[r]
            elif len(hist):
                out[b] = self._fold_in(hist)
        return out

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        table = self._user_vectors(batch) @ self._item_f.T  # (B, N)
        return gather_scores(table, self._items.lookup(item_ids), fill=-np.inf)


class MFScorer(FactorScorer):
    """algorithm: 'als' or 'bpr'; factors, iterations, regularization, learning_rate (BPR),
    alpha (ALS confidence scale); seed fixes the initialisation."""

    def __init__(
        self,
        algorithm: Literal["als", "bpr"] = "bpr",
        *,
        factors: int = 64,
        iterations: int = 100,
        regularization: float = 0.01,
        learning_rate: float = 0.05,
        alpha: float = 1.0,
        seed: int = 0,
        num_threads: int = 0,
    ):
        if algorithm not in ("als", "bpr"):
            raise ValueError(f"algorithm must be 'als' or 'bpr', got {algorithm!r}")
        self.algorithm, self.factors, self.iterations = algorithm, factors, iterations
        self.regularization, self.learning_rate, self.alpha, self.seed = (
            regularization,
            learning_rate,
            alpha,
            seed,
        )
        self.num_threads = num_threads

    def fit(self, data: TrainData) -> MFScorer:
        from implicit.cpu.als import AlternatingLeastSquares  # lazy: implicit loads its native extension
        from implicit.cpu.bpr import BayesianPersonalizedRanking  # lazy: implicit loads its native extension

        self._items, self._users = data.item_index(), data.user_index()
        m = data.matrix()
        if self.algorithm == "als":
            self._model = AlternatingLeastSquares(
                factors=self.factors,
                iterations=self.iterations,
                regularization=self.regularization,
                alpha=self.alpha,
                random_state=self.seed,
                num_threads=self.num_threads,
            )
        else:
            self._model = BayesianPersonalizedRanking(
                factors=self.factors,
                iterations=self.iterations,
                regularization=self.regularization,
                learning_rate=self.learning_rate,
                random_state=self.seed,
                num_threads=self.num_threads,
            )
        from threadpoolctl import threadpool_limits  # lazy: only around implicit's fit

        with threadpool_limits(1, "blas"):  # implicit's own threads do the work; BLAS threads only contend
            self._model.fit(m, show_progress=False)
        self._item_f = np.asarray(self._model.item_factors)  # (N, F) (BPR: F = factors + 1, bias column)
        self._user_f = np.asarray(self._model.user_factors)  # (U, F)
        return self

    def _fold_in(self, hist: np.ndarray) -> np.ndarray:
        if self.algorithm != "als":
            return super()._fold_in(hist)
        user_items = sp.csr_matrix(
            (np.ones(len(hist)), (np.zeros(len(hist)), hist)), shape=(1, len(self._items))
        )
        return np.asarray(self._model.recalculate_user(0, user_items)).reshape(-1)
