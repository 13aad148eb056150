"""Named adapters for the public sets in ../shared/data (docs/DATA.md lists what each yields).

A preset says, per canonical table, which file(s) under ``input.path`` (the set's folder, or one of
its files) to read, with which reader options and column mapping, plus an optional row transform
(``post``: e.g. exploding RecBole histories) or a derivation (``distinct``: the items of
an events file). Any key set in the job's ``input`` section overrides the preset's value.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from recsys.data.readers import META, explode, ordinal_ts

ORDINAL_NOTE = (
    "no timestamps in the source: timestamp = 1970-01-01T00:00:00Z + k s, k = position in the user's history"
)


@dataclass(frozen=True)
class TableSource:
    """How one canonical table of a preset is read."""

    files: tuple[str, ...]  # globs relative to the preset folder (used when input.path is a folder)
    options: dict[str, Any] = field(default_factory=dict)  # InputConfig fields (format, columns, ...)
    post: str | None = None  # name of a function in this module: raw string table -> raw string table
    distinct: str | None = None  # key: keep one row per key (items/users derived from an events file)
    aggregate: dict[str, str] = field(default_factory=dict)  # column -> pyarrow aggregation for distinct


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    tables: dict[str, TableSource]
    aliases: tuple[str, ...] = ()
    notes: str = ""


# --------------------------------------------------------------------------- row transforms (workers)
def recbole_history(table: pa.Table) -> pa.Table:
    """RecBole ``user, item_id_list (space-separated), item_id`` -> one event per item, in order."""
    target = pc.fill_null(table["item_id"], "")
    joined = pc.binary_join_element_wise(pc.fill_null(table["history"], ""), target, " ")
    items = pc.split_pattern_regex(pc.utf8_trim_whitespace(joined), r"\s+")
    return explode(table, "user_id", items)


def user_item_lines(table: pa.Table) -> pa.Table:
    """``user item`` lines in time order -> events with ordinal timestamps."""
    ts = pa.array(ordinal_ts(table["user_id"].to_numpy(zero_copy_only=False)), pa.string())
    return table.append_column("timestamp", ts)


def candidate_lists(table: pa.Table) -> pa.Table:
    """``user \\t item item ...`` candidate files; ``source`` = the file's extension (pop, bpr, sasrec)."""
    src = pc.struct_field(pc.extract_regex(table["source_file"], r"\.(?P<s>[A-Za-z0-9_-]+)$"), "s")
    return table.append_column("source", src)


_DITTO = re.compile(r"COL (\S+) VAL ?")


def ditto_text(text: str | None) -> str | None:
    """``COL name VAL x COL price VAL 9.99`` -> ``name: x; price: 9.99`` (empty attributes dropped)."""
    if text is None:
        return None
    parts = _DITTO.split(text.strip())
    pairs = [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]
    return "; ".join(f"{k}: {v}" for k, v in pairs if v) or text.strip()


def ditto_pairs(table: pa.Table) -> pa.Table:
    """Ditto ``left \\t right \\t label`` lines -> readable texts, stable ids, split from the file name."""
    out = {}
    for side in ("left", "right"):
        texts = [ditto_text(t) for t in table[side].to_pylist()]
        out[side] = pa.array(texts, pa.string())
        out[f"{side}_id"] = pa.array(
            [hashlib.sha1(t.encode()).hexdigest()[:16] if t else None for t in texts], pa.string()
        )
    out["label"] = table["label"]
    out["split"] = pc.struct_field(pc.extract_regex(table["source_file"], r"(?P<s>[^/]+)\.txt$"), "s")
    for m in META:
        out[m] = table[m]
    return pa.table(out)


# --------------------------------------------------------------------------- the presets
SEQ_EVENTS = {"defaults": {"event_type": "rate"}, "timestamp_unit": "s"}

PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    for name in (preset.name, *preset.aliases):
        PRESETS[name] = preset
    return preset


register(
    Preset(
        "taobao-user-behavior",
        "Alibaba UserBehavior.csv: user,item,category,behavior(pv/cart/fav/buy),unix seconds; no header.",
        {
            "events": TableSource(
                ("UserBehavior*.csv",),
                {
                    "format": "csv",
                    "delimiter": ",",
                    "header": False,
                    "column_names": ["user_id", "item_id", "category_id", "behavior", "timestamp"],
                    "columns": {"category_id": "category", "behavior": "event_type"},
                    "event_map": {"pv": "view", "cart": "cart", "fav": "fav", "buy": "buy"},
                    "timestamp_unit": "s",
                },
            ),
            "items": TableSource(
                ("UserBehavior*.csv",),
                {
                    "format": "csv",
                    "delimiter": ",",
                    "header": False,
                    "column_names": ["user_id", "item_id", "category", "behavior", "timestamp"],
                },
                distinct="item_id",
            ),
        },
        aliases=("taobao", "userbehavior"),
    )
)

