"""Column role inference: propose a mapping of an unknown table's columns to canonical roles.

Each column is scored from its name (synonym patterns) and from a sample of its values (parse rate
as a timestamp, cardinality, numeric shape, text length, PII patterns); the best role per column
wins with a confidence in [0, 1]. ``propose_input`` turns the roles into an ``input:`` section
(columns, event_map, timestamp unit) that the clean job accepts.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from recsys.config.base import NULL_TOKENS
from recsys.data.pii import EMAIL, PHONE
from recsys.data.readers import WHITESPACE, parse_delimited, parse_excel, sniff_dialect
from recsys.data.schema import KEYS

NAME_PATTERNS: dict[str, str] = {
    "user_id": r"^(user|customer|client|visitor|member|buyer|account|uid|cust)(_?id|_?no|_?key)?$"
    r"|^(user|customer).*id$",
    "item_id": r"^(item|product|sku|stock_?code|asin|article|iid|pid|prod|offer|listing)(_?id|_?code|_?no|_?key)?$",
    "timestamp": r"(time|date|^ts$|timestamp|created|datetime|when|epoch)",
    "event_type": r"^(event|behaviou?r|action|type|event_?type|activity|interaction)(_?type|_?name)?$",
    "price": r"(price|amount|cost|revenue|value|unit_?price)",
    "quantity": r"^(qty|quantity|count|units|num_?items)$",
    "query": r"^(query|search|keyword|search_?term|q)$",
    "session_id": r"^(session|sess)(_?id)?$",
    "position": r"^(position|rank|pos|slot)$",
    "order_id": r"^(order|invoice|transaction|basket)(_?id|_?no|_?number)?$",
    "category": r"(category|categ|cat_?id|genre|department|dept|class)",
    "country": r"^(country|nation|region|market|geo)(_?code)?$",
    "title": r"^(title|name|product_?name|description|desc|text|label)$",
    "email": r"(e_?mail)",
    "phone": r"(phone|mobile|tel)",
}
EVENT_WORDS = {
    "pv": "view",
    "view": "view",
    "views": "view",
    "page_view": "view",
    "click": "click",
    "clicks": "click",
    "cart": "cart",
    "addtocart": "cart",
    "add_to_cart": "cart",
    "fav": "fav",
    "favorite": "fav",
    "wishlist": "fav",
    "buy": "buy",
    "purchase": "buy",
    "order": "buy",
    "transaction": "buy",
    "return": "return",
    "impression": "impression",
    "search": "search",
    "rate": "rate",
    "review": "rate",
}
COUNTRY_HINT = re.compile(
    r"^(united|germany|france|spain|italy|japan|china|usa?|uk|gb|de|fr|jp|eire|netherlands|"
    r"australia|belgium|switzerland|portugal|norway|sweden|finland|denmark|poland|austria|canada)",
    re.I,
)


NO_ITEM = "unspecified"  # input.defaults.item_id proposed for a log without item ids
REVIEW_BELOW = 0.5  # a role filled with less confidence than this makes the verdict "review needed"
ID_NULL_BOUND = 0.05  # an id column with a larger null share (tokens included) is reported
EMPTY_COLUMN = 0.95  # a column with a larger null share gets no role (nothing to infer from)
MONOTONE_MIN_PAIRS = 20  # consecutive pairs within groups needed before monotony counts as evidence
OFFSET_NAME = r"(offset|elapsed|time_?frame|millis|msec|_ms$|delta|since)"
SEQUENCE_NAME = r"^(seq|sequence|step|event_?(no|num|index|seq)|click_?(no|num|index)|seq_?(no|num))$"
GROUP_ROLES = ("session_id", "user_id")  # offsets / sequence numbers count within these


def _ts_rate(s: pd.Series) -> tuple[float, str | None]:
    """Share of values that read as a plausible timestamp (1995-2040), and how: the epoch unit of
    numbers (s / ms / us), '%Y%m%d' for 8-digit dates, None for text dates."""
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().mean() > 0.95:
        for unit, lo, hi in (("s", 9.4e8, 2.2e9), ("ms", 9.4e11, 2.2e12), ("us", 9.4e14, 2.2e15)):
            rate = num.between(lo, hi).mean()
            if rate > 0.9:
                return float(rate), unit
        if s.str.fullmatch(r"\d{8}").mean() > 0.95:  # 19970101
            days = pd.to_datetime(s, format="%Y%m%d", errors="coerce")
            rate = float((days.notna() & days.dt.year.between(1995, 2040)).mean())
            if rate > 0.9:
                return rate, "%Y%m%d"
        return 0.0, None
    if s.str.len().median() < 6:
        return 0.0, None
    parsed = pd.to_datetime(s, errors="coerce", format="mixed", utc=True)
    ok = parsed.notna() & (parsed.dt.year.between(1995, 2040))
    return float(ok.mean()), None


def null_tokens(s: pd.Series, null_values: tuple[str, ...] | list[str] = NULL_TOKENS) -> pd.Series:
    """True where a raw value is missing: null, or one of ``null_values`` after trimming spaces."""
    text = s.astype("string").str.strip()
    return (text.isna() | text.isin(list(null_values))).astype(bool)


def column_profile(
    name: str, s: pd.Series, null_values: tuple[str, ...] | list[str] = NULL_TOKENS
) -> dict[str, Any]:
    """Shape of one raw string column; null tokens (``null_values``) are reported and then left out,
    so an id column of 62 % 'NA' has null_share 0.62 and its distinct count excludes 'NA'."""
    text = s.astype("string").str.strip()
    total = len(text)
    missing = null_tokens(s, null_values)
    counts: dict[str, int] = {}
    if text.isna().any():
        counts[""] = int(text.isna().sum())  # the reader already read empty fields as null
    for tok, cnt in text[missing & text.notna()].value_counts().items():
        counts[str(tok)] = counts.get(str(tok), 0) + int(cnt)
    share = round(float(missing.mean()), 4) if total else 0.0
    base = {
        "name": name,
        "rows": total,
        "null_share": share,
        "null_tokens": {k: round(v / total, 4) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])},
    }
    s = text[~missing].astype(str)
    n = len(s)
    if n == 0 or share > EMPTY_COLUMN:
        return {**base, "n": 0}
    num = pd.to_numeric(s, errors="coerce")
    numeric = float(num.notna().mean())
    ts_rate, unit = _ts_rate(s.head(2000))
    return {
        **base,
        "n": n,
        "distinct": int(s.nunique()),
        "distinct_ratio": s.nunique() / n,
        "numeric": numeric,
        "integer": float((num.dropna() % 1 == 0).mean()) if numeric > 0 else 0.0,
        "negative": float((num < 0).mean()) if numeric > 0 else 0.0,
        "mean_len": float(s.str.len().mean()),
        "spaces": float(s.str.contains(" ").mean()),
        "email": float(s.str.contains(EMAIL, regex=True).mean()),
        "phone": float(s.str.contains(PHONE, regex=True).mean()),
        "ts_rate": ts_rate,
        "ts_unit": unit,
        "values": s.value_counts().head(30).index.tolist(),
        # counts cluster at small values (1, 2, 6, 12, ...); integer ids spread over their range
        "small": float((num.dropna().abs() <= 100).mean()) if numeric > 0 else 0.0,
        "median": float(num.median()) if numeric > 0 else 0.0,
        "series": s,  # index = row position in the sample: aligns columns for the monotony check
    }


Scores = dict[str, tuple[float, list[str]]]


def _add(scores: Scores, role: str, score: float, why: str) -> None:
    old, whys = scores.get(role, (0.0, []))
    scores[role] = (old + score, [*whys, why])


def _norm(name: str) -> str:
    name = re.sub(r":(token|token_seq|float|float_seq)$", "", name.lower())  # RecBole atomic-file types
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_")


def _plain_int(p: dict[str, Any]) -> bool:
    """Integers that are not epochs: candidates for an offset / sequence number."""
    return bool(
        p.get("n")
        and p["numeric"] > 0.95
        and p["integer"] > 0.99
        and p["negative"] == 0
        and p["ts_rate"] < 0.5
    )


def score_roles(p: dict[str, Any]) -> Scores:
    """Role -> (score, reasons) from the column's name and values. An event type needs event names
    among the values (a name alone is not enough); a time-like name over plain integers is no timestamp."""
    if p.get("n", 0) == 0:
        return {}
    name = _norm(p["name"])
    scores: Scores = {}
    vals = [str(v).lower() for v in p["values"]]
    ev = 0.0
    if p["distinct"] <= 30 and p["numeric"] < 0.5:
        ev = sum(v in EVENT_WORDS for v in vals) / max(len(vals), 1)
    ts_rate = p["ts_rate"]
    for role, pat in NAME_PATTERNS.items():
        if not re.search(pat, name):
            continue
        if role == "event_type" and ev <= 0.5:
            continue  # named like an event type, values are not event names: reported by propose()
        if role == "timestamp" and p["numeric"] > 0.95 and ts_rate < 0.5:
            continue  # 'timeframe' of plain integers: an offset or a count, not a time
        _add(scores, role, 0.6, f"name matches {role}")
    if ts_rate > 0.9:
        how = p["ts_unit"]
        unit = f" ({how})" if how and how.startswith("%") else (f" (epoch {how})" if how else "")
        _add(scores, "timestamp", 0.5 * ts_rate, f"{ts_rate:.0%} of values parse as times{unit}")
    if ev > 0.5:
        _add(scores, "event_type", 0.6 * ev, f"{ev:.0%} of its top values are event names")
    if p["numeric"] < 0.5 and sum(bool(COUNTRY_HINT.match(v)) for v in vals) >= max(1, len(vals) // 3):
        _add(scores, "country", 0.5, "values are country names")
    if p["email"] > 0.5:
        _add(scores, "email", 0.6, "values are emails")
    if p["phone"] > 0.5 and p["numeric"] < 0.9:
        _add(scores, "phone", 0.5, "values are phone numbers")
    if p["numeric"] > 0.95 and p["integer"] < 0.9 and ts_rate < 0.5:
        _add(scores, "price", 0.4, "decimal numbers")
    if (
        p["numeric"] > 0.95
        and p["integer"] > 0.99
        and ts_rate < 0.5
        and (
            (p["distinct"] <= 200 and p["distinct_ratio"] < 0.05)
            or (p["small"] >= 0.8 and p["median"] <= 50 and p["distinct_ratio"] < 0.1)
        )
    ):
        _add(scores, "quantity", 0.25, "few distinct small integers")
    if p["mean_len"] > 15 and p["spaces"] > 0.5:
        _add(scores, "title", 0.5, "long text with spaces")
    if _plain_int(p) and re.search(OFFSET_NAME, name):
        _add(scores, "offset", 0.6, "name matches an offset; values are integers >= 0, not epochs")
    if _plain_int(p) and re.search(SEQUENCE_NAME, name):
        _add(scores, "sequence", 0.6, "name matches a sequence number; values are integers >= 0")
    if (p["numeric"] > 0.95 and p["integer"] > 0.99 and ts_rate < 0.5) or (
        p["spaces"] < 0.05 and p["mean_len"] < 20
    ):
        scores["_id"] = (0.35, ["short identifier-like values"])  # user, item, category, order, ...
    return scores


def monotone_within(x: pd.Series, groups: pd.Series) -> dict[str, float] | None:
    """How ``x`` moves between consecutive rows of the same group (file order): pairs, share
    non-decreasing, share increasing, share of +1 steps, share of groups starting at 0 or 1."""
    df = pd.DataFrame({"x": pd.to_numeric(x, errors="coerce"), "g": groups}).dropna()
    d = df.groupby("g", sort=False)["x"].diff().dropna()
    if len(d) < MONOTONE_MIN_PAIRS:
        return None
    first = df.groupby("g", sort=False)["x"].first()
    return {
        "pairs": float(len(d)),
        "non_decreasing": float((d >= 0).mean()),
        "increasing": float((d > 0).mean()),
        "step_one": float((d == 1).mean()),
        "starts_0_1": float(first.isin([0, 1]).mean()),
    }


def _sorted_key(s: pd.Series) -> bool:
    """Non-decreasing over the whole sample: the file's sort key (an id), not an order within groups."""
    d = pd.to_numeric(s, errors="coerce").diff().dropna()
    return bool(len(d) and (d >= 0).mean() > 0.98)


