"""One-way query expansions mined from judged (query, product) pairs: ``{query word: [title word, ...]}``.

A query word ``w`` gets the expansion ``t`` when, over the training queries' relevant products whose
title lacks ``w``, ``t`` is in at least ``min_share`` of them and ``min_support`` times (so "fridge" ->
"refrigerator" is learnt from shoppers' own words, not typed by hand). Expansions are appended to the
query by :class:`~recsys.search.query.QueryRewriter`, never replacing what was typed.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

_WORD = re.compile(r"[a-z]+")
STOP = frozenset(
    "a an and the of for with in on to by or at from is are x ft in. lb oz gal sq cu inch pack set".split()
)


def mine_synonyms(
    pairs: Iterable[tuple[str, str]], *, min_support: int = 3, min_share: float = 0.5, max_per_word: int = 2
) -> dict[str, list[str]]:
    """``pairs``: (query, title of a product judged relevant to it) -> expansions per query word."""
    missing: Counter[str] = Counter()  # word -> relevant titles that lack it
    together: dict[str, Counter[str]] = defaultdict(Counter)  # word -> title words in those titles
    for query, title in pairs:
        title_words = set(_WORD.findall(title.lower()))
        for w in set(_WORD.findall(query.lower())) - STOP:
            if len(w) < 3 or w in title_words:
                continue
            missing[w] += 1
            together[w].update(t for t in title_words - STOP if len(t) >= 3)
    out = {}
    for w, n in missing.items():
        best = [
            t for t, c in together[w].most_common() if c >= min_support and c / n >= min_share and t != w
        ][:max_per_word]
        if best:
            out[w] = best
    return dict(sorted(out.items()))


def save_synonyms(path: str | Path, synonyms: dict[str, list[str]]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(synonyms, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def load_synonyms(path: str | Path | None) -> dict[str, tuple[str, ...]]:
    """``{word: (expansion, ...)}`` from a mined JSON file; a clear error for a wrong shape."""
    if path is None:
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in data.values()
    ):
        raise ValueError(f"{path}: synonyms must be a JSON object {{word: [expansion, ...]}}")
    return {str(k).lower(): tuple(v) for k, v in data.items()}
