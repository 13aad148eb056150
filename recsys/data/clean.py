"""Cleaning: row validation with reasons, quarantine, dedup, text normalization, PII, sessions, returns.

Two stages, both pyarrow inside Ray Data tasks:
1. ``row_stage`` (``map_batches``, row-local): convert to canonical types, validate every rule,
   normalize text, hash/scrub PII, keep the raw row (JSON, PII-scrubbed) of every rejection.
2. ``keyed_stage`` (one hash exchange by user_id / table key, then per block): bot bursts, exact and
   near duplicates, return linking, sessionization.
Every row leaves with ``_status`` in {ok, quarantine, duplicate} and, unless ok, a ``reason``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from recsys.data.config import CleanConfig
from recsys.data.convert import raw_json, to_canonical
from recsys.data.io import clear_dirs, filesystem, head, join
from recsys.data.pii import hash_array, keyed_hash, scrub_text
from recsys.data.readers import META
from recsys.data.schema import KEYS, table_schema
from recsys.data.shuffle import by_key, by_key_streaming, group_order, mark_partitioned

if TYPE_CHECKING:
    from recsys.data.adapters import Source

TEXT_COLUMNS = {"query", "title", "description", "left", "right", "brand", "category", "country"}
FREE_TEXT = {"query", "title", "description", "left", "right"}
DEDUP_KEYS = {
    "events": ["user_id"],
    "items": ["item_id"],
    "users": ["user_id"],
    "pairs": ["left", "right"],
    "candidates": ["user_id"],
    "sequences": ["user_id"],
}
# Columns that, when present, scope a duplicate: the same Ditto pair in train and in test is two rows of
# the published benchmark (dropping one would shrink its test split); within one split it is a duplicate.
# A user has one candidate list per retriever (Games-6k: pop, bpr, sasrec), not one in all.
DEDUP_SCOPE = {"pairs": ["split"], "candidates": ["source"]}
STATUS, REASON, RAW = "_status", "reason", "raw"


@dataclass(frozen=True)
class CleanOptions:
    """The clean rules as plain values for the Ray tasks, built by ``clean_options`` from a
    CleanConfig (where their defaults and documentation live; config objects never reach a task)."""

    event_types: list[str]  # rules.event_types: anything else is quarantined
    min_ts_us: int | None  # rules.min_timestamp (us since the epoch), None = no lower bound
    max_ts_us: int  # rules.max_timestamp, or now + rules.max_future_s
    max_price: float
    max_quantity: int
    allow_negative_quantity: bool
    max_field_chars: int
    bot_per_minute: int  # rules.bot_events_per_minute; 0 = off
    near_us: int  # rules.near_duplicate_s in us; 0 = off
    gap_us: int  # session_gap_minutes in us
    lowercase_queries: bool
    hash_columns: list[str]  # pii.hash_columns
    scrub_text: bool  # pii.scrub_text
    salt: str | None  # the PII salt (from the environment)
    return_prefix: str | None  # returns.order_id_prefix
    return_mode: str  # returns.mode
    link_returns: bool  # return_mode link with a prefix: link each return to its purchase


def _flag(reason: pa.Array, mask: pa.Array, label: str) -> pa.Array:
    mask = pc.fill_null(mask, False)
    return pc.if_else(pc.and_(mask, pc.is_null(reason)), pa.scalar(label, pa.string()), reason)


def normalize_text(arr: pa.Array, lower: bool = False) -> pa.Array:
    """NFKC, HTML tags/entities removed, whitespace collapsed (and lower-cased for queries).

    Logs repeat their strings (countries, categories, popular queries): the distinct values are
    normalized once and mapped back, when they are fewer than half the rows."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if len(arr) > 1:
        enc = pc.dictionary_encode(arr)
        if len(enc.dictionary) * 2 < len(arr):
            return pc.take(_normalize(enc.dictionary, lower), enc.indices)
    return _normalize(arr, lower)


def _normalize(arr: pa.Array, lower: bool) -> pa.Array:
    if not pc.all(pc.fill_null(pc.string_is_ascii(arr), True)).as_py():  # ASCII is its own NFKC form
        arr = pc.utf8_normalize(arr, "NFKC")
    if pc.any(pc.fill_null(pc.match_substring(arr, "<"), False)).as_py():
        arr = pc.replace_substring_regex(arr, r"<[^>]{0,200}>", " ")
    if pc.any(pc.fill_null(pc.match_substring(arr, "&"), False)).as_py():
        arr = pa.array([html.unescape(v) if v and "&" in v else v for v in arr.to_pylist()], pa.string())
    arr = pc.utf8_trim_whitespace(pc.replace_substring_regex(arr, r"\s+", " "))
    arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    return pc.utf8_lower(arr) if lower else arr