def _in_runs(s: pd.Series) -> bool:
    """The file's sort key, or values in runs (a log grouped by user): an id, not a per-row count."""
    return _sorted_key(s) or bool((s == s.shift()).mean() > 0.5)


def _order_evidence(profiles: list[dict[str, Any]], scored: list[Scores]) -> None:
    """Add offset / sequence evidence: an integer column that never decreases within a session or
    user (in file order) orders events there; it is never an id or a category."""
    named = [i for i, s in enumerate(scored) if any(r in s for r in GROUP_ROLES)]
    groups = named or [  # header-less files: id columns whose values repeat (runs of one user)
        i for i, (p, s) in enumerate(zip(profiles, scored)) if "_id" in s and p["distinct_ratio"] <= 0.5
    ]
    for i, (p, s) in enumerate(zip(profiles, scored)):
        # a column named as another role keeps it (a search position also grows within a session)
        by_name = {r for r, (_, why) in s.items() if any(w.startswith("name matches") for w in why)}
        if not _plain_int(p) or by_name - {"offset", "sequence"} or _sorted_key(p["series"]):
            continue
        for g in groups:
            if g == i:
                continue
            m = monotone_within(p["series"], profiles[g]["series"])
            if m is None or m["non_decreasing"] < 0.98 or m["increasing"] < 0.5:
                continue
            gname = profiles[g]["name"]
            if m["step_one"] > 0.9 and m["starts_0_1"] > 0.9:
                _add(s, "sequence", 0.8, f"counts 0/1, +1, +1 ... within {gname}")
            else:
                _add(
                    s,
                    "offset",
                    0.8,
                    f"never decreases within {gname} ({m['non_decreasing']:.0%} of "
                    f"{int(m['pairs'])} consecutive pairs)",
                )
            break