register(
    Preset(
        "online-retail",
        "UCI Online Retail (xlsx): InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, "
        "CustomerID, Country.",
        {
            "events": TableSource(
                ("*.xlsx",),
                {
                    "format": "excel",
                    "columns": {
                        "InvoiceNo": "order_id",
                        "StockCode": "item_id",
                        "Quantity": "quantity",
                        "InvoiceDate": "timestamp",
                        "UnitPrice": "price",
                        "CustomerID": "user_id",
                        "Country": "country",
                    },
                    "defaults": {"event_type": "buy"},
                    "timezone": "Europe/London",
                },
            ),
            "items": TableSource(
                ("*.xlsx",),
                {
                    "format": "excel",
                    "columns": {"StockCode": "item_id", "Description": "title", "UnitPrice": "price"},
                },
                distinct="item_id",
                aggregate={"price": "approximate_median"},
            ),
            "users": TableSource(
                ("*.xlsx",),
                {"format": "excel", "columns": {"CustomerID": "user_id", "Country": "country"}},
                distinct="user_id",
            ),
        },
        aliases=("uci-online-retail", "uci"),
        notes="C-prefixed InvoiceNo rows are cancellations (negative Quantity): "
        "the clean job links or quarantines them.",
    )
)

register(
    Preset(
        "amazon-games-6k",
        "LLMRank Games-6k RecBole atomic files: .test.inter histories, .item titles, .pop/.bpr/.sasrec candidates.",
        {
            "events": TableSource(
                ("*.test.inter",),
                {
                    "format": "tsv",
                    "delimiter": "\t",
                    "header": True,
                    "column_names": ["user_id", "history", "item_id"],
                    "quote_char": "",
                    **SEQ_EVENTS,
                },
                post="recbole_history",
            ),
            "items": TableSource(
                ("*.item",),
                {
                    "format": "tsv",
                    "delimiter": "\t",
                    "header": True,
                    "column_names": ["item_id", "title"],
                    "quote_char": "",
                },
            ),
            "candidates": TableSource(
                ("*.pop", "*.bpr", "*.sasrec"),
                {
                    "format": "tsv",
                    "delimiter": "\t",
                    "header": False,
                    "column_names": ["user_id", "items"],
                    "quote_char": "",
                },
                post="candidate_lists",
            ),
        },
        aliases=("games-6k", "llmrank-games-6k"),
        notes=ORDINAL_NOTE
        + ". events = test.inter history + its target (valid.inter is the same history minus one).",
    )
)

register(
    Preset(
        "amazon-video-games",
        "SASRec Video.txt: 'user item' lines in time order (ids only).",
        {
            "events": TableSource(
                ("*.txt",),
                {
                    "format": "text",
                    "delimiter": "whitespace",
                    "header": False,
                    "column_names": ["user_id", "item_id"],
                    **SEQ_EVENTS,
                },
                post="user_item_lines",
            )
        },
        aliases=("sasrec-video", "video"),
        notes=ORDINAL_NOTE,
    )
)

register(
    Preset(
        "amazon-beauty",
        "ICLRec Beauty.txt: one line per user, 'user item1 item2 ...' in time order (ids only).",
        {
            "events": TableSource(
                ("*.txt",),
                {
                    "format": "text",
                    "delimiter": "whitespace",
                    "max_fields": 2,
                    "header": False,
                    "column_names": ["user_id", "items"],
                    "item_list": "items",
                    **SEQ_EVENTS,
                },
            )
        },
        aliases=("iclrec-beauty", "beauty"),
        notes=ORDINAL_NOTE,
    )
)

register(
    Preset(
        "product-matching",
        "Ditto entity-matching pairs (abt-buy, amazon-google): 'COL a VAL x ... \\t COL a VAL y ... \\t 0/1'.",
        {
            "pairs": TableSource(
                ("*.txt",),
                {
                    "format": "tsv",
                    "delimiter": "\t",
                    "header": False,
                    "column_names": ["left", "right", "label"],
                    "quote_char": "",
                },
                post="ditto_pairs",
            )
        },
        aliases=("ditto", "abt-buy", "amazon-google"),
    )
)


register(
    Preset(
        "home-depot-search",
        "Home Depot search relevance (Kaggle 2016): products.csv (product_uid, product_title) is the catalog; "
        "judgments.csv (id, product_uid, search_term, relevance 1-3) is read by the search evaluate protocol.",
        {
            "items": TableSource(
                ("products.csv",),
                {
                    "format": "csv",
                    "delimiter": ",",
                    "header": True,
                    "columns": {"product_uid": "item_id", "product_title": "title"},
                },
            )
        },
        aliases=("home-depot",),
        notes="judged queries: search.judgments in configs/evaluate/home-depot-search.yaml (recsys.search.judged).",
    )
)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(
            f"input.preset {name!r} is unknown; {hint}presets: {', '.join(sorted({p.name for p in PRESETS.values()}))}"
        )
    return PRESETS[name]
