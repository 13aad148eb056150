"""Merchandising rules: boost, bury, pin-to-position and filter, triggered by the query or its category.

A rules file (YAML or JSON, validated by :class:`RulesFile`, unknown fields are errors) holds a list of
rules; :class:`RuleSet` applies them to one ranked result list and reports what fired; :class:`RulesSource`
holds the served rule set and hot-reloads the file when it changes (a bad new file keeps the old rules
and is reported: no request ever fails because of a reload). ``SearchPipeline`` runs them as its last
stage, so evaluate, the benchmark and Serve apply the same rules (docs/MERCHANDISING.md).

Order of application (one request): the rules whose trigger matches, in file order ->
1. ``filter``: keeps the items that pass (an item whose attribute is unknown does not pass); a filter on
   an attribute the catalog lacks, or one that would remove every item, is skipped and reported;
2. ``boost`` / ``bury``: ``amount`` added to / subtracted from the item's score, stable re-sort;
3. ``pin``: the item is moved (or, when retrieval did not return it and the request has no filters,
   brought in from the catalog) to its 0-based ``position``; a later pin of a taken slot or of an already
   pinned item, a pin of an item the catalog lacks or that a filter removed, is skipped and reported;
   a position past the end puts the item last.
The result never holds an item twice and never loses one (only a filter removes items).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from recsys.config import StrictModel

MAX_POSITION = 10_000
CATEGORY_TOP = 10  # the query's category: the most common among this many top results (no category filter)
FILTER_COLUMNS = {
    "in_stock": "in_stock",
    "price_min": "price",
    "price_max": "price",
    "brand": "brand",
    "category": "category",
}
SELECTOR_COLUMNS = {"brand": "brand", "category": "category", "title_contains": "title"}


def normalize_query(text: str) -> str:
    """What triggers match against: NFKC, case-folded, runs of whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _strings(v: str | list[str] | None) -> list[str] | None:
    if v is None:
        return None
    out = [v] if isinstance(v, str) else list(v)
    if not out or any(not s.strip() for s in out):
        raise ValueError("give one or more non-empty strings")
    return out