def row_stage(batch: pa.Table, spec: dict[str, Any], opts: CleanOptions) -> pa.Table:
    """Validate and normalize one batch; same number of rows out as in."""
    table = spec["table"]
    canon = to_canonical(batch, spec)
    n = canon.num_rows
    reason = canon["_error"]
    reason = reason.combine_chunks() if isinstance(reason, pa.ChunkedArray) else reason
    cols = {
        c: (canon[c].combine_chunks() if isinstance(canon[c], pa.ChunkedArray) else canon[c])
        for c in canon.column_names
        if c not in META
    }
    for field in table_schema(table):  # every canonical column, so all blocks share one schema
        if field.name not in cols and field.name != "source_row":
            cols[field.name] = pa.nulls(n, field.type)
    for key in KEYS[table]:
        reason = _flag(reason, pc.is_null(cols[key]), f"missing_key:{key}")
    for name, arr in cols.items():
        if pa.types.is_string(arr.type):
            reason = _flag(
                reason, pc.greater(pc.utf8_length(arr), opts.max_field_chars), f"oversized_field:{name}"
            )
    is_return = pa.array(np.zeros(n, bool))
    if table == "events":
        reason, is_return = _event_rules(cols, reason, opts)
    if "price" in cols:
        reason = _flag(reason, pc.less(cols["price"], 0), "negative_price")
        reason = _flag(reason, pc.greater(cols["price"], opts.max_price), "absurd_price")
    if table == "pairs":
        reason = _flag(reason, pc.invert(pc.is_in(cols["label"], pa.array([0, 1], pa.int32()))), "bad_label")
    salt = opts.salt
    for name, arr in list(cols.items()):
        if not pa.types.is_string(arr.type):
            continue
        if name in TEXT_COLUMNS:
            arr = normalize_text(arr, lower=name == "query" and opts.lowercase_queries)
        if name in FREE_TEXT and opts.scrub_text:
            arr = scrub_text(arr, salt)
        if name in opts.hash_columns:
            arr = hash_array(arr, salt)  # type: ignore[arg-type]  # CleanConfig requires a salt with hash_columns
        cols[name] = arr
    bad = pc.is_valid(reason)
    status = pc.if_else(bad, pa.scalar("quarantine"), pa.scalar("ok"))
    raw = pa.nulls(n, pa.string())
    if pc.any(bad).as_py():
        idx = pc.indices_nonzero(bad).to_numpy()
        raw_rows = _safe_raw(raw_json(batch, idx), spec, opts)
        raw = pc.take(
            pa.array(raw_rows.to_pylist() + [None], pa.string()), pa.array(_scatter(n, idx), pa.int64())
        )
    out = dict(cols)
    out["source_row"] = canon["source_row"]
    out["source_file"] = pc.if_else(bad, canon["source_file"], pa.scalar(None, pa.string()))
    out[STATUS], out[REASON], out[RAW], out["_return"] = status, reason, raw, is_return
    return pa.table(out)


def _scatter(n: int, idx: np.ndarray) -> np.ndarray:
    """Take-indices placing the k-th raw value at row idx[k] (others -> the trailing null)."""
    pos = np.full(n, len(idx), np.int64)
    pos[idx] = np.arange(len(idx))
    return pos


def _safe_raw(raw: pa.Array, spec: dict[str, Any], opts: CleanOptions) -> pa.Array:
    """Raw rows as quarantined: hashed id columns hashed, free-text PII scrubbed."""
    salt = opts.salt
    hashed = {src for src, dst in (spec.get("columns") or {}).items() if dst in opts.hash_columns}
    hashed |= set(opts.hash_columns)
    if hashed and salt:
        rows = []
        for text in raw.to_pylist():
            try:
                obj = json.loads(text)
                obj = {
                    k: (keyed_hash(str(v), salt) if k in hashed and v is not None else v)
                    for k, v in obj.items()
                }
                rows.append(json.dumps(obj, ensure_ascii=False))
            except (ValueError, AttributeError):
                rows.append(text)
        raw = pa.array(rows, pa.string())
    return scrub_text(raw, salt) if opts.scrub_text or hashed else raw