def infer_roles(
    df: pd.DataFrame, null_values: tuple[str, ...] | list[str] = NULL_TOKENS
) -> list[dict[str, Any]]:
    """One proposal per column: {column, role (None = unmapped), confidence, why, candidates,
    null_share, null_tokens}. ``df`` holds a sample's raw string columns, whichever reader parsed it."""
    df = df.reset_index(drop=True)
    profiles = [column_profile(str(c), df[c], null_values) for c in df.columns]
    scored = [score_roles(p) for p in profiles]
    _order_evidence(profiles, scored)
    out: list[dict[str, Any]] = [
        {
            "column": p["name"],
            "role": None,
            "confidence": 0.0,
            "why": f"{p['null_share']:.0%} null: nothing to infer from" if p["n"] == 0 else "no role fits",
        }
        for p in profiles
    ]
    taken: set[str] = set()
    # named / value-evident roles first, highest score first; each role used once
    pairs = sorted(
        ((sc[0], i, r) for i, s in enumerate(scored) for r, sc in s.items() if r != "_id"), reverse=True
    )
    for score, i, role in pairs:
        if out[i]["role"] is None and role not in taken and score >= 0.4:
            out[i].update(role=role, confidence=round(min(score, 1.0), 2), why="; ".join(scored[i][role][1]))
            taken.add(role)
    # unnamed identifier columns in order: user, item, category (the usual log layout)
    for i, (p, s) in enumerate(zip(profiles, scored)):
        if out[i]["role"] is not None or "_id" not in s:
            continue
        if "quantity" in s and "quantity" not in taken and not _in_runs(p["series"]):  # a count, not an id
            out[i].update(
                role="quantity", confidence=0.35, why="few distinct small integers: a count, not an id"
            )
            taken.add("quantity")
            continue
        free = next((r for r in ("user_id", "item_id", "category") if r not in taken), None)
        if free == "category" and p["distinct_ratio"] > 0.5:
            out[i]["why"] = f"identifier-like but {p['distinct_ratio']:.0%} distinct: not a category"
            continue
        if free:
            conf = 0.4 if free != "category" else 0.3
            out[i].update(
                role=free, confidence=conf, why=f"unnamed identifier: position in the usual layout ({free})"
            )
            taken.add(free)
    for o, p, s in zip(out, profiles, scored):
        o["candidates"] = {
            k: round(v[0], 2) for k, v in sorted(s.items(), key=lambda kv: -kv[1][0]) if k != "_id"
        }
        o["null_share"], o["null_tokens"] = p["null_share"], p["null_tokens"]
        o["event_named"] = bool(re.search(NAME_PATTERNS["event_type"], _norm(p["name"])))
        o["sample_values"] = [str(v) for v in p.get("values", [])[:5]]
    return out


