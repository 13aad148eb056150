"""Popularity baselines: global interaction counts, or recency-weighted counts ("recent")."""

from __future__ import annotations

import numpy as np

from recsys.evaluation.scorer import QueryBatch, gather_scores
from recsys.evaluation.train_data import TrainData


class PopularityScorer:
    """Scores every item by its (optionally time-decayed) count in the training interactions.

    half_life: None = global counts. Otherwise each interaction weighs 0.5 ** (age / half_life),
    where age is measured in days before the newest training event when ``sequences`` has a
    ``timestamps`` column, else in positions from the end of the user's sequence.
    """

    def __init__(self, half_life: float | None = None):
        self.half_life = half_life
        self.counts: dict[str, float] = {}

    def fit(self, data: TrainData) -> PopularityScorer:
        index = data.item_index()
        counts = np.zeros(len(index))
        has_ts = "timestamps" in data.sequences.columns and self.half_life is not None
        newest = None
        if has_ts:
            newest = max((max(t) for t in data.sequences["timestamps"] if len(t)), default=None)
        for r, items in enumerate(data.sequences["items"]):
            if not len(items):
                continue
            rows = index.lookup(np.asarray(list(items), dtype=object))
            w = np.ones(len(rows))
            if self.half_life is not None:
                if has_ts:
                    ts = list(data.sequences["timestamps"].iloc[r])
                    age = np.array([(newest - t).total_seconds() / 86400.0 for t in ts])
                else:
                    age = np.arange(len(rows))[::-1].astype(float)
                w = 0.5 ** (age / self.half_life)
            np.add.at(counts, rows[rows >= 0], w[rows >= 0])
        self._index, self._table = index, counts[None, :]  # (1, N)
        self.counts = dict(zip(index.item_ids.tolist(), counts.tolist()))
        return self

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        rows = self._index.lookup(item_ids)
        out = gather_scores(np.broadcast_to(self._table, (len(batch), self._table.shape[1])), rows, fill=0.0)
        return out  # items never seen in training score 0