def _event_rules(
    cols: dict[str, pa.Array], reason: pa.Array, opts: CleanOptions
) -> tuple[pa.Array, pa.Array]:
    n = len(reason)
    reason = _flag(
        reason, pc.invert(pc.is_in(cols["event_type"], pa.array(opts.event_types))), "unknown_event_type"
    )
    ts = cols["timestamp"]
    if opts.min_ts_us is not None:
        reason = _flag(reason, pc.less(pc.cast(ts, pa.int64()), opts.min_ts_us), "timestamp_out_of_range")
    reason = _flag(reason, pc.greater(pc.cast(ts, pa.int64()), opts.max_ts_us), "timestamp_out_of_range")
    is_return = pa.array(np.zeros(n, bool))
    if "quantity" in cols:
        q = cols["quantity"]
        reason = _flag(
            reason, pc.greater(pc.abs(pc.cast(q, pa.int64())), opts.max_quantity), "absurd_quantity"
        )
        neg = pc.fill_null(pc.less(q, 0), False)
        prefix = opts.return_prefix
        if prefix and "order_id" in cols:
            is_return = pc.and_(neg, pc.fill_null(pc.starts_with(cols["order_id"], prefix), False))
            if opts.return_mode == "quarantine":
                reason = _flag(reason, is_return, "cancellation")
            elif opts.return_mode == "link":
                cols["quantity"] = pc.if_else(is_return, pc.negate(q), q)
        if not opts.allow_negative_quantity:
            keep = is_return if opts.return_mode in ("link", "keep") else pa.array(np.zeros(n, bool))
            reason = _flag(reason, pc.and_(neg, pc.invert(keep)), "negative_quantity")
    if opts.return_mode != "link":
        is_return = pa.array(np.zeros(n, bool))
    return reason, is_return


# --------------------------------------------------------------------------- keyed stage
def _prev_equal(arr: pa.Array) -> np.ndarray:
    """Row i equals row i-1 (nulls equal), first row False."""
    if len(arr) == 0:
        return np.zeros(0, bool)
    a, b = arr.slice(1), arr.slice(0, len(arr) - 1)
    eq = pc.fill_null(pc.equal(a, b), False)
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    return np.concatenate([[False], pc.or_(eq, both_null).to_numpy(zero_copy_only=False)])


def _equal(a: pa.ChunkedArray, b: pa.ChunkedArray) -> np.ndarray:
    """Element-wise a == b with nulls equal."""
    eq = pc.fill_null(pc.equal(a, b), False)
    out: np.ndarray = pc.or_(eq, pc.and_(pc.is_null(a), pc.is_null(b))).to_numpy()
    return out