@dataclass
class Proposal:
    """The inventory's proposal: an ``input:`` section and what it is unsure of.

    ``notes`` holds the YAML comment of each proposed key (``columns.<source>``, ``timestamp``,
    ``defaults.event_type``); ``unfilled`` the required roles no column filled; ``review`` every
    reason the verdict is "review needed" (empty = "ok")."""

    input: dict[str, Any]
    roles: list[dict[str, Any]]
    notes: dict[str, str] = field(default_factory=dict)
    unfilled: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "review needed" if self.review else "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "review": self.review,
            "unfilled": self.unfilled,
            "warnings": self.warnings,
            "input": self.input,
        }


def _tokens(r: dict[str, Any]) -> str:
    return ", ".join(f"{k or 'empty'} {v:.0%}" for k, v in r["null_tokens"].items()) or "none"


def _note(r: dict[str, Any]) -> str:
    return f"confidence {r['confidence']:.2f}: {r['why']}"


def propose(roles: list[dict[str, Any]], df: pd.DataFrame, base: dict[str, Any]) -> Proposal:
    """An ``input:`` section (YAML-able) from inferred roles: columns, event_map, timestamp unit or
    parts (a date column + an offset column), defaults; with a note per role and the review list."""
    cfg = dict(base)
    columns: dict[str, str] = {}
    notes: dict[str, str] = {}
    warnings: list[str] = []
    by_role = {r["role"]: r for r in roles if r["role"]}
    for r in roles:
        role = r["role"]
        if role in (None, "email", "phone", "offset", "sequence"):
            continue
        columns[r["column"]] = role
        notes[f"columns.{r['column']}"] = _note(r)
        if role == "timestamp":
            _, unit = _ts_rate(df[r["column"]].dropna().astype(str).head(2000))
            if unit and unit.startswith("%"):
                cfg["timestamp_format"] = unit
            elif unit:
                cfg["timestamp_unit"] = unit
        if role == "event_type":
            vals = df[r["column"]].dropna().astype(str).str.strip().unique()[:50]
            cfg["event_map"] = {
                v: EVENT_WORDS[v.lower()]
                for v in vals
                if v.lower() in EVENT_WORDS and EVENT_WORDS[v.lower()] != v
            }
    cfg["columns"] = columns  # filled in place below: columns come before timestamp / defaults in the YAML
    _null_ids(roles, by_role, columns, notes, warnings, cfg)
    _order_columns(by_role, columns, notes, cfg, warnings)
    kinds = set(columns.values())
    table = "events" if {"user_id", "item_id"} <= kinds else ("items" if "item_id" in kinds else "events")
    unfilled: list[str] = []
    if table == "events" and "event_type" not in kinds and "event_type" not in cfg.get("defaults", {}):
        cfg["defaults"] = {**cfg.get("defaults", {}), "event_type": "view"}
        named = [r for r in roles if r.get("event_named") and r["role"] != "event_type"]
        why = "no column of event names" + "".join(
            f"; {r['column']!r} is named like one but holds {', '.join(r['sample_values'][:3])}"
            for r in named
        )
        notes["defaults.event_type"] = f"assumed: {why}; set buy for a purchases log"
        unfilled.append(f"event_type ({why}: every row proposed as a view, never guessed as buy)")
        warnings.append(
            f"event_type: {why}; input.defaults.event_type is view - set it if these are not views"
        )
    cfg["table"] = table
    if table == "events" and "user_id" in kinds and "item_id" not in kinds:
        # a log of users' events without products (e.g. purchases: customer, date, quantity, amount): kept
        # whole under one constant item instead of every row quarantined as missing_key:item_id
        cfg["defaults"] = {**cfg.get("defaults", {}), "item_id": NO_ITEM}
        notes["defaults.item_id"] = "assumed: no column of item ids; every event gets this one item"
        warnings.append(
            f"item_id: no column of item ids; input.defaults.item_id is {NO_ITEM!r} for every row "
            "(user-level models only) - map a column with input.columns.<source>=item_id if there is one"
        )
    if table == "events" and "user_id" in kinds and "timestamp" not in kinds and "timestamp" not in cfg:
        # no time column at all (e.g. 'user item' lines in time order): file order per user is the only clock
        cfg["ordinal_timestamps"] = True
        notes["ordinal_timestamps"] = "no time column: each user's rows are taken to be in time order"
        warnings.append(
            "timestamp: no time column; input.ordinal_timestamps orders each user's events by file order "
            "(dates and durations meaningless) - map a column with input.columns.<source>=timestamp if there is one"
        )
    for role in KEYS[table]:
        if (
            role not in kinds
            and role not in cfg.get("defaults", {})
            and not (role == "timestamp" and ("timestamp" in cfg or cfg.get("ordinal_timestamps")))
        ):
            const = f", or give a constant with input.defaults.{role}" if role != "timestamp" else ""
            unfilled.append(f"{role} (no column fits; map one with input.columns.<source>={role}{const})")
    low = [
        f"{r['column']} -> {r['role']}: confidence {r['confidence']:.2f} < {REVIEW_BELOW} ({r['why']})"
        for r in roles
        if r["role"] and r["confidence"] < REVIEW_BELOW
    ]
    review = low + [f"could not fill {u}" for u in unfilled if not u.startswith("event_type")] + warnings
    return Proposal(cfg, roles, notes, unfilled, warnings, review)


