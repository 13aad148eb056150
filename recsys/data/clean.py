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
from dataclasses import dataclass, replace
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
    # every row keeps its file (dictionary-encoded: a few paths, not one string per row), so a row the keyed
    # stage rejects (bot_burst, unmatched_return) still says where it came from
    out["source_file"] = pc.dictionary_encode(pc.cast(canon["source_file"], pa.string()))
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


def _distinct_kept(key: pa.Array, ok: pa.Array) -> tuple[int, int]:
    """(distinct non-null keys, those with at least one ok row)."""
    t = pa.table({"k": key, "ok": ok}).filter(pc.is_valid(key))
    if t.num_rows == 0:
        return 0, 0
    g = t.group_by("k", use_threads=False).aggregate([("ok", "any")])
    return g.num_rows, int(pc.sum(g["ok_any"]).as_py() or 0)


def _input_sessions(done: pa.Table, gap_us: int, given: bool) -> pa.Array:
    """A session key per row: the log's own ``user_id + session_id`` when it has one (``given``), else
    sessions of the whole input (every status) by ``gap_us`` inactivity per user; null without user or time."""
    user = pc.cast(done["user_id"], pa.string())
    if given:
        return pc.binary_join_element_wise(user, pc.cast(done["session_id"], pa.string()), "\x1f")
    ts = pc.cast(done["timestamp"], pa.int64())
    valid = pc.and_(pc.is_valid(user), pc.is_valid(ts)).to_numpy(zero_copy_only=False)
    idx = np.nonzero(valid)[0]
    sid = np.full(done.num_rows, -1, np.int64)
    if len(idx):
        sub = pa.table({"u": user.take(idx), "t": ts.take(idx)})
        order = pc.sort_indices(sub, [("u", "ascending"), ("t", "ascending")]).to_numpy()
        u, t = sub["u"].take(order), sub["t"].to_numpy()[order]
        new = ~_prev_equal(u) | (np.diff(t, prepend=t[0]) > gap_us)
        sid[idx[order]] = np.cumsum(new)
    return pa.array(sid, mask=sid < 0)


def loss_counts(done: pa.Table, table: str, gap_us: int, given_sessions: bool = False) -> dict[str, float]:
    """What the quarantine costs in business terms, for one partition of final statuses (every row of its
    keys, so the counts add up over partitions): users (items for the item table) and sessions present in
    the input with no clean row, rows without a user, and the gross revenue (|price x quantity|, quantity 1
    where absent) and quantity of quarantined rows next to the input's. ``given_sessions``: the input has
    session ids (else sessions are cut by ``gap_us`` over every input row)."""
    ok = pc.equal(done[STATUS], "ok")
    quarantined = pc.equal(done[STATUS], "quarantine")
    out: dict[str, float] = {}
    entity = {"user_id": "users", "item_id": "items"}.get(DEDUP_KEYS[table][0])
    if entity:
        ids = done[DEDUP_KEYS[table][0]]
        n_in, n_kept = _distinct_kept(ids, ok)
        out[f"{entity}_in"], out[f"{entity}_lost"] = n_in, n_in - n_kept
        if entity == "users":
            out["rows_without_user"] = int(pc.sum(pc.is_null(ids)).as_py() or 0)
    if table == "events":
        n_in, n_kept = _distinct_kept(_input_sessions(done, gap_us, given_sessions), ok)
        out["sessions_in"], out["sessions_lost"] = n_in, n_in - n_kept
    if table != "events":  # a catalog's prices are not sales
        return out
    qty = pc.abs(pc.cast(done["quantity"], pa.float64())) if "quantity" in done.column_names else None
    if "price" in done.column_names:
        rev = pc.abs(
            pc.multiply(pc.cast(done["price"], pa.float64()), pc.fill_null(qty, 1.0) if qty else 1.0)
        )
        out["revenue_in"] = float(pc.sum(rev).as_py() or 0.0)
        out["revenue_quarantined"] = float(pc.sum(pc.filter(rev, quarantined)).as_py() or 0.0)
    if qty is not None:
        out["quantity_in"] = float(pc.sum(qty).as_py() or 0.0)
        out["quantity_quarantined"] = float(pc.sum(pc.filter(qty, quarantined)).as_py() or 0.0)
    return out


def _partition_numbers(
    done: pa.Table, table: str, gap_us: int, null_columns: list[str], given_sessions: bool
) -> pa.Table:
    """The rows a reduce task returns: (status, reason, n) per status and reason, then ``_null`` rows
    (column, null count) and ``_loss`` rows (loss_counts, value in ``v``)."""
    counts = status_counts(done)
    counts = counts.append_column("v", pa.array(np.zeros(counts.num_rows), pa.float64()))
    nulls = [
        (c, int(pc.sum(pc.is_null(done[c])).as_py() or 0)) for c in null_columns if c in done.column_names
    ]
    loss = list(loss_counts(done, table, gap_us, given_sessions).items())
    extra = pa.table(
        {
            "status": pa.array(["_null"] * len(nulls) + ["_loss"] * len(loss), pa.string()),
            "reason": pa.array([c for c, _ in nulls] + [k for k, _ in loss], pa.string()),
            "n": pa.array([n for _, n in nulls] + [0] * len(loss), pa.int64()),
            "v": pa.array([0.0] * len(nulls) + [float(v) for _, v in loss], pa.float64()),
        }
    )
    return pa.concat_tables([counts, extra])