def keyed_events(block: pa.Table, opts: CleanOptions) -> pa.Table:
    """Per user block: bot bursts, exact/near duplicates, return linking, sessions."""
    ok_mask = pc.equal(block[STATUS], "ok")
    rest = block.filter(pc.invert(ok_mask))
    ok = block.filter(ok_mask)
    if ok.num_rows == 0:
        return block
    status = np.full(ok.num_rows, "ok", dtype=object)  # ok rows: status ok, no reason yet
    reason = np.full(ok.num_rows, None, dtype=object)
    ts = pc.cast(ok["timestamp"], pa.int64()).to_numpy()
    # bots: > K events by one user within one calendar minute
    if opts.bot_per_minute > 0:
        minute = pa.array(ts // 60_000_000)
        counts = (
            pa.table({"u": ok["user_id"], "m": minute})
            .group_by(["u", "m"], use_threads=False)
            .aggregate([("m", "count")])
        )
        joined = pa.table({"u": ok["user_id"], "m": minute, "i": np.arange(ok.num_rows)}).join(
            counts, ["u", "m"]
        )
        over = joined.filter(pc.greater(joined["m_count"], opts.bot_per_minute))["i"].to_numpy()
        status[over], reason[over] = "quarantine", "bot_burst"
    # duplicates: sort by (user, item, type, time); compare with the previous row. Only the key columns are
    # gathered in that order; the other columns only for rows that could equal their predecessor (same key and
    # time), so the block is not copied for a check that a few rows in a thousand fail
    order = group_order(ok, ["user_id", "item_id", "event_type", "timestamp", "source_row"]).to_numpy()
    srt = ok.select(["user_id", "item_id", "event_type", "timestamp"]).take(pa.array(order))
    same_key = _prev_equal(srt["user_id"]) & _prev_equal(srt["item_id"]) & _prev_equal(srt["event_type"])
    live = status[order] == "ok"
    dt = np.diff(pc.cast(srt["timestamp"], pa.int64()).to_numpy(), prepend=0)
    exact = same_key & (dt == 0)
    cand = np.nonzero(exact)[0]  # sorted positions; each is compared with position - 1
    if len(cand):
        rows, prev = ok.take(pa.array(order[cand])), ok.take(pa.array(order[cand - 1]))
        for c in ok.column_names:
            if c not in ("source_row", "source_file", STATUS, REASON, RAW, "_return", "session_id"):
                exact[cand] &= _equal(rows[c], prev[c])
    near = same_key & (dt <= opts.near_us) & ~exact if opts.near_us > 0 else np.zeros(len(order), bool)
    for mask, label in ((exact & live, "exact_duplicate"), (near & live, "near_duplicate")):
        status[order[mask]], reason[order[mask]] = "duplicate", label
    if opts.link_returns:
        _link_returns(ok, status, reason)
    ok = ok.set_column(ok.schema.get_field_index(STATUS), STATUS, pa.array(status, pa.string()))
    ok = ok.set_column(ok.schema.get_field_index(REASON), REASON, pa.array(reason, pa.string()))
    ok = _sessionize(ok, opts.gap_us)
    return pa.concat_tables([ok, rest.select(ok.column_names)]) if rest.num_rows else ok


def _link_returns(ok: pa.Table, status: np.ndarray, reason: np.ndarray) -> None:
    """A return needs an earlier purchase of the same item by the same user; it becomes event_type=return."""
    ret = ok["_return"].to_numpy(zero_copy_only=False)
    if not ret.any():
        return
    buys = ok.filter(pc.and_(pc.equal(ok["event_type"], "buy"), pc.invert(ok["_return"])))
    first = buys.group_by(["user_id", "item_id"], use_threads=False).aggregate([("timestamp", "min")])
    idx = np.nonzero(ret)[0]
    r = pa.table(
        {
            "user_id": ok["user_id"].take(idx),
            "item_id": ok["item_id"].take(idx),
            "ts": ok["timestamp"].take(idx),
            "i": idx,
        }
    )
    j = r.join(first, ["user_id", "item_id"], join_type="left outer")
    matched = pc.fill_null(pc.less_equal(j["timestamp_min"], j["ts"]), False).to_numpy(zero_copy_only=False)
    rows = j["i"].to_numpy()
    unmatched = rows[~matched]
    unmatched = unmatched[status[unmatched] == "ok"]
    status[unmatched], reason[unmatched] = "quarantine", "unmatched_return"


def _sessionize(ok: pa.Table, gap_us: int) -> pa.Table:
    """session_id = user:n over kept rows in time order; a gap > gap_us starts session n+1."""
    order = group_order(ok, ["user_id", "timestamp", "source_row"]).to_numpy()
    srt = ok.take(pa.array(order))
    kept = pc.equal(srt[STATUS], "ok").to_numpy()  # not via numpy strings: a Python object per row
    kept_idx = np.nonzero(kept)[0]
    sid = np.zeros(srt.num_rows, np.int64)
    if len(kept_idx):
        k_users = srt["user_id"].take(pa.array(kept_idx))
        k_ts = pc.cast(srt["timestamp"], pa.int64()).to_numpy()[kept_idx]
        user_new = ~_prev_equal(k_users)
        new = user_new | (np.diff(k_ts, prepend=k_ts[0]) > gap_us)
        csum = np.cumsum(new)
        start = np.maximum.accumulate(np.where(user_new, np.arange(len(kept_idx)), 0))
        sid[kept_idx] = csum - csum[start] + 1
    # a given session_id wins; kept rows get "user:n"; rejected rows none (vectorised: 10M rows per job)
    made = pc.binary_join_element_wise(
        pc.cast(srt["user_id"], pa.string()), pc.cast(pa.array(sid), pa.string()), ":"
    )
    made = pc.if_else(pa.array(kept), made, pa.scalar(None, pa.string()))
    if "session_id" in srt.column_names:
        made = pc.coalesce(pc.cast(srt["session_id"], pa.string()), made)
        srt = srt.drop_columns(["session_id"])
    return srt.append_column("session_id", made)


def keyed_table(block: pa.Table, keys: list[str], scope: list[str] | None = None) -> pa.Table:
    """Items/users/pairs/candidates: one row per key (within ``scope`` columns the block has); exact
    copies and conflicting rows are duplicates. Blocks come partitioned by ``keys`` alone."""
    keys = list(keys) + [c for c in scope or [] if c in block.column_names and c not in keys]
    ok_mask = pc.equal(block[STATUS], "ok")
    rest, ok = block.filter(pc.invert(ok_mask)), block.filter(ok_mask)
    if ok.num_rows == 0:
        return block
    order = group_order(ok, list(keys) + ["source_row"]).to_numpy()
    srt = ok.take(pa.array(order))
    same = np.ones(srt.num_rows, bool)
    for k in keys:
        same &= _prev_equal(srt[k])
    exact = same.copy()
    for c in srt.column_names:
        if c not in ("source_row", "source_file", STATUS, REASON, RAW, "_return"):
            col = srt[c]
            if pa.types.is_list(col.type):
                col = pa.array([json.dumps(v, default=str) for v in col.to_pylist()], pa.string())
            exact &= _prev_equal(col)
    status = np.where(same, "duplicate", "ok").astype(object)
    reason = np.where(exact, "exact_duplicate", np.where(same, "duplicate_key", None)).astype(object)  # type: ignore[call-overload]
    srt = srt.set_column(srt.schema.get_field_index(STATUS), STATUS, pa.array(status, pa.string()))
    srt = srt.set_column(srt.schema.get_field_index(REASON), REASON, pa.array(reason, pa.string()))
    return pa.concat_tables([srt, rest.select(srt.column_names)]) if rest.num_rows else srt


def status_counts(block: pa.Table) -> pa.Table:
    """(status, reason, n) of one block: the reconciliation's raw numbers."""
    t = pa.table({"status": block[STATUS], "reason": pc.fill_null(block[REASON], "")})
    return (
        t.group_by(["status", "reason"], use_threads=False)
        .aggregate([("status", "count")])
        .rename_columns(["status", "reason", "n"])
    )


# --------------------------------------------------------------------------- orchestration
def clean_table(
    src: Source,
    opts: CleanOptions,
    out_dir: str,
    partitions: int | None,
    limit: int | None = None,
    engine: str = "tasks",
    partition_mb: float | None = None,
) -> dict[str, Any]:
    """Clean one canonical table of ``src`` (an adapters.Source) into ``out_dir``; return its counts.

    One pass: read -> row rules -> exchange by the table's key -> per partition, keyed rules and the
    writes of its clean / quarantined / duplicate rows (``keyed_write``). Each partition writes one file
    per output, so every file of ``<table>/`` holds all rows of its keys (recorded for the features job,
    which then needs no exchange of its own). ``engine``: how the exchange runs, ``tasks``
    (``shuffle.by_key_streaming``, partitions of ``partition_mb`` MiB unless ``partitions`` fixes their count) or
    ``ray_data`` (Ray Data's hash shuffle, ``shuffle.by_key``). rows_in is
    counted by an independent read of the source; the other counts are read back from the written Parquet
    files, so the reconciliation checks what is on disk.
    """
    table = src.table
    raw = src.read_raw()
    if limit:
        raw = head(raw, limit)
    rows_in = min(src.count_rows(), limit or 2**62)
    rows = raw.map_batches(row_stage, batch_format="pyarrow", fn_kwargs={"spec": src.spec, "opts": opts})
    canonical = [f.name for f in table_schema(table)]
    outputs = {
        "ok": (join(out_dir, table), canonical),
        "quarantine": (join(out_dir, "quarantine", table), ["source_file", "source_row", REASON, RAW]),
        "duplicate": (join(out_dir, "duplicates", table), canonical + [REASON]),
    }
    clear_dirs([path for path, _ in outputs.values()])  # a re-run replaces, never appends
    keys = DEDUP_KEYS[table]
    kwargs = {
        "table": table,
        "opts": opts,
        "keys": keys,
        "scope": DEDUP_SCOPE.get(table, []),
        "outputs": outputs,
    }
    if engine == "tasks":
        parts = by_key_streaming(
            rows, keys, keyed_write, partitions=partitions, fn_kwargs=kwargs, partition_mb=partition_mb
        )
        done = [row for part in parts for row in part.to_pylist()]
    else:
        done = by_key(rows, keys, keyed_write, partitions=partitions, fn_kwargs=kwargs).take_all()
    reasons: dict[str, int] = {}
    for row in done:  # (status, reason, n) per partition: a few rows
        if row["reason"]:
            reasons[row["reason"]] = reasons.get(row["reason"], 0) + int(row["n"])
    written = {status: _count_parquet(path) for status, (path, _) in outputs.items()}
    mark_partitioned(outputs["ok"][0], keys)
    counts = {
        "rows_in": rows_in,
        "rows_clean": written["ok"],
        "rows_quarantined": written["quarantine"],
        "rows_duplicate": written["duplicate"],
    }
    total = counts["rows_clean"] + counts["rows_quarantined"] + counts["rows_duplicate"]
    if total != rows_in:
        raise RuntimeError(
            f"reconciliation failed for {table}: rows_in {rows_in} != clean {counts['rows_clean']} + "
            f"quarantined {counts['rows_quarantined']} + duplicate {counts['rows_duplicate']} = {total}"
        )
    return {**counts, "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1]))}


def keyed_write(
    block: pa.Table,
    table: str,
    opts: CleanOptions,
    keys: list[str],
    scope: list[str],
    outputs: dict[str, tuple[str, list[str]]],
) -> pa.Table:
    """Reduce side of clean's exchange: ``block`` holds all rows of its keys. Applies the keyed rules,
    writes each status' rows (``outputs[status] = (folder, columns)``) as one Parquet file, and returns
    the block's (status, reason, n). File names derive from the block's smallest key, so a retried task
    overwrites its own files instead of adding rows."""
    if block.num_rows == 0:
        return pa.table(
            {
                "status": pa.array([], pa.string()),
                "reason": pa.array([], pa.string()),
                "n": pa.array([], pa.int64()),
            }
        )
    done = keyed_events(block, opts) if table == "events" else keyed_table(block, keys, scope)
    key = pc.binary_join_element_wise(
        *[pc.fill_null(pc.cast(block[k], pa.string()), "") for k in keys], "\x1f"
    )
    name = f"part-{hashlib.sha1(pc.min(key).as_py().encode()).hexdigest()[:20]}.parquet"  # partitions share no key
    for status, (path, columns) in outputs.items():
        part = _pick(done, status, columns)
        if part.num_rows:
            fs, inner = filesystem(path)
            fs.create_dir(inner, recursive=True)
            pq.write_table(part, f"{inner}/{name}", filesystem=fs)
    return status_counts(done)


def _pick(block: pa.Table, status: str, columns: list[str]) -> pa.Table:
    return block.filter(pc.equal(block[STATUS], status)).select(columns)


def _count_parquet(path: str) -> int:
    fs, inner = filesystem(path)
    if fs.get_file_info(inner).type == pafs.FileType.NotFound:
        return 0
    return int(pads.dataset(inner, filesystem=fs, format="parquet").count_rows())


def clean_options(cfg: CleanConfig, salt: str | None) -> CleanOptions:
    """Plain options for the Ray tasks from a CleanConfig (config objects never reach the workers)."""
    rules = cfg.rules

    def us(t: dt.datetime) -> int:
        return int((t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp() * 1e6)

    now = dt.datetime.now(dt.timezone.utc)
    max_ts = (
        us(rules.max_timestamp) if rules.max_timestamp else us(now + dt.timedelta(seconds=rules.max_future_s))
    )
    return CleanOptions(
        event_types=list(rules.event_types),
        max_ts_us=max_ts,
        min_ts_us=us(rules.min_timestamp) if rules.min_timestamp is not None else None,
        max_price=rules.max_price,
        max_quantity=rules.max_quantity,
        allow_negative_quantity=rules.allow_negative_quantity,
        max_field_chars=rules.max_field_chars,
        bot_per_minute=rules.bot_events_per_minute,
        near_us=int(rules.near_duplicate_s * 1e6),
        gap_us=int(cfg.session_gap_minutes * 60e6),
        lowercase_queries=cfg.lowercase_queries,
        hash_columns=list(cfg.pii.hash_columns),
        scrub_text=cfg.pii.scrub_text,
        salt=salt,
        return_prefix=cfg.returns.order_id_prefix,
        return_mode=cfg.returns.mode,
        link_returns=cfg.returns.mode == "link" and cfg.returns.order_id_prefix is not None,
    )
