"""Raw string columns -> canonical Arrow types (pyarrow compute; pandas only for odd timestamps).

``to_canonical`` keeps every row: a value that does not convert becomes null and the row's ``_error``
names the column (``bad_type:price``, ``bad_timestamp``), so nothing is lost between read and clean.
Values equal (after trimming) to one of ``null_values`` are null first, so an id made of a null token
('NA', '-') is a missing id, not a user; ``formats`` give per-column parse formats; ``timestamp``
(date / time / offset parts) builds the timestamp from several source columns.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.data.readers import META
from recsys.data.schema import KEYS, TS, table_schema

ID_COLUMNS = {"user_id", "item_id", "session_id", "order_id", "left_id", "right_id"}
EPOCH_UNIT_LIMITS = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))


def _strip_empty(arr: pa.Array) -> pa.Array:
    arr = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)


def to_string(arr: pa.Array, is_id: bool) -> pa.Array:
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        out = arr.cast(pa.string())
        return _strip_empty(out) if is_id else out
    if pa.types.is_floating(arr.type) and is_id:  # 17850.0 (Excel / pandas ids) -> "17850"
        whole = pc.equal(pc.floor(arr), arr)
        ints = pc.cast(pc.if_else(whole, arr, None), pa.int64(), safe=False).cast(pa.string())
        return pc.if_else(whole, ints, arr.cast(pa.string()))
    if pa.types.is_null(arr.type):
        return arr.cast(pa.string())
    return arr.cast(pa.string())


def to_number(arr: pa.Array, target: pa.DataType, fmt: str | None = None) -> tuple[pa.Array, pa.Array]:
    """(converted, failed mask): failed = a non-null source value that is not a number of that type.

    fmt: None = '1234.5' (and '1,234.5' thousands), 'plain' = only '1234.5', 'decimal_comma' = '1.234,5'."""
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = _strip_empty(arr.cast(pa.string()))
        text = arr
        if fmt == "decimal_comma":
            text = pc.replace_substring(pc.replace_substring(arr, ".", ""), ",", ".")
        try:
            as_float = pc.cast(text, pa.float64())
        except pa.ArrowInvalid:
            parse = _float_or_none if fmt is None else _plain_float
            as_float = pa.array([parse(v) for v in text.to_pylist()], pa.float64())
    elif pa.types.is_null(arr.type):
        return pa.nulls(len(arr), target), pa.array(np.zeros(len(arr), bool))
    else:
        as_float = pc.cast(arr, pa.float64(), safe=False)
    bad = pc.and_(pc.is_valid(arr), pc.is_null(as_float, nan_is_null=True))
    if pa.types.is_integer(target):
        info = np.iinfo(target.to_pandas_dtype())
        ok = pc.and_kleene(
            pc.equal(pc.floor(as_float), as_float),
            pc.and_kleene(pc.greater_equal(as_float, info.min), pc.less_equal(as_float, info.max)),
        )
        ok = pc.fill_null(ok, False)
        bad = pc.or_(bad, pc.and_(pc.is_valid(as_float), pc.invert(ok)))
        return pc.cast(pc.if_else(ok, as_float, None), target, safe=False), bad
    return as_float, bad


def _float_or_none(v: str | None) -> float | None:
    if v is None:
        return None
    try:
        f = float(v.replace(",", "")) if v.count(",") and v.count(".") <= 1 else float(v)
    except ValueError:
        return None
    return None if np.isnan(f) else f


def _plain_float(v: str | None) -> float | None:
    try:
        f = float(v) if v is not None else None
    except ValueError:
        return None
    return None if f is None or np.isnan(f) else f


def null_tokens(arr: pa.Array, tokens: list[str]) -> pa.Array:
    """String values equal to a token after trimming spaces become null (others are kept as they are)."""
    if not tokens or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return arr
    hit = pc.is_in(pc.utf8_trim_whitespace(arr), value_set=pa.array(tokens, arr.type))
    return pc.if_else(hit, pa.scalar(None, arr.type), arr)


def composite_timestamp(
    batch: pa.Table, parts: dict[str, Any], fmt: str | None, unit: str | None, tz: str, tokens: list[str]
) -> tuple[pa.Array, pa.Array]:
    """(timestamp, failed mask) from ``parts`` = {date, time, offset_ms, offset_s, format}: date (+ ' ' +
    time) parsed as a timestamp column, plus the offset. A row whose present parts do not all parse
    fails; a missing date gives a null timestamp; a missing offset or time adds nothing."""
    names = [c for c in batch.column_names if c not in META]
    for key in ("date", "time", "offset_ms", "offset_s"):
        col = parts.get(key)
        if col and col not in batch.column_names:
            raise ValueError(
                f"input.timestamp.{key}: column {col!r} is not in the source columns {names}; name one of them"
            )

    def column(name: str) -> pa.Array:
        arr = batch[name]
        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        return null_tokens(arr.cast(pa.string()), tokens)

    text = column(parts["date"])
    if parts.get("time"):
        text = pc.binary_join_element_wise(text, column(parts["time"]), " ", null_handling="skip")
    ts, bad = to_timestamp(text, parts.get("format") or fmt, unit, tz)
    offset_col, scale = (
        (parts.get("offset_ms"), 1e3) if parts.get("offset_ms") else (parts.get("offset_s"), 1e6)
    )
    if offset_col:
        offset, bad_offset = to_number(column(offset_col), pa.float64(), "plain")
        us = pc.cast(pc.round(pc.multiply(offset, scale)), pa.int64())
        total = pc.add(pc.cast(ts, pa.int64()), pc.fill_null(us, 0))
        bad = pc.or_(bad, pc.and_(bad_offset, pc.is_valid(total)))
        ts = pc.cast(pc.if_else(bad_offset, pa.scalar(None, pa.int64()), total), TS)
    return ts, bad


def to_timestamp(arr: pa.Array, fmt: str | None, unit: str | None, tz: str) -> tuple[pa.Array, pa.Array]:
    """(timestamp[us, UTC], failed mask). Numbers are epochs (unit given or inferred); strings use
    ``fmt`` or ISO 8601 (then pandas' mixed parser for what remains); naive values are in ``tz``."""
    n = len(arr)
    if pa.types.is_timestamp(arr.type):
        out = arr if arr.type.tz else pc.assume_timezone(arr, tz)
        return out.cast(TS), pa.array(np.zeros(n, bool))
    if pa.types.is_null(arr.type):
        return pa.nulls(n, TS), pa.array(np.zeros(n, bool))
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        return _epoch(pc.cast(arr, pa.float64()), unit), pa.array(np.zeros(n, bool))
    arr = _strip_empty(arr.cast(pa.string()))
    if fmt:
        parsed = pc.strptime(arr, format=fmt, unit="us", error_is_null=True)
        if parsed.type.tz is None:
            parsed = pc.assume_timezone(parsed, tz, ambiguous="earliest", nonexistent="earliest")
        out = parsed.cast(TS)
    else:
        try:
            nums = pc.cast(arr, pa.float64())
            out = _epoch(nums, unit)
        except pa.ArrowInvalid:
            out = _parse_text_ts(arr, tz)
    bad = pc.and_(pc.is_valid(arr), pc.is_null(out))
    return out, bad


def _epoch(nums: pa.Array, unit: str | None) -> pa.Array:
    if unit is None:
        med = pc.approximate_median(pc.abs(nums)).as_py()
        unit = next((u for limit, u in EPOCH_UNIT_LIMITS if (med or 0) < limit), "ns")
    scale = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}[unit]
    us = pc.multiply(nums, scale)
    ok = pc.and_kleene(pc.less(pc.abs(us), 9e18), pc.is_finite(us))
    return pc.cast(pc.cast(pc.if_else(ok, us, None), pa.int64(), safe=False), TS)