class QueryMatch(StrictModel):
    """Exactly one of: ``exact`` (the whole normalised query), ``contains`` (as whole words), ``regex``."""

    exact: str | list[str] | None = Field(None, description="The normalised query equals one of these.")
    contains: str | list[str] | None = Field(
        None, description="The normalised query contains one of these phrases as whole words."
    )
    regex: str | None = Field(None, description="re.search on the normalised query.")

    @field_validator("exact", "contains")
    @classmethod
    def _texts(cls, v: str | list[str] | None) -> list[str] | None:
        out = _strings(v)
        return None if out is None else [normalize_query(s) for s in out]

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a valid regular expression: {e}") from None
        return v

    @model_validator(mode="after")
    def _one(self) -> QueryMatch:
        given = [k for k in ("exact", "contains", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of exact / contains / regex, got {given or 'none'}")
        return self


class When(StrictModel):
    """The trigger; both given = both must match; neither = the rule fires on every query."""

    query: QueryMatch | None = Field(None, description="Match on the normalised query (typed or rewritten).")
    category: str | list[str] | None = Field(
        None,
        description="The query's category is one of these (case-insensitive): the request's category "
        f"filter, else the most common category of the top {CATEGORY_TOP} results.",
    )

    @field_validator("category")
    @classmethod
    def _cats(cls, v: str | list[str] | None) -> list[str] | None:
        out = _strings(v)
        return None if out is None else [s.casefold() for s in out]


class ItemSelector(StrictModel):
    """Which results a boost / bury moves: an item matching ANY given criterion."""

    item_ids: list[str] | None = Field(None, description="These products.")
    brand: str | list[str] | None = Field(None, description="Brand (case-insensitive).")
    category: str | list[str] | None = Field(None, description="Category (case-insensitive).")
    title_contains: str | list[str] | None = Field(
        None, description="A phrase of the title (case-insensitive)."
    )

    @field_validator("brand", "category", "title_contains")
    @classmethod
    def _texts(cls, v: str | list[str] | None) -> list[str] | None:
        out = _strings(v)
        return None if out is None else [s.casefold() for s in out]

    @model_validator(mode="after")
    def _some(self) -> ItemSelector:
        if not any(getattr(self, k) for k in ("item_ids", "brand", "category", "title_contains")):
            raise ValueError("give at least one of item_ids / brand / category / title_contains")
        return self

    def matches(self, item: Mapping[str, Any]) -> bool:
        if self.item_ids and str(item.get("item_id")) in self.item_ids:
            return True
        for key in ("brand", "category"):
            wanted = getattr(self, key)
            if wanted and item.get(key) is not None and str(item[key]).casefold() in wanted:
                return True
        title = str(item.get("title") or "").casefold()
        return bool(self.title_contains and any(p in title for p in self.title_contains))


class ScoreShift(StrictModel):
    items: ItemSelector = Field(..., description="Which results.")
    amount: float = Field(
        ..., gt=0, le=1e6, description="Added to (boost) / subtracted from (bury) the score."
    )


class Pin(StrictModel):
    item_id: str = Field(..., min_length=1, description="The product.")
    position: int = Field(..., ge=0, le=MAX_POSITION, description="0-based rank (the response's `position`).")


class ItemFilter(StrictModel):
    """Keep only the results that pass every given condition."""

    in_stock: bool | None = Field(None, description="true: only items whose in_stock column is true.")
    price_min: float | None = Field(None, ge=0, description="Lowest price, inclusive.")
    price_max: float | None = Field(None, ge=0, description="Highest price, inclusive.")
    brand: str | list[str] | None = Field(None, description="Only these brands (case-insensitive).")
    category: str | list[str] | None = Field(None, description="Only these categories (case-insensitive).")

    @field_validator("brand", "category")
    @classmethod
    def _texts(cls, v: str | list[str] | None) -> list[str] | None:
        out = _strings(v)
        return None if out is None else [s.casefold() for s in out]

    @model_validator(mode="after")
    def _some(self) -> ItemFilter:
        if all(getattr(self, k) is None for k in FILTER_COLUMNS):
            raise ValueError(f"give at least one of {list(FILTER_COLUMNS)}")
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError("price_min must be <= price_max")
        return self

    def columns(self) -> set[str]:
        return {col for k, col in FILTER_COLUMNS.items() if getattr(self, k) is not None}

    def passes(self, item: Mapping[str, Any]) -> bool:
        if self.in_stock is not None and (
            item.get("in_stock") is None or bool(item["in_stock"]) != self.in_stock
        ):
            return False
        price = item.get("price")
        if (self.price_min is not None or self.price_max is not None) and price is None:
            return False
        if self.price_min is not None and float(price) < self.price_min:  # type: ignore[arg-type]
            return False
        if self.price_max is not None and float(price) > self.price_max:  # type: ignore[arg-type]
            return False
        for key in ("brand", "category"):
            wanted = getattr(self, key)
            if wanted is not None and (item.get(key) is None or str(item[key]).casefold() not in wanted):
                return False
        return True


class Rule(StrictModel):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="Reported in rules_fired.")
    enabled: bool = Field(True, description="false: kept in the file, never fires.")
    when: When = Field(default_factory=When, description="Trigger (empty: every query).")
    filter: ItemFilter | None = Field(None, description="Keep only matching results.")
    boost: list[ScoreShift] = Field(default_factory=list, description="Raise matching results.")
    bury: list[ScoreShift] = Field(default_factory=list, description="Lower matching results.")
    pin: list[Pin] = Field(default_factory=list, description="Products at fixed positions.")

    @model_validator(mode="after")
    def _acts(self) -> Rule:
        if self.filter is None and not (self.boost or self.bury or self.pin):
            raise ValueError("a rule needs at least one action: filter / boost / bury / pin")
        return self


class RulesFile(StrictModel):
    rules: list[Rule] = Field(default_factory=list, description="Applied in this order.")

    @model_validator(mode="after")
    def _unique(self) -> RulesFile:
        dup = sorted(n for n, c in Counter(r.name for r in self.rules).items() if c > 1)
        if dup:
            raise ValueError(f"rule names must be unique; repeated: {dup}")
        return self


class RulesError(ValueError):
    """A rules file that cannot be served; the message names the file, the rule and the field."""


@dataclass(frozen=True)
class CatalogInfo:
    """What load-time checks need of the served catalog: its item ids and columns."""

    item_ids: frozenset[str]
    columns: frozenset[str]


@dataclass(frozen=True)
class LoadReport:
    path: str
    rules: int  # rules in the file
    enabled: int
    skipped: tuple[
        dict[str, str], ...
    ]  # {rule, field, reason}: a pin to a missing product, a filter on a missing column
    fingerprint: str  # sha256 of the file's bytes (the response cache keys on it)


def _rule_label(raw: Any, loc: Sequence[Any]) -> tuple[str, str]:
    """(rule, field) of a pydantic error location such as ("rules", 2, "boost", 0, "amount")."""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        name = f"rules[{loc[1]}]"
        try:
            name = f"{raw['rules'][loc[1]]['name']!r} (rules[{loc[1]}])"
        except (KeyError, IndexError, TypeError):
            pass
        rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[2:]).lstrip(".")
        return name, rest or "(the rule)"
    return "(file)", ".".join(str(p) for p in loc) or "(top level)"


