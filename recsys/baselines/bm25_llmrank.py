"""LLMRank's published BM25 row, reproduced: ``kind: bm25`` with ``variant: llmrank``.

Not a search baseline to use (``kind: bm25`` is); it exists so that the published Games-6k BM25
number (N@10 34.61) can be checked and its gap to ours explained. LLMRank's code
(``llmrank/model/bm25.py`` in RUCAIBox/LLMRank) differs from textbook BM25 in two ways, both kept:

- **The query is a list of characters.** Each history title (a ``str``) is appended to the query
  list with ``+=``, which adds its characters one by one. Only single-character document tokens
  ("2", ":", "(", "X", ...) can then match, each once per occurrence in the history text.
- **Length normalisation uses the corpus size** (``b * N / avgdl``) instead of the document's length,
  the same constant for every item.

Most candidates score exactly 0 (no shared single-character token). LLMRank ranks the scores with
RecBole's ``topk`` over item indices, so ties fall in item-id order, which says nothing about the
target; this variant adds a per-(user, item) hash jitter of at most 1e-9 (far below any score step)
so that ties break the same arbitrary-but-fair way instead of hitting our pessimistic rule.

Documents: every catalog title (plus RecBole's ``[PAD]`` row), NLTK Treebank word tokens, case kept,
NLTK's English stop words removed; IDF ``ln(N - df + 0.5) - ln(df + 0.5)``, negatives floored at
0.25 x the mean IDF; k1 1.5, b 0.75; the last ``history_len`` (50) history titles form the query.
"""

from __future__ import annotations

import zlib
from collections import Counter

import numpy as np

from recsys.evaluation.scorer import ItemIndex, QueryBatch
from recsys.evaluation.train_data import TrainData

# NLTK's English stop-word list (nltk_data corpora/stopwords/english, 179 words), as LLMRank removes them
NLTK_ENGLISH_STOPWORDS = frozenset(
    """
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he him his himself
she she's her hers herself it it's its itself they them their theirs themselves what which who whom this that that'll
these those am is are was were be been being have has had having do does did doing a an the and but if or because as
until while of at by for with about against between into through during before after above below to from up down in
out on off over under again further then once here there when where why how all any both each few more most other
some such no nor not only own same so than too very s t can will just don don't should should've now d ll m o re ve y
ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn
mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
""".split()
)


class LLMRankBM25Scorer:
    """k1, b, epsilon: LLMRank's constants; history_len: titles in the query (LLMRank's max_his_len)."""

    def __init__(
        self,
        text_fields: list[str] | None = None,
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
        history_len: int = 50,
    ):
        self.text_fields = text_fields or ["title"]
        self.k1, self.b, self.epsilon, self.history_len = k1, b, epsilon, history_len

    def fit(self, data: TrainData) -> LLMRankBM25Scorer:
        from nltk.tokenize import NLTKWordTokenizer  # lazy: nltk only for this variant

        tokenize = NLTKWordTokenizer().tokenize
        texts = data.item_texts(self.text_fields)
        self._index = ItemIndex(data.catalog)
        self._texts = texts
        docs = [
            [w for w in tokenize(texts.get(i, "") or "") if w not in NLTK_ENGLISH_STOPWORDS]
            for i in self._index.item_ids
        ]
        docs.append(["[", "PAD", "]"])  # RecBole's padding item is a document too
        n = len(docs)
        df = Counter(w for d in docs for w in set(d))
        idf = {w: np.log(n - c + 0.5) - np.log(c + 0.5) for w, c in df.items()}
        floor = self.epsilon * float(np.mean(list(idf.values())))
        avgdl = sum(len(d) for d in docs) / n
        norm = self.k1 * (
            1 - self.b + self.b * n / avgdl
        )  # LLMRank: corpus size where the doc length belongs
        # per item: {single-character token: its term weight}; only those can match a character query
        self._weights = []
        for d in docs[:-1]:
            tf = Counter(w for w in d if len(w) == 1)
            self._weights.append(
                {
                    w: (idf[w] if idf[w] >= 0 else floor) * f * (self.k1 + 1) / (f + norm)
                    for w, f in tf.items()
                }
            )
        return self

    def _item_scores(self, history: list[str], rows: np.ndarray) -> np.ndarray:
        query = Counter("".join(self._texts.get(i, "") or "" for i in history[-self.history_len :]))
        return np.array(
            [sum(query[w] * v for w, v in self._weights[r].items()) if r >= 0 else 0.0 for r in rows]
        )

    def score(self, batch: QueryBatch, item_ids: np.ndarray) -> np.ndarray:
        if batch.texts is not None:
            raise ValueError(
                "bm25 variant 'llmrank' reproduces a recommendation baseline; it takes histories, not query text"
            )
        rows = self._index.lookup(item_ids)  # (B, C) or (1, N)
        grid = np.broadcast_to(rows, (len(batch), rows.shape[1]))
        out = np.stack([self._item_scores(h, grid[b]) for b, h in enumerate(batch.histories)])  # (B, C)
        ids = np.broadcast_to(item_ids, grid.shape)
        jitter = (
            np.array(
                [[zlib.crc32(f"{q}\x1f{i}".encode()) for i in row] for q, row in zip(batch.query_ids, ids)],
                dtype=np.float64,
            )
            / 2**32
            * 1e-9
        )  # (B, C) ties in an arbitrary, target-blind order
        return np.where(grid >= 0, out + jitter, -np.inf)


__all__ = ["LLMRankBM25Scorer", "NLTK_ENGLISH_STOPWORDS"]
