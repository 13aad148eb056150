"""Canonical tables (docs/DATA.md): column names, Arrow types, and conversion of raw string columns.

Every adapter ends in ``to_canonical``: raw columns (strings, as read) are renamed by the adapter's
mapping and converted to the canonical Arrow types. A value that does not convert becomes null and
the row gets a reason (``bad_type:price``, ``bad_timestamp``), so the clean job can quarantine it
instead of losing it.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

EVENTS = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("timestamp", TS),
        ("session_id", pa.string()),
        ("query", pa.string()),
        ("position", pa.int32()),
        ("price", pa.float64()),
        ("quantity", pa.int32()),
        ("country", pa.string()),
        ("category", pa.string()),
        ("order_id", pa.string()),
        ("source_row", pa.int64()),
    ]
)
EVENTS_REQUIRED = ("user_id", "item_id", "event_type", "timestamp")

ITEMS = pa.schema(
    [
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("category", pa.string()),
        ("brand", pa.string()),
        ("price", pa.float64()),
        ("description", pa.string()),
    ]
)
USERS = pa.schema([("user_id", pa.string()), ("country", pa.string()), ("signup_ts", TS)])
PAIRS = pa.schema(
    [
        ("left", pa.string()),
        ("right", pa.string()),
        ("label", pa.int32()),
        ("left_id", pa.string()),
        ("right_id", pa.string()),
        ("split", pa.string()),
    ]
)
CANDIDATES = pa.schema([("user_id", pa.string()), ("items", pa.list_(pa.string())), ("source", pa.string())])
SEQUENCES = pa.schema(
    [("user_id", pa.string()), ("items", pa.list_(pa.string())), ("timestamps", pa.list_(TS))]
)

TABLES: dict[str, pa.Schema] = {
    "events": EVENTS,
    "items": ITEMS,
    "users": USERS,
    "pairs": PAIRS,
    "candidates": CANDIDATES,
    "sequences": SEQUENCES,
}
KEYS: dict[str, tuple[str, ...]] = {
    "events": EVENTS_REQUIRED,
    "items": ("item_id",),
    "users": ("user_id",),
    "pairs": ("left", "right", "label"),
    "candidates": ("user_id", "items"),
    "sequences": ("user_id", "items"),
}

# Canonical event vocabulary; adapters map source names onto it (input.event_map).
EVENT_TYPES = ("impression", "view", "click", "cart", "fav", "buy", "return", "rate", "search")

# Columns the clean job adds to quarantined rows.
REASON = "reason"
RAW = "raw"


def table_schema(name: str) -> pa.Schema:
    if name not in TABLES:
        raise ValueError(f"unknown canonical table {name!r}; use one of {', '.join(TABLES)}")
    return TABLES[name]


def empty(name: str) -> pa.Table:
    return table_schema(name).empty_table()
