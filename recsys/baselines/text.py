"""Text baselines: BM25 over item text (``bm25s``) and a zero-shot bi-encoder (pretrained MiniLM,
no fine-tuning). For recommendation the query is built from the user's history (the titles of the
last ``history_len`` items); for search / matching it is the query text itself."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.evaluation.scorer import ItemIndex, QueryBatch, gather_scores
from recsys.evaluation.train_data import TrainData

if TYPE_CHECKING:
    from recsys.models.bi_encoder import BiEncoder


def history_text(history: list[str], texts: dict[str, str], history_len: int) -> str:
    """Titles of the most recent items, newest last."""
    return " ".join(texts.get(i, "") for i in history[-history_len:])


_TOKEN = re.compile(r"\w+")


def okapi_scores(
    query: str, docs: list[str], k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25
) -> np.ndarray:
    """BM25Okapi (``rank_bm25``'s formula: negative IDFs floored at epsilon x mean IDF) of ``query``
    against a small corpus ``docs`` whose statistics come from those docs alone."""
    toks = [_TOKEN.findall(d.lower()) for d in docs]
    if not toks:
        return np.zeros(0)
    dl = np.array([len(t) for t in toks], dtype=np.float64)
    avgdl = max(dl.mean(), 1e-9)
    df: dict[str, int] = {}
    for t in toks:
        for w in set(t):
            df[w] = df.get(w, 0) + 1
    n = len(docs)
    idf = {w: np.log((n - c + 0.5) / (c + 0.5)) for w, c in df.items()}
    floor = epsilon * (sum(idf.values()) / max(len(idf), 1))
    idf = {w: (v if v >= 0 else floor) for w, v in idf.items()}
    out = np.zeros(n)
    for w in _TOKEN.findall(query.lower()):
        if w not in idf:
            continue
        tf = np.array([t.count(w) for t in toks], dtype=np.float64)
        out += idf[w] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
    return out


class BM25Scorer:
    """BM25 over item text; k1, b as usual; text_fields: item columns to index.

    corpus: 'catalog' = one bm25s (Lucene) index over every item (IDF from the catalog);
    'candidates' = BM25Okapi over each query's own candidate list (IDF from those items only, the
    LLMRank zero-shot BM25 setting; only meaningful with candidate protocols).
    """

    def __init__(
        self,
        text_fields: list[str] | None = None,
        k1: float = 1.5,
        b: float = 0.75,
        history_len: int = 10,
        corpus: str = "catalog",
    ):
        if corpus not in ("catalog", "candidates"):
            raise ValueError(f"bm25 corpus must be 'catalog' or 'candidates', got {corpus!r}")
        self.text_fields = text_fields or ["title"]
        self.k1, self.b, self.history_len, self.corpus = k1, b, history_len, corpus

    def fit(self, data: TrainData) -> BM25Scorer:
        texts = data.item_texts(self.text_fields) if data.items is not None else {}
        return self.fit_texts(data.catalog, texts)

    def fit_texts(self, item_ids: Sequence[str] | np.ndarray, texts: dict[str, str]) -> BM25Scorer:
        import bm25s  # lazy: bm25s only for the BM25 baselines

        self._index = ItemIndex(item_ids)
        self._texts = texts
        corpus = [texts.get(i, "") or "" for i in self._index.item_ids]
        self._retriever = bm25s.BM25(k1=self.k1, b=self.b)
        self._retriever.index(
            bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False
        )
        return self

    def _queries(self, batch: QueryBatch) -> list[str]:
        if batch.texts is not None:
            return [t or "" for t in batch.texts]
        return [history_text(h, self._texts, self.history_len) for h in batch.histories]

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        import bm25s  # lazy: bm25s only for the BM25 baselines

        if self.corpus == "candidates" and not (item_ids.shape[0] == 1 and len(batch) > 1):
            queries = self._queries(batch)
            grid = np.broadcast_to(item_ids, (len(batch), item_ids.shape[1]))
            out = np.full(grid.shape, -np.inf)
            for b, row in enumerate(grid):
                ok = np.array([i is not None for i in row])
                out[b, ok] = okapi_scores(
                    queries[b], [self._texts.get(i, "") for i in row[ok]], self.k1, self.b
                )
            return out
        tokens = bm25s.tokenize(self._queries(batch), stopwords="en", show_progress=False, return_ids=False)
        table = np.stack(
            [self._retriever.get_scores(q) if q else np.zeros(len(self._index)) for q in tokens]
        ).astype(np.float64)  # (B, N)
        return gather_scores(table, self._index.lookup(item_ids), fill=-np.inf)


class ZeroShotScorer:
    """Cosine similarity of pretrained sentence embeddings (default the packaged MiniLM).

    query: 'mean_items' = user vector = mean of the last ``history_len`` items' embeddings;
    'text' = embed the concatenated history titles. Search queries always embed batch.texts.
    """

    def __init__(
        self,
        model: str = "all-MiniLM-L6-v2",
        text_fields: list[str] | None = None,
        history_len: int = 10,
        query: str = "mean_items",
        batch_size: int = 128,
        max_length: int = 64,
    ):
        if query not in ("mean_items", "text"):
            raise ValueError(f"zero-shot query must be 'mean_items' or 'text', got {query!r}")
        self.model_name, self.text_fields, self.history_len = model, text_fields or ["title"], history_len
        self.query, self.batch_size, self.max_length = query, batch_size, max_length
        self._encoder: BiEncoder | None = None

    def encoder(self) -> BiEncoder:
        if self._encoder is None:
            from recsys.models import BiEncoder  # lazy: torch + transformers

            self._encoder = BiEncoder.from_encoder(self.model_name, max_length=self.max_length)
        return self._encoder

    def fit(self, data: TrainData) -> ZeroShotScorer:
        return self.fit_texts(data.catalog, data.item_texts(self.text_fields))

    def fit_texts(self, item_ids: Sequence[str] | np.ndarray, texts: dict[str, str]) -> ZeroShotScorer:
        self._index = ItemIndex(item_ids)
        self._texts = texts
        self.item_vectors = self.encoder().encode(
            [texts.get(i, "") for i in self._index.item_ids], batch_size=self.batch_size, tower="item"
        )  # (N, D)
        return self

    def _query_vectors(self, batch: QueryBatch) -> np.ndarray:
        if batch.texts is not None:
            return self.encoder().encode(batch.texts, batch_size=self.batch_size, tower="query")
        if self.query == "text":
            return self.encoder().encode(
                [history_text(h, self._texts, self.history_len) for h in batch.histories],
                batch_size=self.batch_size,
                tower="query",
            )
        out = np.zeros((len(batch), self.item_vectors.shape[1]), dtype=np.float32)  # (B, D)
        for b, hist in enumerate(self._index.histories(batch.histories)):
            if len(hist):
                out[b] = self.item_vectors[hist[-self.history_len :]].mean(0)
        return out

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        table = self._query_vectors(batch) @ self.item_vectors.T  # (B, N)
        return gather_scores(table, self._index.lookup(item_ids), fill=-np.inf)

    def __getstate__(
        self,
    ) -> dict[str, Any]:  # ship vectors to Ray workers, not the torch model (re-loaded lazily)
        state = dict(self.__dict__)
        if self.query == "mean_items":
            state["_encoder"] = None
        return state
