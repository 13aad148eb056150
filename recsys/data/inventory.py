"""Data-asset inventory: per table schema, roles, stats, time coverage, duplicates, integrity, PII, text.

Two passes over each table, both Ray Data: ``Dataset.aggregate`` (counts, nulls, distinct, min/max,
approximate quantiles, top-k) and one ``map_batches`` of partial sums merged on the driver
(histograms with bins from pass 1, daily event counts, PII matches, text lengths, outliers, row
hashes for the duplicate rate, orphan ids, null tokens left as values, conversion errors per
column). Only aggregates reach the driver.

Per column, ``null_share`` = (nulls + values that are null tokens) / rows over the full pass, and
``parse_rate`` = share of the column's non-null source values that converted to its canonical type
(full pass: a value that does not convert is null with ``_error`` naming the column; a row failing
on two columns counts for the first).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.data.pii import PATTERNS

if TYPE_CHECKING:
    from ray.data import Dataset

SKIP = {"source_file", "_error", "_raw", "source_row"}


@dataclass(frozen=True)
class PassSpec:
    """What the second pass (``partial_pass``, a Ray Data task) computes per block, from pass 1."""

    bins: dict[str, list[float]]  # column -> histogram edges
    fences: dict[str, tuple[float, float]]  # numeric column -> (low, high) outlier fences
    time_col: str | None  # daily counts of this column
    text_cols: list[str]  # text length / HTML / PII sums
    dup_cols: list[str]  # row hashes over these columns (duplicate rate)
    funnel_col: str | None  # distinct users per value (event_type)
    refs: dict[str, tuple[str, pa.Array]]  # reference name -> (column, known ids): orphan counts
    null_tokens: tuple[str, ...] = ()  # values of text columns counted as null (input.null_values)


def _kind(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "time"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    return "other"


def aggregate_pass(ds: Dataset, schema: pa.Schema, top_k: int) -> dict[str, Any]:
    # lazy: the row functions of this module run in tasks and tests without Ray's aggregate module
    from ray.data.aggregate import ApproximateQuantile, ApproximateTopK, Count, CountDistinct, Max, Min

    aggs = [Count(alias_name="rows")]
    for f in schema:
        if f.name in SKIP or _kind(f.type) == "other":
            continue
        aggs += [
            Count(f.name, ignore_nulls=True, alias_name=f"{f.name}|count"),
            CountDistinct(f.name, alias_name=f"{f.name}|distinct"),
        ]
        if _kind(f.type) in ("number", "time"):
            aggs += [Min(f.name, alias_name=f"{f.name}|min"), Max(f.name, alias_name=f"{f.name}|max")]
        if _kind(f.type) == "number":
            aggs.append(
                ApproximateQuantile(f.name, [0.01, 0.25, 0.5, 0.75, 0.99], alias_name=f"{f.name}|quantiles")
            )
        if _kind(f.type) == "text":
            aggs.append(ApproximateTopK(f.name, top_k, alias_name=f"{f.name}|top"))
    out: dict[str, Any] = ds.aggregate(*aggs)
    return out


def partial_pass(block: pa.Table, p: PassSpec) -> pa.Table:
    """Per block: histogram counts, daily counts, PII/text sums, outliers, row hashes, orphans."""
    out: dict[str, Any] = {"rows": block.num_rows}
    for name, bins in p.bins.items():
        col = block[name]
        vals = (
            pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False)
            if pa.types.is_timestamp(col.type)
            else col.to_numpy(zero_copy_only=False)
        )
        vals = np.asarray(vals, float)
        vals = vals[~np.isnan(vals)]
        out[f"hist|{name}"] = np.histogram(vals, bins=np.asarray(bins))[0].tolist()
        if name in p.fences:
            lo, hi = p.fences[name]
            out[f"outliers|{name}"] = int(((vals < lo) | (vals > hi)).sum())
    if p.time_col:
        # nulls first: with them to_numpy gives float64 (NaN) and the day keys read "17420.0"
        ts = pc.drop_null(block[p.time_col])
        day = pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False) // 86_400_000_000
        day = day[day > -(10**12)]
        days, counts = np.unique(day, return_counts=True)
        out["daily"] = dict(zip(map(str, days.tolist()), counts.tolist()))
    if p.funnel_col:
        ut = (
            block.group_by(p.funnel_col, use_threads=False).aggregate([("user_id", "count_distinct")])
            if "user_id" in block.column_names
            else None
        )
        out["funnel_users"] = (
            {
                str(k): v
                for k, v in zip(ut[p.funnel_col].to_pylist(), ut["user_id_count_distinct"].to_pylist())
            }
            if ut
            else {}
        )
    for name in p.text_cols:
        col = block[name]
        ln = pc.utf8_length(col)
        out[f"text|{name}"] = {
            "chars": pc.sum(ln).as_py() or 0,
            "max": pc.max(ln).as_py() or 0,
            "words": pc.sum(pc.list_value_length(pc.utf8_split_whitespace(col))).as_py() or 0,
            "n": len(col) - col.null_count,
            "html": pc.sum(pc.fill_null(pc.match_substring_regex(col, r"<[a-zA-Z/][^>]*>"), False)).as_py()
            or 0,
        }
        out[f"pii|{name}"] = {
            k: pc.sum(pc.fill_null(pc.match_substring_regex(col, pat), False)).as_py() or 0
            for k, pat in PATTERNS.items()
        }
    if p.null_tokens:
        tokens = pa.array(p.null_tokens, pa.string())
        for name in p.text_cols:
            trimmed = pc.utf8_trim_whitespace(block[name])
            hits = pc.filter(trimmed, pc.fill_null(pc.is_in(trimmed, tokens), False))
            if len(hits):
                out[f"tokens|{name}"] = _value_counts(hits)
    if "_error" in block.column_names:
        errors = pc.drop_null(block["_error"])
        if len(errors):
            out["errors"] = _value_counts(errors)
    if p.dup_cols:
        sub = block.select(p.dup_cols)
        out["hashes"] = pd_hash(sub)
    for ref, (col, ids) in p.refs.items():
        if col in block.column_names:
            vals = block[col]
            out[f"orphans|{ref}"] = int(
                pc.sum(pc.and_(pc.is_valid(vals), pc.invert(pc.is_in(vals, ids)))).as_py() or 0
            )
    return pa.table({"json": [json.dumps(out)]})


def _value_counts(arr: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    vc = pc.value_counts(arr)
    return {str(v): int(n) for v, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())}


def pd_hash(t: pa.Table) -> list[int]:
    hashes: list[int] = pd.util.hash_pandas_object(t.to_pandas(), index=False).astype("int64").tolist()
    return hashes


def profile_table(
    ds: Dataset,
    name: str,
    top_k: int,
    nbins: int,
    now: dt.datetime,
    refs: dict[str, tuple[str, pa.Array]],
    null_tokens: tuple[str, ...] = (),
) -> dict[str, Any]:
    schema = ds.schema().base_schema if hasattr(ds.schema(), "base_schema") else ds.schema()
    agg = aggregate_pass(ds, schema, top_k)
    rows = int(agg["rows"])
    cols: dict[str, Any] = {}
    bins: dict[str, list[float]] = {}
    fences: dict[str, tuple[float, float]] = {}
    for f in schema:
        if f.name in SKIP or _kind(f.type) == "other":
            continue
        kind = _kind(f.type)
        n = int(agg[f"{f.name}|count"])
        c: dict[str, Any] = {
            "type": str(f.type),
            "kind": kind,
            "non_null": n,
            "null_rate": 1 - n / rows if rows else 0.0,
            "distinct": int(agg[f"{f.name}|distinct"]),
        }
        if kind in ("number", "time") and n:
            lo, hi = agg[f"{f.name}|min"], agg[f"{f.name}|max"]
            c["min"], c["max"] = (str(lo), str(hi)) if kind == "time" else (float(lo), float(hi))
            if kind == "number":
                q = [float(x) for x in agg[f"{f.name}|quantiles"]]
                c["quantiles"] = dict(zip(["p01", "p25", "p50", "p75", "p99"], q))
                iqr = q[3] - q[1]
                fences[f.name] = (q[1] - 3 * iqr, q[3] + 3 * iqr)
                bins[f.name] = (
                    np.linspace(q[0], q[4], nbins + 1).tolist() if q[4] > q[0] else [float(lo), float(hi) + 1]
                )
            else:
                lo_us, hi_us = (int(pd_ts(x)) for x in (lo, hi))
                bins[f.name] = np.linspace(lo_us, hi_us + 1, nbins + 1).tolist()
                c["coverage_days"] = (hi_us - lo_us) / 86400e6
                c["freshness_days"] = (now.timestamp() * 1e6 - hi_us) / 86400e6
        if kind == "text":
            c["top"] = [
                {"value": t.get(f.name), "count": t.get("count")} for t in (agg[f"{f.name}|top"] or [])
            ][:top_k]
        cols[f.name] = c
    text_cols = [f.name for f in schema if _kind(f.type) == "text" and f.name not in SKIP]
    time_col = (
        "timestamp"
        if "timestamp" in cols
        else next((k for k, v in cols.items() if v["kind"] == "time"), None)
    )
    dup_cols = [f.name for f in schema if f.name not in SKIP and _kind(f.type) != "other"]
    p = PassSpec(
        bins=bins,
        fences=fences,
        time_col=time_col,
        text_cols=text_cols,
        dup_cols=dup_cols,
        funnel_col="event_type" if "event_type" in cols else None,
        refs=refs,
        null_tokens=tuple(t for t in null_tokens if t),
    )
    parts = [
        json.loads(r["json"])
        for r in ds.map_batches(partial_pass, batch_format="pyarrow", fn_kwargs={"p": p}).take_all()
    ]
    _merge(parts, cols, bins, rows, name)
    errors = _null_and_parse(parts, cols, rows)
    hashes = (
        np.concatenate([np.asarray(x.get("hashes", []), np.int64) for x in parts]) if parts else np.zeros(0)
    )
    dup_rate = 1 - len(np.unique(hashes)) / len(hashes) if len(hashes) else 0.0
    daily: dict[str, int] = {}
    funnel_users: dict[str, int] = {}
    for x in parts:
        for k, v in (x.get("daily") or {}).items():
            daily[k] = daily.get(k, 0) + v
        for k, v in (x.get("funnel_users") or {}).items():
            funnel_users[k] = funnel_users.get(k, 0) + v  # users are split across blocks: an upper bound
    orphans = {ref: sum(x.get(f"orphans|{ref}", 0) for x in parts) for ref in refs}
    out = {
        "table": name,
        "rows": rows,
        "columns": cols,
        "duplicate_rate": dup_rate,
        "errors": errors,
        "daily_events": {
            str(dt.date(1970, 1, 1) + dt.timedelta(days=int(k))): v
            for k, v in sorted(daily.items(), key=lambda kv: int(kv[0]))
        },
        "referential_integrity": {
            ref: {"orphans": n, "orphan_rate": n / rows if rows else 0.0} for ref, n in orphans.items()
        },
    }
    if "event_type" in cols:
        out["funnel"] = {t["value"]: t["count"] for t in cols["event_type"].get("top", [])}
    return out


def pd_ts(x: Any) -> float:
    return float(pd.Timestamp(x).value / 1e3)


def _merge(
    parts: list[dict[str, Any]], cols: dict[str, Any], bins: dict[str, list[float]], rows: int, name: str
) -> None:
    for col, b in bins.items():
        counts = np.sum([x[f"hist|{col}"] for x in parts if f"hist|{col}" in x], axis=0)
        cols[col]["histogram"] = {"edges": b, "counts": np.asarray(counts).tolist()}
        if f"outliers|{col}" in (parts[0] if parts else {}):
            n = sum(x.get(f"outliers|{col}", 0) for x in parts)
            cols[col]["outliers"] = {"count": int(n), "rule": "outside [p25 - 3 IQR, p75 + 3 IQR]"}
    for col, c in cols.items():
        if c["kind"] != "text":
            continue
        agg = [x[f"text|{col}"] for x in parts if f"text|{col}" in x]
        n = sum(a["n"] for a in agg)
        c["text"] = {
            "mean_chars": sum(a["chars"] for a in agg) / n if n else 0,
            "max_chars": max([a["max"] for a in agg] or [0]),
            "mean_words": sum(a["words"] for a in agg) / n if n else 0,
            "html_rows": sum(a["html"] for a in agg),
        }
        pii = {k: sum(x[f"pii|{col}"][k] for x in parts if f"pii|{col}" in x) for k in PATTERNS}
        c["pii"] = {k: {"rows": v, "rate": v / rows if rows else 0.0} for k, v in pii.items()}


def _null_and_parse(parts: list[dict[str, Any]], cols: dict[str, Any], rows: int) -> dict[str, int]:
    """Per column: null tokens left as values, null_share, parse failures and parse_rate (full pass);
    returns the table's conversion errors by reason."""
    errors: dict[str, int] = {}
    for x in parts:
        for k, v in (x.get("errors") or {}).items():
            errors[k] = errors.get(k, 0) + v
    for col, c in cols.items():
        tokens: dict[str, int] = {}
        for x in parts:
            for k, v in (x.get(f"tokens|{col}") or {}).items():
                tokens[k] = tokens.get(k, 0) + v
        c["null_tokens"] = {
            k: {"rows": v, "share": v / rows if rows else 0.0}
            for k, v in sorted(tokens.items(), key=lambda kv: -kv[1])
        }
        c["null_share"] = (rows - c["non_null"] + sum(tokens.values())) / rows if rows else 0.0
        failed = errors.get("bad_timestamp" if c["kind"] == "time" else f"bad_type:{col}", 0)
        c["parse_failures"] = failed
        tried = c["non_null"] - sum(tokens.values()) + failed
        c["parse_rate"] = (1 - failed / tried) if tried > 0 else None
    return errors


