"""Query understanding: what the retriever searches for when a shopper types a query.

- **Units and numbers** (:func:`normalize_units`): sizes are rewritten to the catalog's convention
  (``1/2 in.``, ``8 ft.``, ``5 gal.``), so ``0.5 inch``, ``1/2"`` and ``1/2 in`` all become ``1/2 in.``;
  decimals with a common fraction become that fraction, ``1 1/2`` becomes ``1-1/2``.
- **Spelling** (:class:`SpellCorrector`): SymSpell over the catalog's own vocabulary (word counts of
  the titles); a word the catalog contains is never changed, nor numbers, nor words shorter than
  ``min_length``.
- **Synonyms** (:class:`QueryRewriter` ``synonyms``): one-way expansions mined from data (judged train
  pairs: ``recsys.search.synonyms``), appended to the query, never replacing what was typed.

:class:`QueryRewriter` runs them in that order and reports what it changed; the retriever builds one
per index version from that version's titles (settings: :class:`~recsys.search.settings.QuerySettings`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from recsys.search.settings import QuerySettings

_WORD = re.compile(r"[a-z]+")
_NUMBER = r"(?:\d+(?:[ -]\d+/\d+)?(?:/\d+)?|\d*\.\d+)"
# unit spellings -> the catalog's form (Home Depot titles: 41,937 "N in.", 8,080 "N ft.", "N gal.", ...)
UNITS: tuple[tuple[str, str], ...] = (
    (r"(?:sq\.?\s*(?:ft|feet|foot)\.?|square\s+(?:feet|foot|ft\.?))", "sq. ft."),
    (r"(?:cu\.?\s*(?:ft|feet|foot)\.?|cubic\s+(?:feet|foot|ft\.?))", "cu. ft."),
    (r"(?:inches|inch|in\.?|\"|''|”)", "in."),
    (r"(?:feet|foot|ft\.?|')", "ft."),
    (r"(?:gallons?|gal\.?)", "gal."),
    (r"(?:pounds?|lbs?\.?)", "lb."),
    (r"(?:ounces?|oz\.?)", "oz."),
)
_UNIT_RE = [
    (re.compile(rf"(?<![\w.])({_NUMBER})\s*-?\s*{pat}(?=$|[\s,;)x*/-])", re.IGNORECASE), canon)
    for pat, canon in UNITS
]
_FRACTIONS = {Fraction(n, d) for d in (2, 4, 8, 16) for n in range(1, d)}


def _number(text: str) -> str:
    """``0.5`` -> ``1/2``, ``1.25`` -> ``1-1/4``, ``1 1/2`` -> ``1-1/2``; anything else unchanged."""
    text = re.sub(r"^(\d+) (\d+/\d+)$", r"\1-\2", text)
    if re.fullmatch(r"\d*\.\d+", text):
        value = Fraction(text).limit_denominator(16)
        whole, frac = divmod(value, 1)
        if frac in _FRACTIONS and abs(float(value) - float(text)) < 1e-9:
            return f"{whole}-{frac}" if whole else str(frac)
    return text


def normalize_units(query: str) -> str:
    """Sizes in the catalog's convention (``<number> <unit>.``); text without a size is unchanged."""
    out = query
    for pattern, canon in _UNIT_RE:
        out = pattern.sub(_unit_replacer(canon), out)
    return " ".join(out.split())


def _unit_replacer(canon: str) -> Callable[[re.Match[str]], str]:
    def replace(m: re.Match[str]) -> str:
        return f"{_number(m.group(1))} {canon}"

    return replace


def vocabulary(texts: Iterable[str]) -> Counter[str]:
    """Lower-case alphabetic words of ``texts`` with their counts (the corrector's dictionary)."""
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(_WORD.findall(t.lower()))
    return counts


class SpellCorrector:
    """SymSpell over a word-count dictionary; corrects only words the dictionary lacks."""

    def __init__(self, counts: Mapping[str, int], max_edit_distance: int = 2, min_length: int = 4):
        from symspellpy import SymSpell  # lazy: only arms with spelling correction need it

        self.max_edit_distance, self.min_length = max_edit_distance, min_length
        self.words = set(counts)
        self.sym = SymSpell(max_dictionary_edit_distance=max_edit_distance, prefix_length=7)
        for word, n in counts.items():
            self.sym.create_dictionary_entry(word, int(n))

    def correct_word(self, word: str) -> str:
        """The dictionary's closest, most frequent word (edit distance 1 below 7 letters, else up to
        ``max_edit_distance``); the word itself when it is known, short, not alphabetic or has no match."""
        w = word.lower()
        if w in self.words or len(w) < self.min_length or not w.isalpha():
            return word
        from symspellpy import Verbosity  # lazy: see __init__

        dist = min(self.max_edit_distance, 1 if len(w) < 7 else 2)
        hits = self.sym.lookup(w, Verbosity.TOP, max_edit_distance=dist)
        return hits[0].term if hits else word

    def correct(self, query: str) -> str:
        return re.sub(r"[A-Za-z]+", lambda m: self.correct_word(m.group(0)), query)


@dataclass(frozen=True)
class QueryRewrite:
    """What the retriever searched for: ``query`` (the rewritten text) and each change made."""

    query: str
    changes: tuple[str, ...]  # e.g. ("spelling: toliet -> toilet", "units: 1/2 inch -> 1/2 in.")

    @property
    def rewritten(self) -> bool:
        return bool(self.changes)


class QueryRewriter:
    """units -> spelling -> synonyms, each switched by :class:`QuerySettings`."""

    def __init__(
        self,
        titles: Iterable[str],
        settings: QuerySettings,
        synonyms: Mapping[str, tuple[str, ...]] | None = None,
    ):
        self.settings = settings
        self.speller = (
            SpellCorrector(vocabulary(titles), settings.max_edit_distance, settings.min_word_length)
            if settings.spelling
            else None
        )
        self.synonyms = dict(synonyms or {}) if settings.synonyms else {}

    def rewrite(self, query: str) -> QueryRewrite:
        q, changes = " ".join(query.split()), []
        if self.settings.units:
            u = normalize_units(q)
            if u != q:
                changes.append(f"units: {q} -> {u}")
                q = u
        if self.speller is not None:
            s = self.speller.correct(q)
            if s != q:
                changes.append(f"spelling: {q} -> {s}")
                q = s
        if self.synonyms:
            words = set(_WORD.findall(q.lower()))
            extra = [e for w in sorted(words) for e in self.synonyms.get(w, ()) if e not in words]
            if extra:
                extra = list(dict.fromkeys(extra))
                changes.append(f"synonyms: + {' '.join(extra)}")
                q = f"{q} {' '.join(extra)}"
        return QueryRewrite(q, tuple(changes))