def _null_ids(
    roles: list[dict[str, Any]],
    by_role: dict[str, dict[str, Any]],
    columns: dict[str, str],
    notes: dict[str, str],
    warnings: list[str],
    cfg: dict[str, Any],
) -> None:
    """Id columns full of null tokens: reported with their share. The rows of a user column mostly null
    next to a complete session (else order) column are kept as anonymous sessions / guest orders
    (``input.anonymous_key``): known users stay themselves, flagged for review."""
    for role in ("user_id", "item_id"):
        r = by_role.get(role)
        if r is None or r["null_share"] <= ID_NULL_BOUND:
            continue
        key = next(
            (
                k
                for k in ("session_id", "order_id")
                if role == "user_id" and k in by_role and by_role[k]["null_share"] <= ID_NULL_BOUND
            ),
            None,
        )
        share = f"{r['null_share']:.0%} null ({_tokens(r)})"
        if key is not None:
            cfg["anonymous_key"] = key
            kept = f"those rows are kept as the pseudo-user '{key}:<{by_role[key]['column']}>'"
            notes[f"columns.{r['column']}"] += f"; {share}: {kept} (input.anonymous_key)"
            notes["anonymous_key"] = f"{r['column']!r} is {share}; {by_role[key]['column']!r} is complete"
            warnings.append(
                f"{role} column {r['column']!r}: {share}; {kept} (input.anonymous_key: {key}), "
                "remove anonymous_key to quarantine them instead"
            )
            continue
        warnings.append(
            f"{role} column {r['column']!r}: {share}; those rows have no "
            f"{role.removesuffix('_id')} and are not counted as one"
        )
        notes[f"columns.{r['column']}"] += f"; {share}"


