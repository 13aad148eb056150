"""Product matching from string-similarity features: the classic entity-matching baseline (Magellan-style)
plus product-code features, a gradient-boosted classifier fit on the train pairs.

Expected input: pairs of offer texts, either canonical (``name: x; description: y; price: 9.99``, the
product-matching preset) or plain strings (one attribute), with 0/1 labels for ``fit``.

Product codes ("KDL-40V4100", "kdl40v4100", "DAV-IS50 / B") decide most offer pairs in electronics
catalogs, and a subword encoder sees the hyphenated and the glued spelling as different tokens; the
features compare codes after removing separators, so a code match is one feature, whatever its spelling.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

_ATTR = re.compile(r"(?:^|; )([A-Za-z_]\w{0,30}): ")
_TOKEN = re.compile(r"[a-z0-9]+(?:[-/.][a-z0-9]+)*")
_SEP = re.compile(r"[-/.]")
_DIGIT, _ALPHA = re.compile(r"\d"), re.compile(r"[a-z]")

FEATURE_NAMES = (
    "code_match_name",  # a code of one side's name appears among the other side's codes
    "code_jaccard",  # Jaccard of all codes (name + other attributes)
    "code_conflict",  # both names carry codes and the two sides share none
    "token_jaccard",  # word Jaccard over all attributes
    "name_token_jaccard",  # word Jaccard of the names
    "name_token_overlap",  # shared name words / the shorter name's words
    "name_number_jaccard",  # Jaccard of the pure numbers in the names (sizes, wattages)
    "char_tfidf_cosine",  # char 2-4-gram TF-IDF cosine of all attributes
    "name_char_tfidf_cosine",  # the same, names only
    "name_length_ratio",  # shorter name / longer name (characters)
    "left_name_tokens",
    "right_name_tokens",
    "price_relative_diff",  # |a - b| / max(a, b); NaN when either price is missing
)


def attributes(text: str) -> dict[str, str]:
    """``name: x; price: 9.99`` -> {name: x, price: 9.99}; a string without ``key: `` is {text: ...}."""
    text = (text or "").strip()
    marks = list(_ATTR.finditer(text))
    if not marks or marks[0].start() != 0:
        return {"text": text}
    out = {}
    for m, nxt in zip(marks, [*marks[1:], None]):
        out[m.group(1).strip().lower()] = text[m.end() : nxt.start() if nxt else len(text)].strip()
    return out


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def product_codes(text: str) -> set[str]:
    """Alphanumeric codes (letters and digits, >= 4 characters) with separators removed; a code is also
    made of two adjacent words ("dav is50" -> "davis50"), since catalogs split codes at spaces too. That
    also makes junk ("black 1080" -> "black1080"), which only matches the same junk: measured on Abt-Buy
    validation, joining every adjacent pair beats joining only next to a code (F1 0.867 vs 0.851)."""
    words = [_SEP.sub("", t) for t in tokens(text)]
    out = {w for w in words if _is_code(w)}
    out.update(a + b for a, b in zip(words, words[1:]) if _is_code(a + b) and len(a) + len(b) >= 5)
    return out


def _is_code(word: str) -> bool:
    return len(word) >= 4 and bool(_DIGIT.search(word)) and bool(_ALPHA.search(word))


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def _price(attrs: dict[str, str]) -> float:
    try:
        value = float(re.sub(r"[^\d.]", "", attrs.get("price", "")) or "nan")
    except ValueError:
        return float("nan")
    return value if value > 0 else float("nan")


class _Side:
    """One offer's parsed pieces (computed once per text)."""

    def __init__(self, text: str):
        attrs = attributes(text)
        self.all = " ".join(v for v in attrs.values() if v)
        self.name = next(iter(attrs.values()), "")
        self.words, self.name_words = set(tokens(self.all)), set(tokens(self.name))
        self.numbers = {w for w in self.name_words if w.isdigit()}
        self.codes, self.name_codes = product_codes(self.all), product_codes(self.name)
        self.price = _price(attrs)


def _pair_row(a: _Side, b: _Side) -> list[float]:
    match = bool(a.name_codes & b.codes or b.name_codes & a.codes)
    shorter = max(1, min(len(a.name_words), len(b.name_words)))
    price = abs(a.price - b.price) / max(a.price, b.price)  # NaN when either is missing
    return [
        float(match),
        _jaccard(a.codes, b.codes),
        float(bool(a.name_codes and b.name_codes and not a.codes & b.codes)),
        _jaccard(a.words, b.words),
        _jaccard(a.name_words, b.name_words),
        len(a.name_words & b.name_words) / shorter,
        _jaccard(a.numbers, b.numbers),
        0.0,
        0.0,  # TF-IDF cosines, filled in batch
        min(len(a.name), len(b.name)) / max(1, len(a.name), len(b.name)),
        float(len(a.name_words)),
        float(len(b.name_words)),
        price,
    ]


