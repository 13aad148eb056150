"""The store as a Parquet table (one row per user / session): what the features job reads so batch
and online features agree. Columns: ``entity`` ("user" / "session"), ``id``, ``items``,
``event_types``, ``timestamps`` (time-ordered lists), ``queries`` (newest first), ``purchased``,
``carted``, ``country``, ``categories`` / ``brands`` (JSON ``{name: share}``, shares of the decayed
profile), ``price_lo``, ``price_mean``, ``price_hi``, ``last_event``."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recsys.online.store import EPOCH, EntityState, UserStateStore, price_band

TS = pa.timestamp("us", tz="UTC")
SNAPSHOT_SCHEMA = pa.schema(
    [
        ("entity", pa.string()),
        ("id", pa.string()),
        ("items", pa.list_(pa.string())),
        ("event_types", pa.list_(pa.string())),
        ("timestamps", pa.list_(TS)),
        ("queries", pa.list_(pa.string())),
        ("purchased", pa.list_(pa.string())),
        ("carted", pa.list_(pa.string())),
        ("country", pa.string()),
        ("categories", pa.string()),
        ("brands", pa.string()),
        ("price_lo", pa.float64()),
        ("price_mean", pa.float64()),
        ("price_hi", pa.float64()),
        ("last_event", TS),
    ]
)


def _ts(t: float) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=round(t * 1e6))


def _shares(pairs: tuple[tuple[str, float], ...]) -> str:
    total = sum(w for _, w in pairs)
    return json.dumps({k: round(w / total, 9) for k, w in pairs} if total > 0 else {}, sort_keys=True)


def snapshot_table(states: Iterable[EntityState]) -> pa.Table:
    rows = []
    for st in states:
        lo, mean, hi = price_band(st.price_moments)
        rows.append(
            {
                "entity": "user" if st.kind == "u" else "session",
                "id": st.id,
                "items": [i for _, _, i in st.events],
                "event_types": [e for _, e, _ in st.events],
                "timestamps": [_ts(t) for t, _, _ in st.events],
                "queries": list(st.queries),
                "purchased": list(st.purchased),
                "carted": list(st.carted),
                "country": st.country,
                "categories": _shares(st.categories),
                "brands": _shares(st.brands),
                "price_lo": lo,
                "price_mean": mean,
                "price_hi": hi,
                "last_event": _ts(st.last) if st.last is not None else None,
            }
        )
    rows.sort(key=lambda r: (r["entity"], r["id"]))
    return pa.Table.from_pylist(rows, schema=SNAPSHOT_SCHEMA)


async def export_snapshot(store: UserStateStore, path: str | Path) -> int:
    """Write every entity in the store to ``path`` (atomic rename); returns the rows written."""
    table = snapshot_table([st async for st in store.scan()])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return table.num_rows
