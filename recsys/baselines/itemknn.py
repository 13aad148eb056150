"""Item-KNN: item-item cosine similarity of co-occurrence (``implicit``'s CosineRecommender),
a user scores an item by the summed similarity to the items in their history."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.evaluation.scorer import QueryBatch, gather_scores
from recsys.evaluation.train_data import TrainData


class ItemKNNScorer:
    """neighbors: similar items kept per item; history_len: most recent history items used
    (0 = all); recency_decay: weight of the i-th most recent item = decay ** i."""

    def __init__(self, neighbors: int = 100, history_len: int = 0, recency_decay: float = 1.0):
        self.neighbors, self.history_len, self.recency_decay = neighbors, history_len, recency_decay

    def fit(self, data: TrainData) -> ItemKNNScorer:
        from implicit.nearest_neighbours import CosineRecommender  # lazy: implicit loads its native extension

        self._index = data.item_index()
        model = CosineRecommender(K=self.neighbors, num_threads=1)
        model.fit(data.matrix(), show_progress=False)
        self._sim = sp.csr_matrix(model.similarity, dtype=np.float32)  # (N, N)
        return self

    def _history_matrix(self, histories: list[list[str]]) -> sp.csr_matrix:
        rows, cols, vals = [], [], []
        for b, hist in enumerate(self._index.histories(histories)):
            h = hist[-self.history_len :] if self.history_len else hist
            w = self.recency_decay ** np.arange(len(h))[::-1]
            rows += [b] * len(h)
            cols += h.tolist()
            vals += w.tolist()
        return sp.csr_matrix((vals, (rows, cols)), shape=(len(histories), len(self._index)), dtype=np.float32)

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        table = (self._history_matrix(batch.histories) @ self._sim).toarray()  # (B, N)
        return gather_scores(table, self._index.lookup(item_ids), fill=0.0)