def parse_rules(text: str, source: str = "<rules>") -> RulesFile:
    """A rules file's text (YAML or JSON: JSON is YAML) -> the validated file, or :class:`RulesError`."""
    try:
        raw = yaml.safe_load(text) if text.strip() else {"rules": []}
    except yaml.YAMLError as e:
        raise RulesError(f"rules file {source}: not valid YAML/JSON: {e}") from None
    if not isinstance(raw, dict):
        raise RulesError(
            f"rules file {source}: expected a mapping with a `rules:` list, got {type(raw).__name__}"
        )
    try:
        return RulesFile.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            rule, fld = _rule_label(raw, err["loc"])
            lines.append(f"rule {rule} field {fld}: {err['msg']}")
        raise RulesError(f"rules file {source}: " + "; ".join(lines)) from None


def _skips(rules: RulesFile, catalog: CatalogInfo | None) -> list[dict[str, str]]:
    if catalog is None:
        return []
    out = []
    for r in rules.rules:
        for j, p in enumerate(r.pin):
            if p.item_id not in catalog.item_ids:
                why = f"product {p.item_id!r} is not in the catalog: pin skipped"
                out.append({"rule": r.name, "field": f"pin[{j}].item_id", "reason": why})
        if r.filter is not None:
            for col in sorted(r.filter.columns() - catalog.columns):
                why = f"the catalog has no {col!r} column: the filter is skipped"
                out.append({"rule": r.name, "field": "filter", "reason": why})
    return out


@dataclass
class _Item:
    rec: dict[str, Any]
    score: float