def _order_columns(
    by_role: dict[str, dict[str, Any]],
    columns: dict[str, str],
    notes: dict[str, str],
    cfg: dict[str, Any],
    warnings: list[str],
) -> None:
    """An offset / sequence column: a part of the timestamp with a date column, else the timestamp."""
    r = by_role.get("offset") or by_role.get("sequence")
    if r is None:
        return
    seconds = r["role"] == "sequence" or bool(re.search(r"(sec|_s$)", _norm(r["column"])))
    key = "offset_s" if seconds else "offset_ms"
    ts = by_role.get("timestamp")
    if ts is not None and ts["column"] in columns and "timestamp_unit" not in cfg:  # a date, not an epoch
        del columns[ts["column"]]
        notes.pop(f"columns.{ts['column']}", None)
        cfg["timestamp"] = {"date": ts["column"], key: r["column"]}
        if "timestamp_format" in cfg:
            cfg["timestamp"]["format"] = cfg.pop("timestamp_format")
        notes["timestamp"] = (
            f"date {ts['column']!r} ({_note(ts)}) + {key} {r['column']!r} ({_note(r)}): the order within a day is kept"
        )
    elif ts is None:
        columns[r["column"]] = "timestamp"
        cfg["timestamp_unit"] = "s" if seconds else "ms"
        notes[f"columns.{r['column']}"] = _note(r) + "; no date column: times count from 1970-01-01"
        warnings.append(
            f"timestamp: no date column; {r['role']} column {r['column']!r} is the timestamp in "
            f"{cfg['timestamp_unit']} from 1970-01-01 (order kept, dates and durations meaningless)"
        )
    else:
        notes[f"columns.{ts['column']}"] += (
            f"; {r['role']} column {r['column']!r} unmapped (epoch times are exact)"
        )