def _parse_text_ts(arr: pa.Array, tz: str) -> pa.Array:
    s = pd.Series(arr.to_numpy(zero_copy_only=False), dtype=object)
    has_offset = s.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True, na=False)
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us, UTC]")
    for mask, fmt in ((has_offset, "ISO8601"), (~has_offset, "ISO8601")):
        part = s[mask & s.notna()]
        if part.empty:
            continue
        parsed = pd.to_datetime(part, errors="coerce", format=fmt, utc=bool(mask is has_offset))
        left = parsed.isna()
        if left.any():  # e.g. "12/1/2010 8:26", "1 Dec 2010": pandas' per-value parser
            parsed = parsed.astype(object)
            parsed[left] = pd.to_datetime(
                part[left], errors="coerce", format="mixed", utc=bool(mask is has_offset)
            )
            parsed = pd.to_datetime(parsed, utc=bool(mask is has_offset))
        if mask is not has_offset:
            parsed = (
                parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
                if parsed.dt.tz is None
                else parsed
            )
        out[mask & s.notna()] = parsed.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    return pa.array(out, type=TS, from_pandas=True)


def to_list(arr: pa.Array) -> pa.Array:
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        return arr.cast(pa.list_(pa.string()))
    return pc.split_pattern_regex(_strip_empty(arr.cast(pa.string())), r"[\s,]+")