class PairFeaturizer:
    """``PairFeaturizer().fit(texts).transform(lefts, rights) -> (N, len(FEATURE_NAMES))`` float array."""

    def __init__(self, ngram_range: tuple[int, ...] = (2, 4)):
        self.ngram_range = tuple(ngram_range)
        self._tfidf: Any = None  # a fitted sklearn TfidfVectorizer

    def fit(self, texts: Sequence[str]) -> PairFeaturizer:
        from sklearn.feature_extraction.text import TfidfVectorizer  # lazy: scikit-learn is slow to import

        self._tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=self.ngram_range, sublinear_tf=True)
        self._tfidf.fit([_Side(t).all for t in texts])
        return self

    def transform(self, lefts: Sequence[str], rights: Sequence[str]) -> np.ndarray:
        if self._tfidf is None:
            raise RuntimeError("PairFeaturizer.transform before fit: call fit(train texts) first")
        if len(lefts) != len(rights):
            raise ValueError(f"lefts ({len(lefts)}) and rights ({len(rights)}) differ in length")
        # each distinct text is parsed and vectorised once (a ranking scores one query against many items)
        texts, code = np.unique(np.asarray([*lefts, *rights], dtype=object).astype(str), return_inverse=True)
        sides = [_Side(t) for t in texts]
        li, ri = code[: len(lefts)], code[len(lefts) :]
        x = np.array([_pair_row(sides[i], sides[j]) for i, j in zip(li, ri)], dtype=np.float64)
        x = x.reshape(len(li), len(FEATURE_NAMES))
        if len(li):
            col = FEATURE_NAMES.index("char_tfidf_cosine")
            for k, part in enumerate(("all", "name")):
                m = self._tfidf.transform([getattr(s, part) for s in sides])  # rows are L2-normed
                x[:, col + k] = np.asarray(m[li].multiply(m[ri]).sum(1)).ravel()
        return x


class PairFeatureMatcher:
    """Gradient-boosted trees (or logistic regression) over :class:`PairFeaturizer` features.

    ``fit(lefts, rights, labels)`` on the train pairs, then ``score(lefts, rights) -> (N,)`` match
    probabilities; the evaluate job picks the F1 threshold on validation.
    """

    def __init__(
        self,
        model: str = "gbm",
        max_iter: int = 300,
        learning_rate: float = 0.05,
        ngram_range: Sequence[int] = (2, 4),
        seed: int = 0,
    ):
        if model not in ("gbm", "logistic"):
            raise ValueError(f"pair_features: model {model!r} is unknown; use gbm or logistic")
        self.model_name, self.max_iter, self.learning_rate, self.seed = model, max_iter, learning_rate, seed
        self.featurizer = PairFeaturizer(tuple(ngram_range))
        self._clf = None

    def fit(
        self, lefts: Sequence[str], rights: Sequence[str], labels: Sequence[int] | np.ndarray
    ) -> PairFeatureMatcher:
        y = np.asarray(labels).astype(int)
        if len(np.unique(y)) < 2:
            raise ValueError("pair_features needs train pairs with both labels (0 and 1)")
        self.featurizer.fit([*lefts, *rights])
        x = self.featurizer.transform(lefts, rights)
        self._clf = self._new_classifier().fit(x, y)
        return self

    def _new_classifier(self) -> Any:  # an unfitted sklearn classifier
        if self.model_name == "gbm":
            from sklearn.ensemble import HistGradientBoostingClassifier  # lazy: slow import

            return HistGradientBoostingClassifier(
                max_iter=self.max_iter, learning_rate=self.learning_rate, random_state=self.seed
            )
        from sklearn.impute import SimpleImputer  # lazy: scikit-learn is slow to import
        from sklearn.linear_model import LogisticRegression  # lazy: scikit-learn is slow to import
        from sklearn.pipeline import make_pipeline  # lazy: scikit-learn is slow to import
        from sklearn.preprocessing import StandardScaler  # lazy: scikit-learn is slow to import

        return make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True),
            StandardScaler(),
            LogisticRegression(max_iter=2000),
        )

    def score(self, lefts: Sequence[str], rights: Sequence[str]) -> np.ndarray:
        if self._clf is None:
            raise RuntimeError("PairFeatureMatcher.score before fit")
        return self._clf.predict_proba(self.featurizer.transform(lefts, rights))[:, 1]


class PairsInterface:
    """The matcher behind ``CrossEncoder.score``'s interface (``score(pairs, batch_size)``), so the
    evaluation's cross-encoder adapter ranks items with it (retrieval, or as a re-ranker)."""

    def __init__(self, matcher: PairFeatureMatcher):
        self.matcher = matcher

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int | None = None) -> np.ndarray:
        return self.matcher.score([left for left, _ in pairs], [right for _, right in pairs])
