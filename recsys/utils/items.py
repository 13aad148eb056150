"""Item id strings -> row indices of a model's item table, and picking scores by those rows.

Used by every scorer (``recsys.evaluation``, ``recsys.baselines``, the model kinds' scorers).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ItemIndex:
    """Maps item id strings to row indices of a model's item table (-1 = unknown item)."""

    def __init__(self, item_ids: Sequence[str] | np.ndarray):
        import pandas as pd  # lazy: pandas costs ~0.5 s; utils stays numpy-only

        self.item_ids = np.asarray(item_ids, dtype=object)
        self._index = pd.Index(self.item_ids)
        if not self._index.is_unique:
            raise ValueError("ItemIndex: item ids must be unique; de-duplicate the items table first")
        self._cache: tuple[object, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.item_ids)

    def lookup(self, ids: np.ndarray | Sequence[str]) -> np.ndarray:
        """Same-shape int64 array of rows; the last full-catalog lookup is cached (full ranking)."""
        arr = np.asarray(ids, dtype=object)
        if self._cache is not None and self._cache[0] is ids:
            return self._cache[1]
        rows: np.ndarray = self._index.get_indexer(arr.reshape(-1)).reshape(arr.shape).astype(np.int64)
        if arr.ndim == 2 and arr.shape[0] == 1:
            self._cache = (ids, rows)  # holds the array, so identity cannot be reused
        return rows

    def histories(self, histories: list[list[str]]) -> list[np.ndarray]:
        """Each history as known rows only (unknown items dropped)."""
        out = []
        for h in histories:
            r = self._index.get_indexer(np.asarray(h, dtype=object)) if len(h) else np.zeros(0, np.int64)
            out.append(r[r >= 0].astype(np.int64))
        return out


def gather_scores(table: np.ndarray, rows: np.ndarray, fill: float = -np.inf) -> np.ndarray:
    """Pick ``table[b, rows[b, c]]`` (or ``table[b, rows[0, c]]`` when rows is (1, N)); -1 -> fill.

    table: (B, n_items) scores over a model's whole item table. rows: (B, C) or (1, C) int.
    """
    safe = np.where(rows >= 0, rows, 0)
    if rows.shape[0] == 1 and table.shape[0] != 1:
        out = table[:, safe[0]]  # (B, C)
        return np.where(rows >= 0, out, fill)
    out = np.take_along_axis(table, safe, axis=1)
    return np.where(rows >= 0, out, fill)