def to_canonical(batch: pa.Table, spec: dict[str, Any]) -> pa.Table:
    """Rename, map events, fill defaults and convert ``batch`` to the canonical table ``spec['table']``.

    Output columns: the canonical columns present (or defaulted), extras if ``keep_extra``, then
    ``source_file``, ``source_row``, ``_error``, ``_raw`` (null where the reader had nothing to say).
    """
    schema = table_schema(spec["table"])
    mapping: dict[str, str] = spec.get("columns") or {}
    tokens = list(spec.get("null_values") or [])
    formats: dict[str, str] = spec.get("formats") or {}
    ts_format = formats.get("timestamp") or spec.get("timestamp_format")
    n = batch.num_rows
    cols: dict[str, pa.Array] = {}
    meta = {m: batch[m] for m in META if m in batch.column_names}
    parts = spec.get("timestamp")
    ts_bad = None
    if parts:
        cols["timestamp"], ts_bad = composite_timestamp(
            batch, parts, ts_format, spec.get("timestamp_unit"), spec.get("timezone", "UTC"), tokens
        )
    for name in batch.column_names:
        if name in META:
            continue
        target = mapping.get(name, name)
        arr = batch[name].combine_chunks() if isinstance(batch[name], pa.ChunkedArray) else batch[name]
        if target in schema.names and target not in cols:
            cols[target] = null_tokens(arr, tokens)
        elif spec.get("keep_extra") and target not in cols:
            cols[target] = to_string(null_tokens(arr, tokens), False)
    for name, value in (spec.get("defaults") or {}).items():
        if name not in cols:
            typ = schema.field(name).type if name in schema.names else pa.string()
            cols[name] = pa.array([value] * n).cast(typ if not pa.types.is_timestamp(typ) else pa.string())
    error = meta.get("_error", pa.nulls(n, pa.string()))
    error = error.combine_chunks() if isinstance(error, pa.ChunkedArray) else error
    out: dict[str, pa.Array] = {}
    for field in schema:
        if field.name not in cols:
            if field.name == "source_row" and "source_row" in meta:
                out["source_row"] = meta["source_row"]
            continue
        arr = cols[field.name]
        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        bad = None
        if pa.types.is_string(field.type):
            conv = to_string(arr, field.name in ID_COLUMNS)
            if field.name == "event_type":
                conv = _map_events(conv, spec.get("event_map") or {})
        elif pa.types.is_timestamp(field.type):
            conv, bad = to_timestamp(arr, ts_format, spec.get("timestamp_unit"), spec.get("timezone", "UTC"))
            if field.name == "timestamp" and ts_bad is not None:
                bad = ts_bad
        elif pa.types.is_list(field.type):
            conv = to_list(arr)
            if pa.types.is_timestamp(field.type.value_type):
                conv = arr.cast(field.type)
        else:
            conv, bad = to_number(arr, field.type, formats.get(field.name))
        if bad is not None:
            reason = "bad_timestamp" if pa.types.is_timestamp(field.type) else f"bad_type:{field.name}"
            error = pc.if_else(pc.and_(bad, pc.is_null(error)), pa.scalar(reason), error)
        out[field.name] = conv
    for name in cols:
        if name not in out and spec.get("keep_extra"):
            out[name] = cols[name]
    anonymous = spec.get("anonymous_key")
    if anonymous and "user_id" in out and anonymous in out:
        out["user_id"] = anonymous_users(out["user_id"], out[anonymous], anonymous)
    out["source_file"] = meta.get("source_file", pa.nulls(n, pa.string()))
    if "source_row" not in out:
        out["source_row"] = meta.get("source_row", pa.nulls(n, pa.int64()))
    out["_error"] = error
    out["_raw"] = meta.get("_raw", pa.nulls(n, pa.string()))
    return pa.table(out)


def anonymous_users(user: pa.Array, key: pa.Array, name: str) -> pa.Array:
    """Null user ids where ``key`` (a session or order id) is set become ``'<name>:<key>'``: the rows of an
    anonymous session or a guest order stay one pseudo-user's events instead of missing_key:user_id."""
    pseudo = pc.binary_join_element_wise(pa.scalar(f"{name}:"), key.cast(pa.string()), "")
    return pc.if_else(pc.and_(pc.is_null(user), pc.is_valid(key)), pseudo, user)


def _map_events(arr: pa.Array, event_map: dict[str, str]) -> pa.Array:
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
    if not event_map:
        return lowered
    keys = pa.array([k.strip().lower() for k in event_map])
    vals = pa.array(list(event_map.values()), pa.string())
    idx = pc.index_in(lowered, value_set=keys)
    mapped = pc.take(vals, idx)
    return pc.if_else(pc.is_valid(idx), mapped, lowered)


def missing_required(table: pa.Table, name: str) -> list[str]:
    """Canonical key columns that ``table`` lacks entirely (a mapping error, not a row error)."""
    return [k for k in KEYS[name] if k not in table.column_names]


def raw_json(batch: pa.Table, indices: np.ndarray) -> pa.Array:
    """The raw source values of some rows as JSON objects (what the quarantine keeps)."""
    sub = batch.take(pa.array(indices, pa.int64()))
    names = [c for c in sub.column_names if c not in META]
    rows = sub.select(names).to_pylist()
    kept = sub["_raw"].to_pylist() if "_raw" in sub.column_names else [None] * len(rows)
    return pa.array(
        [k if k is not None else json.dumps(r, ensure_ascii=False, default=str) for r, k in zip(rows, kept)],
        pa.string(),
    )