def propose_input(roles: list[dict[str, Any]], df: pd.DataFrame, base: dict[str, Any]) -> dict[str, Any]:
    """The ``input:`` section of ``propose`` alone."""
    return propose(roles, df, base).input


# --------------------------------------------------------------------------- sequence lines
ID_TOKEN = re.compile(r"[\w-]+")  # no '.', ':', '/': decimals, times and dates are not ids
SEQUENCE_LAYOUT = {
    "delimiter": WHITESPACE,
    "max_fields": 2,
    "header": False,
    "column_names": ["user", "items"],
}
SEQUENCE_MIN_SHARE = 0.95  # of sampled lines with >= 2 fields, and of tokens that are ids


def sequence_line_evidence(text: str) -> dict[str, Any] | None:
    """Whether ``text`` (a file's head) holds ``user item1 item2 ...`` lines: split on whitespace with a
    ragged field count (``sniff_dialect``'s consistency below 0.9), at least two fields per line and
    every token an id. Returns {confidence, why} or None."""
    found = sniff_dialect(text, " ")
    if found["delimiter"] != WHITESPACE or found["header"] or found["consistency"] >= 0.9:
        return None
    lines = [x.split() for x in text.splitlines() if x.strip()][:1000]
    if len(lines) > 1 and not text.endswith("\n"):
        lines = lines[:-1]  # cut by the sample's end
    tokens = [t for x in lines for t in x]
    if not lines or not tokens:
        return None
    two = sum(len(x) >= 2 for x in lines) / len(lines)
    ids = sum(bool(ID_TOKEN.fullmatch(t)) for t in tokens) / len(tokens)
    if two < SEQUENCE_MIN_SHARE or ids < SEQUENCE_MIN_SHARE:
        return None
    firsts = [x[0] for x in lines]
    once = len(set(firsts)) / len(firsts)
    sizes = [len(x) - 1 for x in lines]
    confidence = 0.9 if min(two, ids) == 1.0 and once >= SEQUENCE_MIN_SHARE else 0.6
    why = (
        f"{len(lines)} sampled lines of whitespace-separated ids with {min(sizes)}-{max(sizes)} items "
        f"(ragged: the most common field count on {found['consistency']:.0%} of lines); "
        f"{once:.0%} of first ids distinct: one line per user, its items in time order"
    )
    return {"confidence": confidence, "why": why}


def propose_sequence_lines(
    df: pd.DataFrame, base: dict[str, Any], evidence: dict[str, Any], null_values: tuple[str, ...] | list[str]
) -> Proposal:
    """The proposal for sequence lines read with SEQUENCE_LAYOUT + ``item_list: items`` (``df``: the
    sample's exploded raw rows: user, item_id, timestamp): user -> user_id, items -> item_list,
    timestamps ordinal per user, event_type a defaulted view (as ``propose`` does without event names)."""
    roles = infer_roles(df[["user", "item_id"]], null_values)
    for r, role in zip(roles, ("user_id", "item_id")):
        r.update(role=role, confidence=evidence["confidence"], why=evidence["why"])
    proposal = propose(roles, df, base)
    cfg = proposal.input
    cfg["columns"].pop("item_id", None)
    proposal.notes.pop("columns.item_id", None)
    proposal.notes["columns.user"] = f"confidence {evidence['confidence']:.2f}: the first id of each line"
    proposal.notes["max_fields"] = "user, then the rest of the line (its items)"
    proposal.notes["item_list"] = (
        f"confidence {evidence['confidence']:.2f}: {evidence['why']}; one event per item, timestamps "
        "ordinal per user (1970-01-01 + k s)"
    )
    ordinal = "timestamp: none in the file; ordinal per user from 1970-01-01 (order kept, dates meaningless)"
    proposal.unfilled = [u for u in proposal.unfilled if not u.startswith("timestamp")]
    proposal.review = [u for u in proposal.review if not u.startswith("could not fill timestamp")] + [ordinal]
    proposal.warnings.append(ordinal)
    return proposal


