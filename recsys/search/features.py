"""The learned ranker's features: ONE function, :func:`candidate_features`, used by training
(``recsys.search.ltr.collect``), by the ``search`` evaluate protocol and by Serve (both through
:meth:`recsys.search.stages.RetrieverCore.retrieve`), so the three agree bit for bit.

Per candidate (columns in :data:`FEATURES` order, float32):
BM25 score and rank (missing: 0 / ``MISSING_RANK``), dense cosine (every candidate) and dense rank, the
RRF fused score, query-word coverage of the title, number and unit coverage, brand match (the title's
leading brand word, or the ``brand`` column), title length in words and log popularity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

FEATURES = (
    "bm25_score",
    "bm25_rank",
    "dense_cosine",
    "dense_rank",
    "rrf",
    "word_coverage",
    "number_coverage",
    "unit_coverage",
    "brand_match",
    "title_words",
    "log_popularity",
)
MISSING_RANK = 1000.0
_TOKEN = re.compile(r"[a-z]+|\d+(?:[./-]\d+)*")
_NUMBER = re.compile(r"\d+(?:[./-]\d+)*")
_UNIT = re.compile(r"\b(in|ft|gal|lb|oz|sq|cu|mm|volt|watt|amp|v|w)\b")
STOP = frozenset("a an and the of for with in on to by or at from is are x".split())


@dataclass(frozen=True)
class CandidateSignals:
    """What retrieval knows about the candidates of one query (arrays aligned, length C)."""

    titles: list[str]
    infos: list[TitleInfo] | None  # parsed titles (None: parsed here)
    brands: list[str | None]  # the brand column, None where the catalog has none
    bm25_score: np.ndarray  # 0 = not retrieved by BM25
    bm25_rank: np.ndarray  # 0-based; MISSING_RANK = not retrieved
    dense_cosine: np.ndarray  # query . item (normalised embeddings); 0 when dense is off
    dense_rank: np.ndarray
    rrf: np.ndarray
    popularity: np.ndarray


def _words(text: str) -> set[str]:
    return {t for t in _TOKEN.findall(text.lower()) if t not in STOP}


@dataclass(frozen=True)
class TitleInfo:
    """What the features read from a title, parsed once per catalog row (at index load), not per request."""

    words: frozenset[str]
    numbers: frozenset[str]
    units: frozenset[str]
    lead: str  # the title's first token: the brand in titles that start with it


def title_info(title: str) -> TitleInfo:
    low = title.lower()
    return TitleInfo(
        frozenset(_words(low)),
        frozenset(_NUMBER.findall(low)),
        frozenset(_UNIT.findall(low)),
        next(iter(_TOKEN.findall(low)), ""),
    )


def candidate_features(query: str, s: CandidateSignals) -> np.ndarray:
    """float32 [C, len(FEATURES)] for one query's candidates (the query as searched, i.e. rewritten)."""
    q_words = _words(query)
    q_numbers = set(_NUMBER.findall(query.lower()))
    q_units = set(_UNIT.findall(query.lower()))
    out = np.zeros((len(s.titles), len(FEATURES)), dtype=np.float32)
    infos = s.infos if s.infos is not None else [title_info(t) for t in s.titles]
    for i, info in enumerate(infos):
        brand = (s.brands[i] or "").lower() or info.lead
        out[i, 5] = len(q_words & info.words) / len(q_words) if q_words else 0.0
        out[i, 6] = len(q_numbers & info.numbers) / len(q_numbers) if q_numbers else -1.0
        out[i, 7] = len(q_units & info.units) / len(q_units) if q_units else -1.0
        out[i, 8] = float(bool(brand) and len(brand) > 2 and brand in q_words)
        out[i, 9] = len(info.words)
    out[:, 0] = s.bm25_score
    out[:, 1] = s.bm25_rank
    out[:, 2] = s.dense_cosine
    out[:, 3] = s.dense_rank
    out[:, 4] = s.rrf
    out[:, 10] = np.log1p(np.maximum(s.popularity, 0.0))
    return out