@dataclass(frozen=True)
class RuleSet:
    """A validated rules file, ready to apply; ``RuleSet.empty()`` applies nothing."""

    rules: tuple[Rule, ...]
    report: LoadReport
    # (rule, item_id) of the pins skipped at load (the product is not in the catalog)
    missing: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    _memo: dict[tuple[str, ...], list[Rule]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def empty(cls) -> RuleSet:
        return cls((), LoadReport("", 0, 0, (), "none"))

    @classmethod
    def from_text(cls, text: str, source: str = "<rules>", catalog: CatalogInfo | None = None) -> RuleSet:
        parsed = parse_rules(text, source)
        skips = _skips(parsed, catalog)
        missing = frozenset(
            (r.name, p.item_id)
            for r in parsed.rules
            for p in r.pin
            if catalog and p.item_id not in catalog.item_ids
        )
        enabled = tuple(r for r in parsed.rules if r.enabled)
        fp = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        return cls(enabled, LoadReport(source, len(parsed.rules), len(enabled), tuple(skips), fp), missing)

    @classmethod
    def load(cls, path: str | Path, catalog: CatalogInfo | None = None) -> RuleSet:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise RulesError(f"rules file {path}: cannot read it: {e}") from None
        return cls.from_text(text, str(path), catalog)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def triggered(self, queries: Iterable[str]) -> list[Rule]:
        """Rules whose query condition holds (or that have none); the category is checked in :meth:`apply`."""
        qs = tuple(dict.fromkeys(normalize_query(q) for q in queries))
        hit = self._memo.get(qs)  # one request asks up to four times
        if hit is None:
            hit = [
                r
                for r in self.rules
                if r.when.query is None or any(_query_matches(r.when.query, q) for q in qs)
            ]
            if len(self._memo) >= 1024:
                self._memo.clear()
            self._memo[qs] = hit
        return hit

    def pins_to_fetch(self, queries: Iterable[str]) -> list[str]:
        """Pinned products that retrieval may not return: the pipeline adds them to the candidates."""
        out: list[str] = []
        for r in self.triggered(queries):
            out += [
                p.item_id for p in r.pin if (r.name, p.item_id) not in self.missing and p.item_id not in out
            ]
        return out

    def may_filter(self, queries: Iterable[str]) -> bool:
        return any(r.filter is not None for r in self.triggered(queries))

    def apply(
        self,
        items: list[dict[str, Any]],
        queries: Iterable[str],
        request_category: str | list[str] | None = None,
        fetched: Collection[str] = (),
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``items`` ranked best first (catalog records with ``score``) -> (the re-ranked list, rules_fired).
        ``fetched``: ids added only because a rule pins them (dropped unless a pin places them)."""
        rules = self.triggered(queries)
        if not rules:
            return [i for i in items if i["item_id"] not in fetched], []
        category = query_category(items, request_category, fetched)
        rules = [
            r
            for r in rules
            if r.when.category is None or (category is not None and category in r.when.category)
        ]
        fired: list[dict[str, Any]] = []
        cur = [_Item(dict(i), float(i.get("score", 0.0))) for i in items]
        columns = set().union(*(i.rec.keys() for i in cur)) if cur else set()
        removed_by: dict[str, str] = {}
        for r in rules:
            if r.filter is None:
                continue
            lacking = r.filter.columns() - columns
            if lacking:
                fired.append(_fired(r.name, "filter", [], f"the catalog has no {sorted(lacking)} column(s)"))
                continue
            keep = [i for i in cur if r.filter.passes(i.rec)]
            gone = [i.rec["item_id"] for i in cur if not r.filter.passes(i.rec)]
            if not any(i.rec["item_id"] not in fetched for i in keep):  # no retrieved result would remain
                fired.append(_fired(r.name, "filter", [], "would remove every result: not applied"))
                continue
            cur = keep
            removed_by.update({g: r.name for g in gone})
            fired.append(_fired(r.name, "filter", [g for g in gone if g not in fetched]))
        for r in rules:
            for action, sign, shifts in (("boost", 1.0, r.boost), ("bury", -1.0, r.bury)):
                for s in shifts:
                    hit = [i for i in cur if i.rec["item_id"] not in fetched and s.items.matches(i.rec)]
                    for i in hit:
                        i.score += sign * s.amount
                    fired.append(_fired(r.name, action, [i.rec["item_id"] for i in hit]))
        cur.sort(key=lambda i: -i.score)  # stable: ties keep their order
        cur, pin_fired = _place_pins(cur, rules, removed_by, self.missing, fetched)
        fired += pin_fired
        out = []
        for i in cur:
            i.rec["score"] = round(i.score, 6)
            out.append(i.rec)
        return out, fired


def _query_matches(m: QueryMatch, q: str) -> bool:
    if m.exact is not None:
        return q in m.exact
    if m.contains is not None:
        padded = f" {q} "
        return any(f" {p} " in padded for p in m.contains)
    return m.regex is not None and re.search(m.regex, q) is not None


def query_category(
    items: list[dict[str, Any]], request_category: str | list[str] | None, fetched: Collection[str]
) -> str | None:
    """The query's category (intent): the request's category filter (its first value), else the most common
    category of the top ``CATEGORY_TOP`` results (ties: the one that ranks first); None when the catalog has
    no ``category`` column (the Home Depot catalog: titles only)."""
    if request_category:
        first = request_category if isinstance(request_category, str) else request_category[0]
        return str(first).casefold()
    cats = [str(i["category"]).casefold() for i in items if i["item_id"] not in fetched and i.get("category")]
    top = Counter(cats[:CATEGORY_TOP]).most_common(1)
    return top[0][0] if top else None


def _fired(rule: str, action: str, items: list[str], skipped: str | None = None) -> dict[str, Any]:
    return {"rule": rule, "action": action, "items": items, "skipped": skipped}


def _place_pins(
    cur: list[_Item],
    rules: list[Rule],
    removed_by: dict[str, str],
    missing: frozenset[tuple[str, str]],
    fetched: Collection[str],
) -> tuple[list[_Item], list[dict[str, Any]]]:
    """Accept pins in rule order (first come, first served), then insert them in ascending position."""
    by_id = {i.rec["item_id"]: i for i in cur}
    slots: dict[int, str] = {}  # position -> rule
    placed: dict[str, str] = {}  # item -> rule
    pins: list[tuple[int, str]] = []
    fired = []
    for r in rules:
        for p in r.pin:
            why = None
            if (r.name, p.item_id) in missing:
                why = f"product {p.item_id!r} is not in the catalog"
            elif p.item_id in removed_by:
                why = f"product {p.item_id!r} removed by filter rule {removed_by[p.item_id]!r}"
            elif p.item_id not in by_id:
                why = f"product {p.item_id!r} is not in the catalog or not among the filtered results"
            elif p.item_id in placed:
                why = f"product {p.item_id!r} already pinned by rule {placed[p.item_id]!r}"
            elif p.position in slots:
                why = f"position {p.position} already taken by rule {slots[p.position]!r}"
            if why is not None:
                fired.append(_fired(r.name, "pin", [], why))
                continue
            slots[p.position], placed[p.item_id] = r.name, r.name
            pins.append((p.position, p.item_id))
            fired.append(_fired(r.name, "pin", [p.item_id]))
    out = [i for i in cur if i.rec["item_id"] not in placed and i.rec["item_id"] not in fetched]
    for pos, item_id in sorted(pins):  # ascending: an insert never shifts an earlier pin
        out.insert(min(pos, len(out)), by_id[item_id])
    return out, fired


class RulesSource:
    """The served rule set of one file, re-read when the file changes (checked at most every ``poll_s``
    seconds, on the request path: one ``os.stat``). A file that fails to load keeps the previous rules and
    is reported (``status()``); the swap is one attribute assignment, so a request sees the old or the new
    set, never a mix, and none fails. ``catalog`` (optional) gives the served catalog for load-time checks."""

    def __init__(
        self,
        path: str | Path,
        poll_s: float = 1.0,
        catalog: Callable[[], CatalogInfo | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path, self.poll_s, self.catalog, self.clock = Path(path), poll_s, catalog, clock
        self._lock = threading.Lock()
        self.reloads = 0
        self.reload_errors = 0
        self.last_error: str | None = None
        self._stamp = self._stat()
        self.rules = RuleSet.load(self.path, self._catalog())  # a bad file at start-up is an error
        self._checked = self.clock()

    def _catalog(self) -> CatalogInfo | None:
        return self.catalog() if self.catalog is not None else None

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def current(self) -> RuleSet:
        now = self.clock()
        if now - self._checked >= self.poll_s and self._lock.acquire(blocking=False):
            try:
                self._checked = now
                stamp = self._stat()
                if stamp != self._stamp:
                    self._stamp = stamp
                    self.reload()
            finally:
                self._lock.release()
        return self.rules

    def reload(self) -> bool:
        """Re-read the file now; False (old rules kept, error recorded) when it does not load."""
        try:
            new = RuleSet.load(self.path, self._catalog())
        except RulesError as e:
            self.reload_errors += 1
            self.last_error = str(e)
            return False
        self.rules, self.last_error = new, None
        self.reloads += 1
        return True

    def status(self) -> dict[str, Any]:
        r = self.rules.report
        return {
            "path": str(self.path),
            "rules": r.rules,
            "enabled": r.enabled,
            "fingerprint": r.fingerprint,
            "skipped": [dict(s) for s in r.skipped],
            "reloads": self.reloads,
            "reload_errors": self.reload_errors,
            "last_error": self.last_error,
        }


def dumps_rules(rules: RulesFile) -> str:
    """A validated rules file back to JSON (tests, tools)."""
    return json.dumps(rules.model_dump(exclude_none=True), indent=2)