def adapter_yaml(proposal: Proposal, header: str) -> str:
    """``adapter.yaml``: the input section with a YAML comment on every proposed role (confidence,
    why), the roles it could not fill and the verdict's reasons as comment lines above it."""
    lines = [
        f"# {header}",
        f"# verdict: {proposal.verdict} (a role below confidence {REVIEW_BELOW} or a "
        "required role unfilled needs review)",
    ]
    lines += [f"# could not fill: {u}" for u in proposal.unfilled]
    lines += [f"# review: {w}" for w in proposal.review if not w.startswith("could not fill")]
    unmapped = [r for r in proposal.roles if r["role"] is None or r["role"] in ("email", "phone")]
    lines += [f"# unmapped: {r['column']} ({r['why']})" for r in unmapped]
    section: list[str] = []
    for line in yaml.safe_dump(
        {"input": proposal.input}, sort_keys=False, allow_unicode=True, width=10**6
    ).splitlines():
        indent = len(line) - len(line.lstrip(" "))
        key = line.strip().split(":", 1)[0]
        section = section[: indent // 2] + [key]
        if indent == 4 and section[1] in ("columns", "defaults"):
            parsed = yaml.safe_load(line.strip())
            key = next(iter(parsed)) if isinstance(parsed, dict) else key
        note = proposal.notes.get(".".join([*section[1:-1], str(key)]))
        lines.append(f"{line}  # {_one_line(note)}" if note else line)
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# Ground truth for the evaluation on the shared sets: file (relative), reader options, true roles.
SHARED_TRUTH: list[dict[str, Any]] = [
    {
        "file": "taobao-user-behavior/UserBehavior.csv",
        "format": "csv",
        "header": False,
        "truth": ["user_id", "item_id", "category", "event_type", "timestamp"],
    },
    {
        "file": "online-retail/online_retail_sample.xlsx",
        "format": "excel",
        "header": True,
        "truth": ["order_id", "item_id", "title", "quantity", "timestamp", "price", "user_id", "country"],
    },
    {"file": "amazon-games-6k/Games-6k.item", "format": "tsv", "header": True, "truth": ["item_id", "title"]},
    {
        "file": "amazon-video-games/Video.txt",
        "format": "text",
        "header": False,
        "truth": ["user_id", "item_id"],
    },
]


def evaluate_shared(data_root: str, rows: int = 5000) -> dict[str, Any]:
    """Columns mapped right on the shared sets (no preset, no names for header-less files)."""
    per, right, total = {}, 0, 0
    for case in SHARED_TRUTH:
        path = Path(data_root) / case["file"]
        data = path.read_bytes()
        opts = {
            "header": case["header"],
            "nrows": rows,
            "delimiter": {"csv": ",", "tsv": "\t", "text": " "}.get(case["format"], ","),
        }
        if not case["header"]:
            opts["column_names"] = [f"col{i}" for i in range(len(case["truth"]))]
        if case["format"] == "excel":
            table = parse_excel(data, str(path), opts)
        else:
            if case["format"] != "excel":
                data = b"\n".join(io.BytesIO(data).read().split(b"\n")[: rows + 1])
            table = parse_delimited(data, str(path), opts)
        df = table.slice(0, rows).drop_columns(["source_file", "source_row", "_error", "_raw"]).to_pandas()
        roles = infer_roles(df)
        got = [r["role"] for r in roles]
        ok = sum(g == t for g, t in zip(got, case["truth"]))
        per[case["file"]] = {
            "right": ok,
            "columns": len(case["truth"]),
            "proposed": got,
            "truth": case["truth"],
        }
        right += ok
        total += len(case["truth"])
    return {"right": right, "columns": total, "accuracy": round(right / total, 3), "per_file": per}
