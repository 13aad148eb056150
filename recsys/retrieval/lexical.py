"""BM25 over item text with bm25s; filters are a weight mask applied before truncation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class BM25Index:
    """Row-aligned with the catalog: row ``i`` of the index is item row ``i``."""

    def __init__(self, retriever: Any, n_docs: int):  # a bm25s.BM25
        self.retriever = retriever
        self.n_docs = n_docs

    @classmethod
    def build(cls, texts: list[str], k1: float = 1.5, b: float = 0.75) -> BM25Index:
        import bm25s  # lazy: bm25s only for BM25 indexes

        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        return cls(retriever, len(texts))

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows [<=k], scores [<=k]) of the best BM25 matches with score > 0, within ``allowed`` rows."""
        import bm25s  # lazy: bm25s only for BM25 indexes

        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)
        tokens = [[t for t in tokens[0] if t in self.retriever.vocab_dict]]
        if not tokens[0]:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        mask = None
        if allowed is not None:
            mask = np.zeros(self.n_docs, dtype=np.float32)
            mask[allowed] = 1.0
        k = max(1, min(k, self.n_docs))
        rows, scores = self.retriever.retrieve(
            tokens, k=k, show_progress=False, weight_mask=mask, n_threads=0
        )
        rows, scores = rows[0], scores[0]  # [k], [k]
        keep = scores > 0
        rows, scores = rows[keep].astype(np.int64), scores[keep].astype(np.float32)
        order = np.lexsort(
            (rows, -np.round(scores, 5))
        )  # equal scores by row: bm25s's top-k leaves their order arbitrary
        return rows[order], scores[order]

    def save(self, path: str | Path) -> None:
        self.retriever.save(str(path), show_progress=False)

    @classmethod
    def load(cls, path: str | Path, n_docs: int) -> BM25Index:
        import bm25s  # lazy: bm25s only for BM25 indexes

        return cls(bm25s.BM25.load(str(path), show_progress=False), n_docs)
