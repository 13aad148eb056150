"""Query autocomplete: complete a typed prefix to past queries and item titles, ranked by weight
(frequency, conversion, popularity), tolerant to typos in every token.

Matching: the last (partial) token must be a prefix of a phrase token and every earlier token must
equal one; a token with no match is replaced by the vocabulary tokens within a small edit distance
(Damerau-Levenshtein 1, or 2 for 6+ characters), compared against same-length token prefixes. Typo
matches rank below exact matches; phrases that start with the typed text rank first.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

_TOKEN = re.compile(r"\w+", re.UNICODE)
TYPO_PENALTY = 0.5  # weight multiplier of a completion that needed a corrected token
PREFIX_BONUS = 2.0  # weight multiplier of a phrase that starts with the typed text


def normalize(text: str) -> str:
    return " ".join(_TOKEN.findall(unicodedata.normalize("NFKC", text).lower()))


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance, stopping early once every cell exceeds ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


class Autocomplete:
    """Phrases sorted by weight (id 0 = heaviest) with a token -> phrase-ids inverted index."""

    def __init__(self, phrases: list[str], weights: np.ndarray, max_phrase_chars: int = 120):
        order = np.argsort(-np.asarray(weights, dtype=np.float64), kind="stable")
        self.phrases = [phrases[i][:max_phrase_chars] for i in order]
        self.weights = np.asarray(weights, dtype=np.float64)[order]
        self.norm = [normalize(p) for p in self.phrases]
        postings: dict[str, list[int]] = {}
        for pid, text in enumerate(self.norm):
            for tok in set(text.split()):
                postings.setdefault(tok, []).append(pid)
        self.vocab = sorted(postings)
        self.postings = {t: np.asarray(ids, dtype=np.int64) for t, ids in postings.items()}

    # --- building -------------------------------------------------------------------------------
    @classmethod
    def from_sources(
        cls,
        titles: list[str],
        title_popularity: np.ndarray,
        queries: list[str] | None = None,
        query_counts: np.ndarray | None = None,
        query_conversions: np.ndarray | None = None,
        title_weight: float = 1.0,
        conversion_weight: float = 2.0,
    ) -> Autocomplete:
        """Weights: titles ``title_weight * log1p(1 + popularity)``; past queries
        ``log1p(count) * (1 + conversion_weight * conversions / count)``; duplicates add up."""
        table: dict[str, tuple[str, float]] = {}

        def add(text: str, w: float) -> None:
            key = normalize(text)
            if not key:
                return
            shown, old = table.get(key, (text.strip(), 0.0))
            table[key] = (shown, old + w)

        for title, pop in zip(titles, np.asarray(title_popularity, dtype=np.float64)):
            add(title, title_weight * float(np.log1p(1.0 + pop)))
        if queries:
            counts = np.asarray(
                query_counts if query_counts is not None else np.ones(len(queries)), dtype=np.float64
            )
            conv = np.asarray(
                query_conversions if query_conversions is not None else np.zeros(len(queries)),
                dtype=np.float64,
            )
            for q, c, v in zip(queries, counts, conv):
                add(q, float(np.log1p(c) * (1.0 + conversion_weight * v / max(c, 1.0))))
        shown = [v[0] for v in table.values()]
        return cls(shown, np.array([v[1] for v in table.values()]))

    # --- lookup ---------------------------------------------------------------------------------
    def _prefix_tokens(self, prefix: str) -> list[str]:
        lo = bisect.bisect_left(self.vocab, prefix)
        hi = bisect.bisect_left(self.vocab, prefix + "\U0010ffff")
        return self.vocab[lo:hi]

    def _fuzzy_tokens(self, tok: str, partial: bool) -> list[str]:
        """Vocabulary tokens within the edit limit of ``tok`` (their same-length prefix if partial).
        Candidates share the first character (typos there are rare; keeps the scan small)."""
        limit = 2 if len(tok) >= 6 else 1
        if len(tok) < 3:
            return []
        out = []
        for cand in self._prefix_tokens(tok[0]):
            if partial:
                lengths = [n for n in (len(tok) - 1, len(tok), len(tok) + 1) if n <= len(cand)]
                best = min((edit_distance(tok, cand[:n], limit) for n in lengths), default=limit + 1)
            else:
                best = edit_distance(tok, cand, limit)
            if best <= limit:
                out.append(cand)
        return out

    def _ids_for(self, tokens: list[str]) -> np.ndarray:
        arrays = [self.postings[t] for t in tokens]
        return np.unique(np.concatenate(arrays)) if arrays else np.empty(0, dtype=np.int64)

    def suggest(self, prefix: str, k: int = 10) -> list[dict[str, Any]]:
        """Up to ``k`` completions ``{"text", "score", "corrected"}``, best first."""
        text = normalize(prefix)
        if not text:
            return []
        tokens = text.split()
        partial_last = prefix == prefix.rstrip()  # no trailing space: the last token may be unfinished
        ids: np.ndarray | None = None
        corrected = False
        for i, tok in enumerate(tokens):
            partial = i == len(tokens) - 1 and partial_last
            matches = self._prefix_tokens(tok) if partial else ([tok] if tok in self.postings else [])
            if not matches:
                matches = self._fuzzy_tokens(tok, partial)
                corrected = corrected or bool(matches)
            if not matches:
                return []
            found = self._ids_for(matches)
            ids = found if ids is None else np.intersect1d(ids, found, assume_unique=True)
            if ids.size == 0:
                return []
        assert ids is not None  # text is non-empty, so it has a token and the loop set ids
        scores = self.weights[ids] * (TYPO_PENALTY if corrected else 1.0)
        starts = np.fromiter((self.norm[i].startswith(text) for i in ids), dtype=bool, count=ids.size)
        scores = np.where(starts, scores * PREFIX_BONUS, scores)
        top = ids[np.argsort(-scores, kind="stable")[:k]]
        best = dict(zip(ids.tolist(), scores.tolist()))
        return [
            {"text": self.phrases[i], "score": round(float(best[i]), 6), "corrected": corrected}
            for i in top.tolist()
        ]

    # --- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        import pyarrow as pa  # lazy: pyarrow only to save/load the table
        import pyarrow.parquet as pq  # lazy: pyarrow only to save/load the table

        pq.write_table(pa.table({"phrase": self.phrases, "weight": self.weights}), str(path))

    @classmethod
    def load(cls, path: str | Path) -> Autocomplete:
        import pyarrow.parquet as pq  # lazy: pyarrow only to save/load the table

        t = pq.read_table(str(path))
        return cls(t.column("phrase").to_pylist(), t.column("weight").to_numpy())

    def __len__(self) -> int:
        return len(self.phrases)