# --------------------------------------------------------------------------- orchestration
def clean_table(
    src: Source,
    opts: CleanOptions,
    out_dir: str,
    partitions: int | None,
    limit: int | None = None,
    engine: str = "tasks",
    partition_mb: float | None = None,
    null_columns: tuple[str, ...] = (),
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
    bounded = [c for c in null_columns if c in canonical]
    kwargs = {
        "table": table,
        "opts": opts,
        "keys": keys,
        "scope": DEDUP_SCOPE.get(table, []),
        "outputs": outputs,
        "null_columns": bounded,
    }
    if engine == "tasks":
        parts = by_key_streaming(
            rows, keys, keyed_write, partitions=partitions, fn_kwargs=kwargs, partition_mb=partition_mb
        )
        done = [row for part in parts for row in part.to_pylist()]
    else:
        done = by_key(rows, keys, keyed_write, partitions=partitions, fn_kwargs=kwargs).take_all()
    reasons: dict[str, int] = {}
    nulls: dict[str, int] = {c: 0 for c in bounded}
    loss: dict[str, float] = {}
    for row in done:  # per partition: (status, reason, n), null counts, loss numbers; a few rows
        if row["status"] == "_null":
            nulls[row["reason"]] += int(row["n"])
        elif row["status"] == "_loss":
            loss[row["reason"]] = loss.get(row["reason"], 0.0) + float(row["v"])
        elif row["reason"]:
            reasons[row["reason"]] = reasons.get(row["reason"], 0) + int(row["n"])
    fill_raw(src, opts, outputs["quarantine"][0], limit)
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
    return {
        **counts,
        "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "nulls": nulls,
        "loss": business_loss(loss),
    }


def business_loss(sums: dict[str, float]) -> dict[str, float | int]:
    """The summed loss_counts of a table as report numbers: counts as ints, revenue and quantity with
    their quarantined shares (left out where the input has none, e.g. a log without prices)."""
    out: dict[str, float | int] = {}
    for k, v in sums.items():
        if k.startswith(("revenue", "quantity")):
            if sums.get(f"{k.split('_')[0]}_in"):
                out[k] = round(v, 6)
        else:
            out[k] = int(v)
    for what in ("revenue", "quantity"):
        if sums.get(f"{what}_in"):
            out[f"{what}_quarantined_share"] = round(sums[f"{what}_quarantined"] / sums[f"{what}_in"], 6)
    return out


def fill_raw(src: Source, opts: CleanOptions, quarantine_dir: str, limit: int | None) -> int:
    """Give the rows the keyed stage quarantined (bot_burst, unmatched_return: rejected after conversion,
    when the source text is gone) their raw text, by a second read of only the files they came from.
    Returns the number of rows filled; a no-op (one read of two quarantine columns) when there are none."""
    fs, inner = filesystem(quarantine_dir)
    if fs.get_file_info(inner).type == pafs.FileType.NotFound:
        return 0
    ds = pads.dataset(inner, filesystem=fs, format="parquet")
    need = ds.to_table(columns=["source_file", "source_row"], filter=pc.field(RAW).is_null())
    need = need.filter(pc.and_(pc.is_valid(need["source_file"]), pc.is_valid(need["source_row"])))
    if need.num_rows == 0:
        return 0
    wanted: dict[str, list[int]] = {}
    for f, r in zip(need["source_file"].to_pylist(), need["source_row"].to_pylist()):
        wanted.setdefault(f, []).append(r)
    files = [f for f in src.files if f in wanted]
    read = src if limit or not files else replace(src, files=files)  # a limited run: the same first rows
    raw = read.read_raw()
    if limit:
        raw = head(raw, limit)
    found = raw.map_batches(
        _pick_raw, batch_format="pyarrow", fn_kwargs={"wanted": wanted, "spec": src.spec, "opts": opts}
    ).take_all()
    fill = pa.table(
        {
            "source_file": pa.array([r["source_file"] for r in found], pa.string()),
            "source_row": pa.array([r["source_row"] for r in found], pa.int64()),
            "_fill": pa.array([r[RAW] for r in found], pa.string()),
        }
    )
    for frag in ds.get_fragments():
        part = pq.read_table(frag.path, filesystem=fs)
        if not pc.any(pc.is_null(part[RAW])).as_py():
            continue
        missing = pc.is_null(part[RAW])
        joined = part.filter(missing).join(fill, ["source_file", "source_row"], join_type="left outer")
        joined = joined.set_column(joined.schema.get_field_index(RAW), RAW, joined["_fill"])
        joined = joined.select(part.column_names).cast(part.schema)
        pq.write_table(pa.concat_tables([part.filter(pc.invert(missing)), joined]), frag.path, filesystem=fs)
    return len(found)


def _pick_raw(
    batch: pa.Table, wanted: dict[str, list[int]], spec: dict[str, Any], opts: CleanOptions
) -> pa.Table:
    """(source_file, source_row, raw) of the rows of ``batch`` named in ``wanted`` (file -> rows). Only rows
    the reader parsed (no ``_error``): a malformed row was quarantined with its text by the row stage, and
    its source_row may repeat a parsed row's."""
    if "_error" in batch.column_names:
        batch = batch.filter(pc.is_null(batch["_error"]))
    hit = np.zeros(batch.num_rows, bool)
    files = batch["source_file"].to_pylist() if batch.num_rows else []
    rows = batch["source_row"].to_numpy(zero_copy_only=False) if batch.num_rows else []
    for f in set(files) & set(wanted):
        hit |= (np.asarray(files) == f) & np.isin(rows, wanted[f])
    idx = np.nonzero(hit)[0]
    return pa.table(
        {
            "source_file": pa.array([files[i] for i in idx], pa.string()),
            "source_row": pa.array(rows[idx] if len(idx) else [], pa.int64()),
            RAW: _safe_raw(raw_json(batch, idx), spec, opts) if len(idx) else pa.array([], pa.string()),
        }
    )


def keyed_write(
    block: pa.Table,
    table: str,
    opts: CleanOptions,
    keys: list[str],
    scope: list[str],
    outputs: dict[str, tuple[str, list[str]]],
    null_columns: list[str] | None = None,
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
                "v": pa.array([], pa.float64()),
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
    given = "session_id" in block.column_names and bool(pc.any(pc.is_valid(block["session_id"])).as_py())
    return _partition_numbers(done, table, opts.gap_us, null_columns or [], given)


def _pick(block: pa.Table, status: str, columns: list[str]) -> pa.Table:
    part = block.filter(pc.equal(block[STATUS], status)).select(columns)
    if "source_file" in columns:  # plain strings on disk (dictionary-encoded in flight)
        i = part.schema.get_field_index("source_file")
        part = part.set_column(i, "source_file", pc.cast(part["source_file"], pa.string()))
    return part


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


# --------------------------------------------------------------------------- data-loss gate
class DataLossError(RuntimeError):
    """The clean job's data-loss gate failed. ``result`` holds the job's report fields (counts, reasons,
    the gate's verdict): the runtime writes them into report.json beside the error."""

    def __init__(self, message: str, result: dict[str, Any]):
        super().__init__(message)
        self.result = result


def data_gate(
    tables: dict[str, dict[str, Any]], max_quarantine_fraction: float, max_null_fraction: dict[str, float]
) -> dict[str, Any]:
    """The data-loss verdict of a clean run, from its per-table counts (``clean_table``'s rows_in,
    rows_quarantined, reasons and nulls): each table's quarantined share of input rows must be at most
    ``max_quarantine_fraction`` and each bounded column's null share (null tokens included: the readers
    make them nulls) at most its ``max_null_fraction``. The clean job and the pipeline's data_loss gate
    both decide by this function on these numbers."""
    checks: list[dict[str, Any]] = []
    reasons: dict[str, int] = {}
    for name, t in tables.items():
        n = int(t["rows_in"])
        share = t["rows_quarantined"] / n if n else 0.0
        checks.append(
            {
                "table": name,
                "check": "quarantine_fraction",
                "value": round(share, 6),
                "max": max_quarantine_fraction,
            }
        )
        for col, bound in sorted(max_null_fraction.items()):
            if col in t.get("nulls", {}):
                value = t["nulls"][col] / n if n else 0.0
                checks.append(
                    {"table": name, "check": f"null_fraction:{col}", "value": round(value, 6), "max": bound}
                )
        for r, k in t.get("reasons", {}).items():
            if not r.endswith("duplicate") and r != "duplicate_key":
                reasons[r] = reasons.get(r, 0) + int(k)
    for c in checks:
        c["ok"] = c["value"] <= c["max"]
    top = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    failures = [
        f"{c['table']}: {c['check']} {c['value']:.2%} > {c['max']:.2%}"
        + (
            f" ({tables[c['table']]['rows_quarantined']:,} of {tables[c['table']]['rows_in']:,} rows)"
            if c["check"] == "quarantine_fraction"
            else f" ({tables[c['table']]['nulls'][c['check'].split(':', 1)[1]]:,} null)"
        )
        for c in checks
        if not c["ok"]
    ]
    summary = (
        "data-loss gate passed"
        if not failures
        else "data-loss gate failed; top quarantine reasons: "  # first: a console shows the first 300 chars
        + (", ".join(f"{r} {k:,}" for r, k in top) or "none")
        + ". Failed: "
        + "; ".join(failures)
        + ". Check the input mapping (delimiter, columns, null_values, formats) and the quarantine examples, "
        "or raise max_quarantine_fraction / max_null_fraction if this loss is expected"
    )
    return {
        "passed": not failures,
        "max_quarantine_fraction": max_quarantine_fraction,
        "max_null_fraction": dict(max_null_fraction),
        "checks": checks,
        "failures": failures,
        "top_reasons": [[r, k] for r, k in top],
        "summary": summary,
    }