def check_contract(profiles: dict[str, dict[str, Any]], rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluate quality rules; returns one result per rule with ok, value and a label naming it."""
    results = []
    for r in rules:
        prof = profiles.get(r["table"])
        value: float | None
        if prof is None:
            value = None
        elif r["metric"] == "min_rows":
            value = prof["rows"]
        elif r["metric"] == "duplicate_rate":
            value = prof["duplicate_rate"]
        elif r["metric"] == "freshness_days":
            tc = prof["columns"].get("timestamp", {})
            value = tc.get("freshness_days")
        elif r["metric"] == "orphan_rate":
            rates = [v["orphan_rate"] for v in prof["referential_integrity"].values()]
            value = max(rates) if rates else 0.0
        else:
            col = prof["columns"].get(r["column"])
            if col is None:
                value = None
            elif r["metric"] == "null_rate":  # null tokens left as values count as null
                value = col.get("null_share", col["null_rate"])
            elif r["metric"] == "parse_rate":
                value = col.get("parse_rate")
            elif r["metric"] == "distinct":
                value = col["distinct"]
            else:  # pii_rate
                value = max((v["rate"] for v in col.get("pii", {}).values()), default=0.0)
        ok = (
            value is not None
            and (r.get("max") is None or value <= r["max"])
            and (r.get("min") is None or value >= r["min"])
        )
        results.append(
            {
                **r,
                "severity": r.get("severity") or "error",
                "value": value,
                "ok": ok,
                "why": None
                if ok
                else (
                    f"value {value:.6g} out of bounds"
                    if value is not None
                    else "no values to check"
                    if prof is not None and r.get("column") in prof["columns"]
                    else "table/column not found"
                ),
            }
        )
    return results
