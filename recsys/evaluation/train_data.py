"""What scorers fit on: the train part of a protocol's split, plus item text when the data set has it
(built by ``recsys.evaluation.prepare``, consumed by ``recsys.baselines``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.evaluation.scorer import ItemIndex


@dataclass
class TrainData:
    """sequences: user_id, items (time-ordered list of item ids); optional ``timestamps`` column
    (list of timestamps aligned with items). items: item_id + text columns (title, ...), or None.
    catalog: every rankable item id (a baseline scores items it never saw in training as 0).
    pairs: labelled train pairs (left, right, label) of a matching / retrieval set, or None."""

    sequences: pd.DataFrame
    catalog: np.ndarray
    items: pd.DataFrame | None = None
    pairs: pd.DataFrame | None = None

    def item_index(self) -> ItemIndex:
        return ItemIndex(self.catalog)

    def user_index(self) -> ItemIndex:
        return ItemIndex(self.sequences["user_id"].astype(str).to_numpy(dtype=object))

    def matrix(self, weights: np.ndarray | None = None) -> sp.csr_matrix:
        """(users x catalog) binary interaction matrix (repeats collapse to 1), rows in ``sequences`` order."""
        index = self.item_index()
        rows, cols = [], []
        for u, items in enumerate(self.sequences["items"]):
            c = index.lookup(np.asarray(list(items), dtype=object)) if len(items) else np.zeros(0, np.int64)
            c = np.unique(c[c >= 0])
            rows.append(np.full(len(c), u))
            cols.append(c)
        r, c = (np.concatenate(rows), np.concatenate(cols)) if rows else (np.zeros(0), np.zeros(0))
        m = sp.csr_matrix(
            (np.ones(len(r), np.float32), (r, c)), shape=(len(self.sequences), len(self.catalog))
        )
        return m

    def item_texts(self, fields: list[str]) -> dict[str, str]:
        """item id -> 'field1 field2 ...' text (empty for items without text)."""
        if self.items is None:
            raise ValueError(
                "this baseline needs item text: give the evaluate job data.items (an items table with "
                "item_id and a text column such as title)"
            )
        missing = [f for f in fields if f not in self.items.columns]
        if missing:
            raise ValueError(
                f"items table has no column(s) {missing} (it has {list(self.items.columns)}); set the "
                "baseline's text_fields to existing columns"
            )
        df = self.items
        text = df[fields[0]].fillna("").astype(str)
        for f in fields[1:]:
            text = text + " " + df[f].fillna("").astype(str)
        return dict(zip(df["item_id"].astype(str), text.str.strip()))
