"""Scorers for trained recsys models (``recsys.models``): plug any saved model into an evaluator.

``scorer_for_model(model, item_texts=...)`` picks the adapter by model class:

- SequentialRecommender: next-item scores from the user's history (its own item vocabulary).
- BiEncoder: cosine of query / item embeddings; the query is the query text (search, matching)
  or the user's recent item titles (recommendation). Item vectors are computed once.
- CrossEncoder: a re-ranker; scores (query text, item text) pairs, so use it with candidate
  protocols (sampled / file) or small catalogs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys.evaluation.scorer import ItemIndex, QueryBatch, gather_scores


class SequentialModelScorer:
    def __init__(self, model: Any, batch_size: int = 256):
        self.model, self.batch_size = model, batch_size
        self._index = ItemIndex(model.item_ids)

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        if item_ids.shape[0] == 1 and len(batch) != 1:  # full ranking: one pass over the vocabulary
            table = np.asarray(self.model.score(batch.histories, batch_size=self.batch_size), dtype=np.float64)  # (B, V)
            return gather_scores(table, self._index.lookup(item_ids), fill=-np.inf)
        cands = [[str(i) if i is not None else "\x00" for i in row] for row in item_ids]
        return np.asarray(self.model.score(batch.histories, candidates=cands, batch_size=self.batch_size), dtype=np.float64)


def _query_texts(batch: QueryBatch, texts: dict[str, str], history_len: int) -> list[str]:
    if batch.texts is not None:
        return [t or "" for t in batch.texts]
    return [" ".join(texts.get(i, "") for i in h[-history_len:]) for h in batch.histories]


class BiEncoderScorer:
    def __init__(self, model: Any, item_texts: dict[str, str], catalog: np.ndarray, *, history_len: int = 10,
                 batch_size: int = 128):
        self.model, self.texts, self.history_len, self.batch_size = model, item_texts, history_len, batch_size
        self._index = ItemIndex(catalog)
        self.item_vectors = model.encode([item_texts.get(i, "") for i in self._index.item_ids],
                                         batch_size=batch_size, tower="item")  # (N, D)

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        q = self.model.encode(_query_texts(batch, self.texts, self.history_len), batch_size=self.batch_size)  # (B, D)
        return gather_scores(q @ self.item_vectors.T, self._index.lookup(item_ids), fill=-np.inf)


class CrossEncoderScorer:
    def __init__(self, model: Any, item_texts: dict[str, str], *, history_len: int = 10, batch_size: int = 64,
                 max_cells: int = 200_000):
        self.model, self.texts, self.history_len = model, item_texts, history_len
        self.batch_size, self.max_cells = batch_size, max_cells

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        grid = np.broadcast_to(item_ids, (len(batch), item_ids.shape[1]))
        if grid.size > self.max_cells:
            raise ValueError(
                f"a cross-encoder would score {grid.size} (query, item) pairs in one batch; use it on a "
                "candidate protocol (protocol.candidates: sampled or file) or as a re-ranker in an ensemble"
            )
        queries = _query_texts(batch, self.texts, self.history_len)
        pairs = [(queries[b], self.texts.get(i, "")) for b in range(len(batch)) for i in grid[b] if i is not None]
        flat = self.model.score(pairs, batch_size=self.batch_size) if pairs else np.zeros(0)
        out = np.full(grid.shape, -np.inf)
        out[~(grid == None)] = flat  # noqa: E711 - element-wise None test on an object array
        return out


def scorer_for_model(model: Any, *, item_texts: dict[str, str] | None = None, catalog: np.ndarray | None = None,
                     history_len: int = 10) -> Any:
    """The adapter for a loaded recsys model (see the module docstring)."""
    kind = getattr(model, "model_type", type(model).__name__)
    if kind == "sequential":
        return SequentialModelScorer(model)
    if item_texts is None:
        raise ValueError(f"a {kind} model scores text: give the evaluate job data.items (item_id + title)")
    if kind == "bi_encoder":
        return BiEncoderScorer(model, item_texts, catalog if catalog is not None else np.array(list(item_texts), dtype=object),
                               history_len=history_len)
    if kind == "cross_encoder":
        return CrossEncoderScorer(model, item_texts, history_len=history_len)
    raise ValueError(f"no evaluation adapter for model type {kind!r} (sequential, bi_encoder, cross_encoder)")
