"""Column role inference: propose a mapping of an unknown table's columns to canonical roles.

Each column is scored from its name (synonym patterns) and from a sample of its values (parse rate
as a timestamp, cardinality, numeric shape, text length, PII patterns); the best role per column
wins with a confidence in [0, 1]. ``propose_input`` turns the roles into an ``input:`` section
(columns, event_map, timestamp unit) that the clean job accepts.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.data.pii import EMAIL, PHONE
from recsys.data.readers import parse_delimited, parse_excel

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


def _ts_rate(s: pd.Series) -> tuple[float, str | None]:
    """Share of values that read as a plausible timestamp (2000-2040), and the epoch unit if numeric."""
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().mean() > 0.95:
        for unit, lo, hi in (("s", 9.4e8, 2.2e9), ("ms", 9.4e11, 2.2e12), ("us", 9.4e14, 2.2e15)):
            rate = num.between(lo, hi).mean()
            if rate > 0.9:
                return float(rate), unit
        return 0.0, None
    if s.str.len().median() < 6:
        return 0.0, None
    parsed = pd.to_datetime(s, errors="coerce", format="mixed", utc=True)
    ok = parsed.notna() & (parsed.dt.year.between(1995, 2040))
    return float(ok.mean()), None


def column_profile(name: str, s: pd.Series) -> dict[str, Any]:
    s = s.dropna().astype(str).str.strip()
    s = s[s != ""]
    n = len(s)
    if n == 0:
        return {"name": name, "n": 0}
    num = pd.to_numeric(s, errors="coerce")
    numeric = float(num.notna().mean())
    return {
        "name": name,
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
        "values": s.value_counts().head(30).index.tolist(),
        "series": s,
    }


def score_roles(p: dict[str, Any]) -> dict[str, float]:
    """Role -> score from name and values."""
    name = re.sub(r":(token|token_seq|float|float_seq)$", "", p["name"].lower())  # RecBole atomic-file types
    name = re.sub(r"[^a-z0-9]+", "_", name).strip("_")
    scores: dict[str, float] = {}
    for role, pat in NAME_PATTERNS.items():
        if re.search(pat, name):
            scores[role] = 0.6
    if p.get("n", 0) == 0:
        return scores
    s = p["series"]
    ts_rate, _ = _ts_rate(s.head(2000))
    if ts_rate > 0.9:
        scores["timestamp"] = scores.get("timestamp", 0) + 0.5 * ts_rate
    vals = [str(v).lower() for v in p["values"]]
    if p["distinct"] <= 30 and p["numeric"] < 0.5:
        ev = sum(v in EVENT_WORDS for v in vals) / max(len(vals), 1)
        if ev > 0.5:
            scores["event_type"] = scores.get("event_type", 0) + 0.6 * ev
    if p["numeric"] < 0.5 and sum(bool(COUNTRY_HINT.match(v)) for v in vals) >= max(1, len(vals) // 3):
        scores["country"] = scores.get("country", 0) + 0.5
    if p["email"] > 0.5:
        scores["email"] = scores.get("email", 0) + 0.6
    if p["phone"] > 0.5 and p["numeric"] < 0.9:
        scores["phone"] = scores.get("phone", 0) + 0.5
    if p["numeric"] > 0.95 and p["integer"] < 0.9 and ts_rate < 0.5:
        scores["price"] = scores.get("price", 0) + 0.4
    if (
        p["numeric"] > 0.95
        and p["integer"] > 0.99
        and p["distinct"] <= 200
        and ts_rate < 0.5
        and p["distinct_ratio"] < 0.05
    ):
        scores["quantity"] = scores.get("quantity", 0) + 0.25
    if p["mean_len"] > 15 and p["spaces"] > 0.5:
        scores["title"] = scores.get("title", 0) + 0.5
    if (p["numeric"] > 0.95 and p["integer"] > 0.99 and ts_rate < 0.5) or (
        p["spaces"] < 0.05 and p["mean_len"] < 20
    ):
        scores["_id"] = 0.35  # an identifier of some kind: user, item, category, order
    return scores


def infer_roles(df: pd.DataFrame) -> list[dict[str, Any]]:
    """One proposal per column: {column, role (None = unmapped), confidence, candidates}."""
    profiles = [column_profile(str(c), df[c]) for c in df.columns]
    scored = [score_roles(p) for p in profiles]
    out: list[dict[str, Any]] = [{"column": p["name"], "role": None, "confidence": 0.0} for p in profiles]
    taken: set[str] = set()
    # named / value-evident roles first, highest score first; each role used once
    pairs = sorted(
        ((sc, i, r) for i, s in enumerate(scored) for r, sc in s.items() if r != "_id"), reverse=True
    )
    for sc, i, role in pairs:
        if out[i]["role"] is None and role not in taken and sc >= 0.4:
            out[i].update(role=role, confidence=round(min(sc, 1.0), 2))
            taken.add(role)
    # unnamed identifier columns in order: user, item, category (the usual log layout)
    for i, s in enumerate(scored):
        if out[i]["role"] is None and "_id" in s:
            free = next((r for r in ("user_id", "item_id", "category") if r not in taken), None)
            if free:
                out[i].update(role=free, confidence=0.4 if free != "category" else 0.3)
                taken.add(free)
    for o, s in zip(out, scored):
        o["candidates"] = {k: round(v, 2) for k, v in sorted(s.items(), key=lambda kv: -kv[1]) if k != "_id"}
    return out


def propose_input(roles: list[dict[str, Any]], df: pd.DataFrame, base: dict[str, Any]) -> dict[str, Any]:
    """An ``input:`` section (YAML-able) from inferred roles: columns, event_map, timestamp unit."""
    columns = {}
    cfg = dict(base)
    for r in roles:
        role = r["role"]
        if role in (None, "email", "phone"):
            continue
        canonical = "title" if role == "title" else role
        columns[r["column"]] = canonical
        if role == "timestamp":
            _, unit = _ts_rate(df[r["column"]].dropna().astype(str).head(2000))
            if unit:
                cfg["timestamp_unit"] = unit
        if role == "event_type":
            vals = df[r["column"]].dropna().astype(str).str.strip().unique()[:50]
            cfg["event_map"] = {
                v: EVENT_WORDS[v.lower()]
                for v in vals
                if v.lower() in EVENT_WORDS and EVENT_WORDS[v.lower()] != v
            }
    cfg["columns"] = columns
    if "event_type" not in columns.values() and "user_id" in columns.values():
        cfg["defaults"] = {"event_type": "buy"}
    cfg["table"] = (
        "events"
        if {"user_id", "item_id"} <= set(columns.values())
        else ("items" if "item_id" in columns.values() else "events")
    )
    return cfg


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
