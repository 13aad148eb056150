"""Feedback -> canonical events Parquet, partitioned by hour (``hour=YYYY-MM-DDTHH/part-*.parquet``),
which the clean job reads like any other events source (plus the ``arm`` and ``request_id`` columns
that the ab-report job groups by)."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TS = pa.timestamp("us", tz="UTC")
FEEDBACK_SCHEMA = pa.schema(
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
        ("arm", pa.string()),
        ("request_id", pa.string()),
        ("policy_id", pa.string()),  # the serving policy of the impression (docs/CAUSAL.md)
        ("propensity", pa.float64()),  # its item-at-position propensity
    ]
)


def to_events(body: dict[str, Any], arm: str, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """A validated /feedback body -> canonical event rows (one per event)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    rows = []
    for ev in body["events"]:
        ts = ev.get("timestamp") or now
        if isinstance(ts, str):
            ts = dt.datetime.fromisoformat(ts)
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.timezone.utc)
        rows.append(
            {
                "user_id": body["user_id"],
                "item_id": ev["item_id"],
                "event_type": ev["event_type"],
                "timestamp": ts.astimezone(dt.timezone.utc),
                "session_id": body.get("session_id"),
                "query": body.get("query"),
                "position": ev.get("position"),
                "price": ev.get("price"),
                "quantity": ev.get("quantity"),
                "country": body.get("country"),
                "arm": arm,
                "request_id": body.get("request_id"),
                "policy_id": ev.get("policy_id"),
                "propensity": ev.get("propensity"),
            }
        )
    return rows


def write_partitioned(rows: list[dict[str, Any]], root: str | Path) -> list[str]:
    """Append ``rows`` as new files, one per hour partition (never rewrites existing files)."""
    if not rows:
        return []
    by_hour: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_hour.setdefault(r["timestamp"].strftime("%Y-%m-%dT%H"), []).append(r)
    written = []
    for hour, part in sorted(by_hour.items()):
        folder = Path(root) / f"hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        final = (
            folder / f"part-{dt.datetime.now(dt.timezone.utc):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}.parquet"
        )
        tmp = folder / f".{final.name}.tmp"
        pq.write_table(pa.Table.from_pylist(part, schema=FEEDBACK_SCHEMA), str(tmp))
        os.replace(tmp, final)  # readers never see a partial file
        written.append(str(final))
    return written


def read_feedback(root: str | Path) -> pa.Table:
    """All feedback events under ``root`` (hour partitions) as one table."""
    files = sorted(str(p) for p in Path(root).glob("hour=*/part-*.parquet"))
    if not files:
        return FEEDBACK_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(f, schema=FEEDBACK_SCHEMA) for f in files])
