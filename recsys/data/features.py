"""Feature extraction: user timelines (one exchange by user), splits, sequences, features.

Plan (see docs/DATA.md for the outputs):
1. ``timelines``: events hash-partitioned once by user_id; per block a pyarrow group_by builds one
   row per user with time-ordered lists (items, timestamps, types, prices, sessions, queries, ...).
2. Row-local maps over timelines give sequences, LOO splits, time-split targets, user features and
   training pairs, each cut at the user's training cut-off (no leakage).
3. One exchange by item_id (training events only) gives item counts; rates are Beta-smoothed
   towards the global rate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from recsys.data.io import clear_dirs, filesystem, join
from recsys.data.layout import CLEAN, FEATURES, exists, read_pandas, table_path
from recsys.data.schema import TS
from recsys.data.shuffle import by_key, by_key_tasks, group_order, partitioned_by, per_file
from recsys.models.hub import resolve_model_path

if TYPE_CHECKING:
    from ray.data import Dataset

    from recsys.data.config import EmbeddingConfig, FeaturesConfig
    from recsys.runtime import JobContext

SEQ_EXCLUDE = ("impression", "search")
TIMELINE_COLS = (
    "item_id",
    "timestamp",
    "event_type",
    "price",
    "session_id",
    "query",
    "position",
    "country",
    "category",
)
PRICE_BANDS = (0, 10, 25, 50, 100, 250, np.inf)  # edges of the users' price_band (pd.cut)


@dataclass(frozen=True)
class FeatureParams:
    """What the per-block feature functions (Ray Data tasks) need, as plain values: built once by
    ``feature_params`` from the FeaturesConfig and the data (config objects never reach a task)."""

    protocol: str  # split.protocol: "loo" (per-user cut-off) or "time" (one cut-off, t1_us)
    t1_us: int  # start of the time-split validation window, us since the epoch
    seq_types: list[str] | None  # event types that form sequences (None: all but SEQ_EXCLUDE)
    min_len: int  # split.min_sequence: shorter users keep every event for training
    ref_us: int  # "now" of recency features: the newest event's time
    event_types: list[str]  # every event type present (one n_<type> count each)
    last_n: int  # last_items per user
    half_life_days: float  # recency weighting of category interest
    price_bands: tuple[float, ...]  # edges of price_band (pd.cut); PRICE_BANDS in the job
    max_pairs: int  # next-item training pairs per user
    item_category: dict[str, str] | None  # item_id -> category, when events carry no category
    titles: dict[str, str]  # item_id -> title (pairs texts); filled before the pairs step


@dataclass(frozen=True)
class UserModels:
    """Scaler + k-means centres + PCA fitted on a sample of user features, applied per block."""

    cols: list[str]
    mean: np.ndarray
    scale: np.ndarray
    centers: np.ndarray
    pca_mean: np.ndarray
    pca_components: np.ndarray


def _user_cutoffs(t: pa.Table, p: FeatureParams) -> np.ndarray:
    return cutoffs(t, p.protocol, p.t1_us, p.seq_types, p.min_len)


# --------------------------------------------------------------------------- 1. timelines
def timelines(block: pa.Table) -> pa.Table:
    """One row per user: lists of the user's events in time order."""
    if block.num_rows == 0:
        return pa.table({"user_id": pa.array([], pa.string())})
    keys = ["user_id", "timestamp"] + (["source_row"] if "source_row" in block.column_names else [])
    block = block.take(group_order(block, keys)).combine_chunks()  # users grouped, each in time order
    # the rows are grouped, so each user's lists are slices: offsets at the user boundaries (no hashing)
    user = block["user_id"].chunk(0) if block["user_id"].num_chunks else pa.array([], pa.string())
    same = pc.fill_null(pc.equal(user.slice(1), user.slice(0, len(user) - 1)), False)
    same = pc.or_(same, pc.and_(pc.is_null(user.slice(1)), pc.is_null(user.slice(0, len(user) - 1))))
    starts = np.concatenate([[0], np.flatnonzero(~same.to_numpy(zero_copy_only=False)) + 1]).astype(np.int32)
    offsets = pa.array(np.append(starts, len(user)).astype(np.int32))
    out = {"user_id": user.take(pa.array(starts))}
    for c in (c for c in TIMELINE_COLS if c in block.column_names):
        values = block[c].chunk(0) if block[c].num_chunks else pa.array([], block[c].type)
        out[c] = pa.ListArray.from_arrays(offsets, values)  # shape: (users,) of lists
    return pa.table(out)


# --------------------------------------------------------------------------- 2. per-user maps
def _seq_mask(types: pa.ListArray, seq_types: list[str] | None) -> pa.Array:
    flat = types.flatten()
    if seq_types:
        return pc.is_in(flat, pa.array(seq_types))
    return pc.invert(pc.is_in(flat, pa.array(SEQ_EXCLUDE)))


def _filter_lists(t: pa.Table, mask: pa.Array, cols: list[str]) -> dict[str, pa.Array]:
    """Apply a flat boolean mask to list columns of ``t`` (all lists aligned)."""
    parents = pc.list_parent_indices(t[cols[0]])
    kept_parents = pc.filter(parents, mask)
    counts = np.bincount(kept_parents.to_numpy(), minlength=t.num_rows)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return {
        c: pa.ListArray.from_arrays(offsets, pc.filter(t[c].combine_chunks().flatten(), mask)) for c in cols
    }


def sequences(block: pa.Table, seq_types: list[str] | None) -> pa.Table:
    """Timelines -> sequences table (user_id, items, timestamps) of the sequence event types."""
    t = block.combine_chunks()
    f = _filter_lists(t, _seq_mask(t["event_type"].combine_chunks(), seq_types), ["item_id", "timestamp"])
    out = pa.table({"user_id": t["user_id"], "items": f["item_id"], "timestamps": f["timestamp"]})
    return out.filter(pc.greater(pc.list_value_length(out["items"]), 0))


def loo_split(block: pa.Table, part: str, min_len: int) -> pa.Table:
    """Leave-one-out from sequences: train = all but the last two; valid/test = history + target."""
    t = block.filter(pc.greater_equal(pc.list_value_length(block["items"]), min_len))
    n = pc.list_value_length(t["items"])
    if part == "train":
        return pa.table(
            {
                "user_id": t["user_id"],
                "items": _head(t["items"], pc.subtract(n, 2)),
                "timestamps": _head(t["timestamps"], pc.subtract(n, 2)),
            }
        )
    cut = pc.subtract(n, 2 if part == "valid" else 1)
    return pa.table(
        {
            "user_id": t["user_id"],
            "history": _head(t["items"], cut),
            "history_ts": _head(t["timestamps"], cut),
            "target": _at(t["items"], cut),
            "target_ts": _at(t["timestamps"], cut),
        }
    )


def _head(lists: pa.ChunkedArray | pa.ListArray, lengths: pa.Array) -> pa.ListArray:
    """Each list cut to its first ``lengths[i]`` values."""
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    lengths = lengths.combine_chunks() if isinstance(lengths, pa.ChunkedArray) else lengths
    starts = lists.offsets.to_numpy()[:-1]
    ln = lengths.to_numpy()
    take = (
        np.concatenate([np.arange(s, s + k) for s, k in zip(starts, ln)])
        if len(ln)
        else np.array([], np.int64)
    )
    offsets = pa.array(np.concatenate([[0], np.cumsum(ln)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, lists.values.take(pa.array(take, pa.int64())))


def _at(lists: pa.ListArray | pa.ChunkedArray, idx: pa.Array) -> pa.Array:
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    idx = idx.combine_chunks() if isinstance(idx, pa.ChunkedArray) else idx
    pos = lists.offsets.to_numpy()[:-1] + idx.to_numpy()
    return lists.values.take(pa.array(pos, pa.int64()))


def cutoffs(
    block: pa.Table, protocol: str, t1_us: int, seq_types: list[str] | None, min_len: int
) -> np.ndarray:
    """Per user: events strictly before this time (us) are training events."""
    if protocol == "time":
        return np.full(block.num_rows, t1_us, np.int64)
    t = block.combine_chunks()
    f = _filter_lists(t, _seq_mask(t["event_type"].combine_chunks(), seq_types), ["timestamp"])["timestamp"]
    n = pc.list_value_length(f).to_numpy()
    out = np.full(block.num_rows, np.iinfo(np.int64).max, np.int64)  # short users: all events train
    ok = n >= min_len
    if ok.any():
        ts = pc.cast(f.values, pa.int64()).to_numpy()
        starts = f.offsets.to_numpy()[:-1]
        out[ok] = ts[starts[ok] + n[ok] - 2]  # the validation target's time
    return out


def time_targets(block: pa.Table, start_us: int, end_us: int, seq_types: list[str] | None) -> pa.Table:
    """Per user: history before ``start_us``, targets in [start_us, end_us) (time-split evaluation)."""
    t = block.combine_chunks()
    flat_ts = pc.cast(t["timestamp"].combine_chunks().flatten(), pa.int64())
    seq = _seq_mask(t["event_type"].combine_chunks(), seq_types)
    hist = _filter_lists(t, pc.and_(seq, pc.less(flat_ts, start_us)), ["item_id", "timestamp"])
    tgt = _filter_lists(
        t,
        pc.and_(seq, pc.and_(pc.greater_equal(flat_ts, start_us), pc.less(flat_ts, end_us))),
        ["item_id", "timestamp"],
    )
    out = pa.table(
        {
            "user_id": t["user_id"],
            "history": hist["item_id"],
            "history_ts": hist["timestamp"],
            "targets": tgt["item_id"],
            "targets_ts": tgt["timestamp"],
        }
    )
    return out.filter(pc.greater(pc.list_value_length(out["targets"]), 0))


def user_features(block: pa.Table, p: FeatureParams) -> pa.Table:
    """RFM, activity, type counts, price band, category affinity, recency-weighted interest, last-N items."""
    t = block.combine_chunks()
    cut = _user_cutoffs(t, p)
    parents = pc.list_parent_indices(t["item_id"]).to_numpy()
    ts = pc.cast(t["timestamp"].combine_chunks().flatten(), pa.int64()).to_numpy()
    keep = ts < cut[parents]
    df = pd.DataFrame(
        {
            "u": parents[keep],
            "ts": ts[keep],
            "type": t["event_type"].combine_chunks().flatten().to_numpy(zero_copy_only=False)[keep],
            "item": t["item_id"].combine_chunks().flatten().to_numpy(zero_copy_only=False)[keep],
        }
    )
    for c in ("price", "session_id", "category"):
        if c in t.column_names:
            df[c] = t[c].combine_chunks().flatten().to_numpy(zero_copy_only=False)[keep]
    if "category" not in df:
        df["category"] = df["item"].map(p.item_category) if p.item_category else None
    n_users = t.num_rows
    g = df.groupby("u")
    ref = p.ref_us
    feats = pd.DataFrame(index=pd.RangeIndex(n_users))
    feats["n_events"] = g.size()
    feats["recency_days"] = (ref - g["ts"].max()) / 86400e6
    feats["active_days"] = g["ts"].agg(lambda s: len(np.unique(s // 86_400_000_000)))
    feats["n_sessions"] = g["session_id"].nunique() if "session_id" in df else np.nan
    buys = df[df["type"] == "buy"]
    feats["frequency"] = buys.groupby("u").size()
    feats["monetary"] = buys.groupby("u")["price"].sum() if "price" in df else np.nan
    for et in p.event_types:
        feats[f"n_{et}"] = df[df["type"] == et].groupby("u").size()
    if "price" in df:
        feats["price_mean"] = g["price"].mean()
    feats = feats.fillna(
        {c: 0 for c in feats.columns if c.startswith("n_") or c in ("frequency", "monetary", "n_events")}
    )
    band = pd.cut(
        feats.get("price_mean", pd.Series(np.nan, index=feats.index)), list(p.price_bands), labels=False
    )
    feats["price_band"] = band
    # category affinity: share of the user's events in the top category; recency-weighted interest
    top_cat: list[str | None] = [None] * n_users
    affinity = np.full(n_users, np.nan)
    interest = np.full(n_users, np.nan)
    if df["category"].notna().any():
        w = np.exp(-np.log(2) * (ref - df["ts"].to_numpy()) / (p.half_life_days * 86400e6))
        cat = (
            df.assign(w=w)
            .dropna(subset=["category"])
            .groupby(["u", "category"])
            .agg(n=("w", "size"), w=("w", "sum"))
        )
        cat = cat.reset_index().sort_values(["u", "w"], ascending=[True, False])
        first = cat.drop_duplicates("u")
        tot = cat.groupby("u")[["n", "w"]].sum()
        for u, c, n_, w_ in zip(first["u"], first["category"], first["n"], first["w"]):
            top_cat[u] = str(c)
            affinity[u] = n_ / tot.loc[u, "n"]
            interest[u] = w_ / tot.loc[u, "w"] if tot.loc[u, "w"] > 0 else np.nan
    last = df.groupby("u")["item"].agg(lambda s: list(s.iloc[-p.last_n :]))
    out = {"user_id": t["user_id"]}
    for c in feats.columns:
        col = feats[c].to_numpy(dtype=float)
        out[c] = (
            pa.array(col, pa.float64(), mask=np.isnan(col))
            if c != "price_band"
            else pa.array(col, pa.float64(), mask=np.isnan(col))
        )
    out["top_category"] = pa.array(top_cat, pa.string())
    out["category_affinity"] = pa.array(affinity, pa.float64(), mask=np.isnan(affinity))
    out["category_interest"] = pa.array(interest, pa.float64(), mask=np.isnan(interest))
    if "country" in t.column_names:
        out["country"] = (
            pc.list_element(t["country"].combine_chunks(), 0) if t.num_rows else pa.array([], pa.string())
        )
    out["last_items"] = pa.array([last.get(u, []) for u in range(n_users)], pa.list_(pa.string()))
    out["cutoff"] = pa.array(cut, pa.int64(), mask=cut == np.iinfo(np.int64).max).cast(
        TS
    )  # null: no held-out part
    return pa.table(out)


def training_events(block: pa.Table, p: FeatureParams) -> pa.Table:
    """Flat training events (before each user's cut-off) with the columns item/query stats need."""
    t = block.combine_chunks()
    cut = _user_cutoffs(t, p)
    parents = pc.list_parent_indices(t["item_id"])
    ts = pc.cast(t["timestamp"].combine_chunks().flatten(), pa.int64())
    keep = pc.less(ts, pa.array(cut[parents.to_numpy()]))
    cols = {"user_id": pc.take(t["user_id"], parents)}
    for c in ("item_id", "event_type", "price", "query", "session_id", "position", "timestamp"):
        if c in t.column_names:
            cols[c] = t[c].combine_chunks().flatten()
    return pa.table(cols).filter(keep)


def item_counts(block: pa.Table, event_types: list[str]) -> pa.Table:
    """Per item: events per type, distinct users, price stats (one block holds all rows of its items)."""
    return item_totals(item_partials(block, event_types), event_types)


def item_partials(block: pa.Table, event_types: list[str]) -> pa.Table:
    """Map-side combine of ``item_counts`` over a block that holds ALL rows of its users (any items).

    Columns expected: item_id, user_id, event_type, optional price. Per item: popularity, n_<type>,
    n_users (distinct users of this block: exact when summed, since blocks share no user) and the
    price moments (price_n, price_mean, price_m2). Exchanging these instead of the events moves one row
    per (block, item) instead of one per event.
    """
    if (
        block.num_rows == 0 or "item_id" not in block.column_names
    ):  # typed even when empty: one schema for all blocks
        block = pa.table({c: pa.array([], pa.string()) for c in ("item_id", "user_id", "event_type")})
    price = block["price"] if "price" in block.column_names else pa.nulls(block.num_rows, pa.float64())
    block = pa.table(
        {
            "item_id": block["item_id"],
            "user_id": block["user_id"],
            "event_type": block["event_type"],
            "price": pc.cast(price, pa.float64()),
        }
    )  # price moments always present (null without prices)
    users = block.group_by(["item_id", "user_id"], use_threads=False).aggregate([])
    out = users.group_by("item_id", use_threads=False).aggregate([("user_id", "count")])
    out = out.rename_columns(["n_users" if c == "user_id_count" else c for c in out.column_names])
    g = block.group_by("item_id", use_threads=False).aggregate(
        [
            ([], "count_all"),
            ("price", "count"),
            ("price", "mean"),
            ("price", "variance", pc.VarianceOptions(ddof=0)),
        ]
    )
    out = out.join(
        pa.table(
            {
                "item_id": g["item_id"],
                "popularity": g["count_all"],
                "price_n": g["price_count"],
                "price_mean": g["price_mean"],
                "price_m2": pc.multiply(pc.cast(g["price_count"], pa.float64()), g["price_variance"]),
            }
        ),
        "item_id",
    )
    by_type = block.group_by(["item_id", "event_type"], use_threads=False).aggregate([("item_id", "count")])
    for et in event_types:
        sub = by_type.filter(pc.equal(by_type["event_type"], et)).select(["item_id", "item_id_count"])
        out = out.join(sub.rename_columns(["item_id", f"n_{et}"]), "item_id", join_type="left outer")
        out = out.set_column(
            out.schema.get_field_index(f"n_{et}"), f"n_{et}", pc.fill_null(out[f"n_{et}"], 0)
        )
    return out


def item_totals(block: pa.Table, event_types: list[str]) -> pa.Table:
    """Reduce side: sum the ``item_partials`` rows of each item (a block holds all partials of its items).

    Price mean and population std combine exactly (Chan et al.): M2 = sum(m2_k + n_k (mean_k - mean)^2).
    Output: item_id, n_users, popularity, price_mean, price_std (null: no priced event), n_<type> per type.
    """
    if "price_n" not in block.column_names:  # an empty block that lost its schema
        block = item_partials(pa.table({}), event_types)
    counts = ["n_users", "popularity"] + [f"n_{et}" for et in event_types]
    # Float sums depend on the order of the partials, and the exchange delivers them in any order:
    # a canonical order makes the totals bit-identical from run to run.
    block = block.sort_by(
        [(c, "ascending") for c in ("item_id", "price_n", "price_mean", "price_m2", *counts)]
    )
    out = block.group_by("item_id", use_threads=False).aggregate([(c, "sum") for c in counts])
    out = out.rename_columns([c.removesuffix("_sum") for c in out.column_names])
    n = pc.cast(block["price_n"], pa.float64())
    mean = pc.fill_null(block["price_mean"], 0.0)
    tot = (
        pa.table({"item_id": block["item_id"], "n": n, "s": pc.multiply(n, mean)})
        .group_by("item_id", use_threads=False)
        .aggregate([("n", "sum"), ("s", "sum")])
    )
    big_n = tot["n_sum"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        tot = tot.append_column("mu", pa.array(tot["s_sum"].to_numpy() / big_n, pa.float64()))
    j = pa.table(
        {"item_id": block["item_id"], "n": n, "mean": mean, "m2": pc.fill_null(block["price_m2"], 0.0)}
    ).join(tot.select(["item_id", "mu"]), "item_id", use_threads=False)
    dev = pc.subtract(j["mean"], j["mu"])  # shape: (partials,)
    j = pa.table({"item_id": j["item_id"], "m2": pc.add(j["m2"], pc.multiply(j["n"], pc.multiply(dev, dev)))})
    tot = tot.join(j.group_by("item_id", use_threads=False).aggregate([("m2", "sum")]), "item_id")
    big_n, mu = tot["n_sum"].to_numpy(), tot["mu"].to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(tot["m2_sum"].to_numpy() / big_n)
    empty = big_n == 0  # no priced event: null, as pyarrow's mean / stddev of nothing
    out = out.join(
        pa.table(
            {
                "item_id": tot["item_id"],
                "price_mean": pa.array(mu, pa.float64(), mask=empty),
                "price_std": pa.array(std, pa.float64(), mask=empty),
            }
        ),
        "item_id",
    )
    return out.select(["item_id", "n_users", "popularity", "price_mean", "price_std", *counts[2:]])


def training_item_partials(block: pa.Table, p: FeatureParams) -> pa.Table:
    """Timelines (one row per user) -> ``item_partials`` of their training events, in one pass."""
    ev = training_events(block, p)
    return item_partials(
        ev.select([c for c in ("item_id", "user_id", "event_type", "price") if c in ev.column_names]),
        p.event_types,
    )


def smooth_rates(block: pa.Table, prior: float, globals_: dict[str, float]) -> pa.Table:
    """Beta-smoothed CTR, add-to-cart and conversion rates: (k + prior*g) / (n + prior)."""

    def col(name: str) -> np.ndarray:
        return (
            block[name].to_numpy().astype(float) if name in block.column_names else np.zeros(block.num_rows)
        )

    exposures = col("n_impression")
    visits = col("n_view") + col("n_click")
    out = block
    for name, k, n in (
        ("ctr", col("n_click"), exposures),
        ("cart_rate", col("n_cart"), visits),
        ("conversion_rate", col("n_buy"), visits),
    ):
        g = globals_.get(name)
        val = (k + prior * g) / (n + prior) if g is not None else np.full(block.num_rows, np.nan)
        out = out.append_column(name, pa.array(val, pa.float64(), mask=np.isnan(val)))
    return out


def query_counts(block: pa.Table) -> pa.Table:
    """Per query: searches, clicks, buys, CTR (clicks per impression; per search if no impressions)."""
    t = block.filter(pc.is_valid(block["query"]))
    if t.num_rows == 0:
        return pa.table(
            {
                "query": pa.array([], pa.string()),
                "frequency": pa.array([], pa.int64()),
                "clicks": pa.array([], pa.int64()),
                "buys": pa.array([], pa.int64()),
                "ctr": pa.array([], pa.float64()),
            }
        )
    g = t.group_by(["query", "event_type"], use_threads=False).aggregate([("query", "count")]).to_pandas()
    wide = g.pivot_table(
        index="query", columns="event_type", values="query_count", aggfunc="sum", fill_value=0
    )
    freq = wide["search"] if "search" in wide else wide.sum(axis=1)
    clicks = wide["click"] if "click" in wide else 0 * freq
    buys = wide["buy"] if "buy" in wide else 0 * freq
    shown = (
        wide["impression"] if "impression" in wide else freq
    )  # CTR per impression when impressions are logged
    return pa.table(
        {
            "query": list(wide.index),
            "frequency": freq.astype("int64").to_numpy(),
            "clicks": np.asarray(clicks, np.int64),
            "buys": np.asarray(buys, np.int64),
            "ctr": (np.asarray(clicks, float) / np.maximum(np.asarray(shown, float), 1)),
        }
    )


def item_titles(items: pd.DataFrame) -> dict[str, str]:
    """item_id -> title of the items that have one (UCI rows without a Description are NaN in pandas:
    a NaN title is truthy and would reach a string column of the pairs)."""
    if "title" not in items:
        return {}
    has = items["title"].notna() & items["title"].astype("string").str.strip().ne("")
    return dict(zip(items.loc[has, "item_id"], items.loc[has, "title"].astype(str)))


def training_pairs(block: pa.Table, p: FeatureParams) -> pa.Table:
    """Query -> item pairs (clicked/carted/bought = 1, shown not clicked = 0) from training events;
    without queries, previous item -> next item from training sequences (label 1). Texts from titles."""
    titles = p.titles
    t = training_events(block, p)
    rows: dict[str, list[Any]] = {"left": [], "right": [], "label": [], "left_id": [], "right_id": []}
    if "query" in t.column_names and pc.any(pc.is_valid(t["query"])).as_py():
        df = (
            t.filter(pc.is_valid(t["query"]))
            .select(["session_id", "query", "item_id", "event_type"])
            .to_pandas()
        )
        pos = df[df["event_type"].isin(["click", "cart", "buy"])].drop_duplicates(["session_id", "item_id"])
        shown = df[df["event_type"] == "impression"].drop_duplicates(["session_id", "item_id"])
        neg = shown.merge(pos[["session_id", "item_id"]], how="left", indicator=True)
        neg = neg[neg["_merge"] == "left_only"]
        for frame, label in ((pos, 1), (neg, 0)):
            rows["left"] += frame["query"].tolist()
            rows["right"] += [titles.get(i) or i for i in frame["item_id"]]
            rows["label"] += [label] * len(frame)
            rows["left_id"] += frame["query"].tolist()
            rows["right_id"] += frame["item_id"].tolist()
    else:
        seq = sequences(
            pa.table(
                {
                    "user_id": t["user_id"],
                    "item_id": t["item_id"],
                    "timestamp": t["timestamp"],
                    "event_type": t["event_type"],
                }
            )
            .group_by("user_id", use_threads=False)
            .aggregate([("item_id", "list"), ("timestamp", "list"), ("event_type", "list")])
            .rename_columns(["user_id", "item_id", "timestamp", "event_type"]),
            p.seq_types,
        )
        for items in seq["items"].to_pylist():
            steps = list(zip(items[:-1], items[1:]))[-p.max_pairs :]
            for a, b in steps:
                if a == b:
                    continue
                rows["left"].append(titles.get(a) or a)
                rows["right"].append(titles.get(b) or b)
                rows["label"].append(1)
                rows["left_id"].append(a)
                rows["right_id"].append(b)
    n = len(rows["label"])
    return pa.table(
        {
            "left": pa.array(rows["left"], pa.string()),
            "right": pa.array(rows["right"], pa.string()),
            "label": pa.array(rows["label"], pa.int32()),
            "left_id": pa.array(rows["left_id"], pa.string()),
            "right_id": pa.array(rows["right_id"], pa.string()),
            "split": pa.array(["train"] * n, pa.string()),
        }
    )


# --------------------------------------------------------------------------- text
class Encoder:
    """Ray Data actor: item texts -> L2-normalized mean-pooled transformer embeddings."""

    def __init__(self, model_path: str, max_length: int, device: str = "cpu"):
        import torch  # lazy: torch + transformers cost seconds; only the optional embeddings step needs them

        # lazy: transformers costs seconds; only the embeddings step needs it
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModel.from_pretrained(model_path).eval().to(device)
        self.device, self.max_length = device, max_length

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = [t or "" for t in batch["text"].to_pylist()]
        enc = self.tok(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with self.torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state  # [B, T, H]
            mask = enc["attention_mask"].unsqueeze(-1).float()  # [B, T, 1]
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # [B, H]
            emb = self.torch.nn.functional.normalize(emb, dim=-1).cpu().numpy().astype(np.float32)
        return pa.table(
            {"item_id": batch["item_id"], "embedding": pa.array(list(emb), pa.list_(pa.float32()))}
        )


def tfidf_terms(ids: list[str], texts: list[str], top: int, max_features: int) -> pa.Table:
    """Top TF-IDF terms per item (sklearn over the catalog's texts)."""
    # lazy: scikit-learn costs ~1 s on every Ray worker that imports this module for its row functions
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(
        max_features=max_features, stop_words="english", token_pattern=r"(?u)\b[a-zA-Z0-9][a-zA-Z0-9]+\b"
    )
    try:
        m = vec.fit_transform([t or "" for t in texts]).tocsr()
    except ValueError:  # empty vocabulary
        return pa.table({"item_id": ids, "tfidf_terms": pa.array([[] for _ in ids], pa.list_(pa.string()))})
    vocab = np.asarray(vec.get_feature_names_out())
    terms = []
    for i in range(m.shape[0]):
        row = m.getrow(i)
        order = np.argsort(-row.data)[:top]
        terms.append(vocab[row.indices[order]].tolist())
    return pa.table(
        {"item_id": pa.array(ids, pa.string()), "tfidf_terms": pa.array(terms, pa.list_(pa.string()))}
    )


# --------------------------------------------------------------------------- orchestration
def build_features(cfg: FeaturesConfig, data_dir: str, out: str, ctx: JobContext) -> dict[str, Any]:
    """Run every step of the features job; returns counts, cut-offs and artifact paths."""
    import ray  # lazy: only the driver-side orchestration needs Ray; the row functions run without it

    # a re-run into the same output_dir replaces every table (write_parquet would append to them)
    clear_dirs([join(out, name) for name in vars(FEATURES).values() if not name.endswith(".json")])
    if not exists(data_dir, CLEAN.events):
        return _pairs_only(data_dir, out)
    seq_types = cfg.split.sequence_events
    events = ray.data.read_parquet(table_path(data_dir, CLEAN.events))
    items = read_pandas(data_dir, CLEAN.items) if exists(data_dir, CLEAN.items) else None
    counts: dict[str, int] = {}
    with ctx.timer("timelines"):
        if partitioned_by(table_path(data_dir, CLEAN.events)) == [
            "user_id"
        ]:  # the clean job's layout: no exchange
            tl = per_file(table_path(data_dir, CLEAN.events), timelines).materialize()
        else:
            tl = by_key(events, "user_id", timelines, partitions=cfg.partitions).materialize()
        counts["users"] = tl.count()
    with ctx.timer("time_cutoffs"):
        sample = np.concatenate(
            [np.asarray(r["ts"]) for r in tl.map_batches(_ts_sample, batch_format="pyarrow").take_all()]
            or [np.zeros(1)]
        )
        t1, t2 = (int(np.quantile(sample, q)) for q in (cfg.split.time_valid, cfg.split.time_test))
        ref_us = int(sample.max())
    types = sorted({r["t"] for r in tl.map_batches(_types, batch_format="pyarrow").take_all()})
    item_category = None
    if items is not None and "category" in items and items["category"].notna().any():
        item_category = dict(zip(items["item_id"], items["category"]))
    p = FeatureParams(
        protocol=cfg.split.protocol,
        t1_us=t1,
        seq_types=seq_types,
        min_len=cfg.split.min_sequence,
        ref_us=ref_us,
        event_types=types,
        last_n=cfg.last_n,
        half_life_days=cfg.recency_half_life_days,
        price_bands=PRICE_BANDS,
        max_pairs=cfg.max_pairs_per_user,
        item_category=item_category,
        titles={},
    )
    with ctx.timer("sequences_splits"):
        seqs = tl.map_batches(
            sequences, batch_format="pyarrow", fn_kwargs={"seq_types": seq_types}
        ).materialize()
        seqs.write_parquet(join(out, FEATURES.sequences))
        counts["sequences"] = seqs.count()
        for part, name in (
            ("train", FEATURES.loo_train),
            ("valid", FEATURES.loo_valid),
            ("test", FEATURES.loo_test),
        ):
            seqs.map_batches(
                loo_split, batch_format="pyarrow", fn_kwargs={"part": part, "min_len": cfg.split.min_sequence}
            ).write_parquet(join(out, name))
        for lo, hi, name in (
            (None, t1, FEATURES.time_train),
            (t1, t2, FEATURES.time_valid),
            (t2, None, FEATURES.time_test),
        ):
            events.map_batches(
                _time_window, batch_format="pyarrow", fn_kwargs={"lo": lo, "hi": hi}
            ).write_parquet(join(out, name))
        for lo, hi, name in ((t1, t2, FEATURES.time_valid_targets), (t2, 2**62, FEATURES.time_test_targets)):
            tl.map_batches(
                time_targets,
                batch_format="pyarrow",
                fn_kwargs={"start_us": lo, "end_us": hi, "seq_types": seq_types},
            ).write_parquet(join(out, name))
    with ctx.timer("user_features"):
        uf = tl.map_batches(user_features, batch_format="pyarrow", fn_kwargs={"p": p}).materialize()
    with ctx.timer("item_features"):
        train_ev = tl.map_batches(training_events, batch_format="pyarrow", fn_kwargs={"p": p})
        # map-side combine: timeline rows are whole users, so per-batch partial counts sum exactly
        partials = tl.map_batches(training_item_partials, batch_format="pyarrow", fn_kwargs={"p": p})
        # the partials are small (items x blocks): plain tasks combine them faster than a Ray Data shuffle
        ic = by_key_tasks(
            partials,
            "item_id",
            item_totals,
            partitions=cfg.partitions,
            fn_kwargs={"event_types": types},
            partition_mb=cfg.exchange.partition_mb,
        )
        count_cols = [c for c in ic.schema().names if c.startswith("n_") and c != "n_users"]
        # one aggregation for all columns (a Ray Data aggregate per column costs an execution each)
        got = ic.sum(count_cols) if count_cols else None  # a dict; a scalar for one column; None when empty
        sums = (
            {c: got[f"sum({c})"] for c in count_cols}
            if isinstance(got, dict)
            else ({count_cols[0]: got} if got is not None else {})
        )
        sums = {c: v or 0 for c, v in sums.items()}
        visits = sums.get("n_view", 0) + sums.get("n_click", 0)
        g = {
            "ctr": sums.get("n_click", 0) / sums["n_impression"] if sums.get("n_impression") else None,
            "cart_rate": sums.get("n_cart", 0) / visits if visits else None,
            "conversion_rate": sums.get("n_buy", 0) / visits if visits else None,
        }
        itf = ic.map_batches(
            smooth_rates, batch_format="pyarrow", fn_kwargs={"prior": cfg.prior_strength, "globals_": g}
        )
        if p.item_category:
            itf = itf.map_batches(_add_category, batch_format="pyarrow", fn_kwargs={"cats": p.item_category})
        itf.write_parquet(join(out, FEATURES.item_features))
        counts["item_features"] = ic.count()
    with ctx.timer("query_features"):
        if "query" in events.schema().names:
            q = by_key(
                train_ev.select_columns(["query", "event_type"]),
                "query",
                query_counts,
                partitions=cfg.partitions,
            )
            q.write_parquet(join(out, FEATURES.queries))
    with ctx.timer("items_text"):
        titles = {}
        if items is not None:
            items["text"] = (
                items[[c for c in ("title", "category", "brand") if c in items]]
                .astype("string")
                .fillna("")
                .agg(" | ".join, axis=1)
                .str.strip(" |")
            )
            titles = item_titles(items)
            _write_pandas(items, join(out, FEATURES.items))
            counts["items"] = len(items)
            text_tab = tfidf_terms(
                items["item_id"].tolist(), items["text"].tolist(), cfg.tfidf_terms, cfg.tfidf_max_features
            )
            if cfg.embeddings.enabled and items["text"].str.len().gt(0).any():
                text_tab = _left_join_keep_lists(text_tab, _embed(items, cfg.embeddings), "item_id")
            _write_arrow(text_tab, join(out, FEATURES.text_features))
    with ctx.timer("pairs"):
        pairs_dir = table_path(data_dir, CLEAN.pairs)
        if exists(data_dir, CLEAN.pairs):
            ray.data.read_parquet(pairs_dir).write_parquet(join(out, FEATURES.pairs))
        else:
            pp = dataclasses.replace(p, titles=titles)
            tl.map_batches(training_pairs, batch_format="pyarrow", fn_kwargs={"p": pp}).write_parquet(
                join(out, FEATURES.pairs)
            )
        if exists(data_dir, CLEAN.candidates):
            ray.data.read_parquet(table_path(data_dir, CLEAN.candidates)).write_parquet(
                join(out, FEATURES.candidates)
            )
    with ctx.timer("segments_pca_selection"):
        uf, selection = segments_and_selection(uf, tl, cfg, p)
        uf.write_parquet(join(out, FEATURES.user_features))
        with open(join(out, FEATURES.selection), "w") as fh:
            json.dump(selection, fh, indent=2, default=float)
    with ctx.timer("manifest"):
        manifest = feature_manifest(
            out,
            {
                "protocol": cfg.split.protocol,
                "time_valid_start": _iso(t1),
                "time_test_start": _iso(t2),
                "loo": "per user: before the validation target",
            },
        )
        with open(join(out, FEATURES.manifest), "w") as fh:
            json.dump(manifest, fh, indent=2, default=str)
    return {
        "counts": counts,
        "cutoffs": {"time_valid_start": _iso(t1), "time_test_start": _iso(t2)},
        "event_types": types,
        "feature_selection": selection.get("top", []),
    }


def _pairs_only(data_dir: str, out: str) -> dict[str, Any]:
    """A matching set (Ditto pairs) has no events: nothing to split or aggregate; the pairs, which
    carry their own train/valid/test `split`, are handed on as the features' pairs table."""
    import ray  # lazy: only the driver-side orchestration needs Ray; the row functions run without it

    if not exists(data_dir, CLEAN.pairs):
        raise ValueError(
            f"data={data_dir!r} has neither an events nor a pairs table: point `data` at a clean "
            "job's output_dir (e.g. runs/clean/local) and run the clean job first"
        )
    pairs = ray.data.read_parquet(table_path(data_dir, CLEAN.pairs)).materialize()
    pairs.write_parquet(join(out, FEATURES.pairs))
    counts = {"pairs": pairs.count()}
    if (
        "split" in pairs.schema().names
    ):  # per-block counts: a groupby would shuffle into 200 partitions for 3 keys
        for row in pairs.map_batches(_split_counts, batch_format="pyarrow").take_all():
            key = f"pairs_{row['split']}"
            counts[key] = counts.get(key, 0) + row["n"]
    with open(join(out, FEATURES.manifest), "w") as fh:
        json.dump(
            feature_manifest(out, {"protocol": "pairs: the source's own split column"}),
            fh,
            indent=2,
            default=str,
        )
    return {"counts": counts, "cutoffs": None, "event_types": [], "feature_selection": []}


def _split_counts(block: pa.Table) -> pa.Table:
    t = pa.table({"split": pc.fill_null(block["split"].cast(pa.string()), "none")})
    return (
        t.group_by("split", use_threads=False).aggregate([("split", "count")]).rename_columns(["split", "n"])
    )


def _iso(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.timezone.utc).isoformat()


def _ts_sample(block: pa.Table, k: int = 20_000) -> pa.Table:
    flat = pc.cast(block["timestamp"].combine_chunks().flatten(), pa.int64()).to_numpy()
    if len(flat) > k:
        flat = np.random.default_rng(len(flat)).choice(flat, k, replace=False)
    return pa.table({"ts": [flat.tolist()]})


def _types(block: pa.Table) -> pa.Table:
    return pa.table({"t": pc.unique(block["event_type"].combine_chunks().flatten()).drop_null()})


def _time_window(block: pa.Table, lo: int | None, hi: int | None) -> pa.Table:
    ts = pc.cast(block["timestamp"], pa.int64())
    mask = pa.array(np.ones(block.num_rows, bool))
    if lo is not None:
        mask = pc.and_(mask, pc.greater_equal(ts, lo))
    if hi is not None:
        mask = pc.and_(mask, pc.less(ts, hi))
    return block.filter(mask)


def _add_category(block: pa.Table, cats: dict[str, str]) -> pa.Table:
    return block.append_column(
        "category", pa.array([cats.get(i) for i in block["item_id"].to_pylist()], pa.string())
    )


def _write_pandas(df: pd.DataFrame, path: str) -> None:
    _write_arrow(pa.Table.from_pandas(df, preserve_index=False), path)


def _write_arrow(table: pa.Table, path: str) -> None:
    fs, inner = filesystem(path)
    fs.create_dir(inner, recursive=True)
    pq.write_table(table, f"{inner}/part-0.parquet", filesystem=fs)


def _left_join_keep_lists(left: pa.Table, right: pa.Table, key: str) -> pa.Table:
    """Left join on a unique ``key`` of ``right`` that keeps list columns (tf-idf terms, embeddings):
    Arrow's hash join refuses list-typed non-key fields. Rows of ``left`` without a match get nulls."""
    idx = pc.index_in(left[key], value_set=right[key])  # [len(left)] position in right, or null
    for name in right.column_names:
        if name != key:
            left = left.append_column(name, right[name].take(idx))
    return left


def _embed(items: pd.DataFrame, emb_cfg: EmbeddingConfig) -> pa.Table:
    import ray  # lazy: only the driver-side orchestration needs Ray; the row functions run without it

    df = (
        items[["item_id", "text"]].head(emb_cfg.max_items)
        if emb_cfg.max_items
        else items[["item_id", "text"]]
    )
    ds = ray.data.from_arrow(pa.Table.from_pandas(df, preserve_index=False))
    device = "cuda" if emb_cfg.num_gpus > 0 else "cpu"
    out = ds.map_batches(
        Encoder,
        batch_format="pyarrow",
        batch_size=emb_cfg.batch_size,
        concurrency=emb_cfg.concurrency,
        num_gpus=emb_cfg.num_gpus or None,
        fn_constructor_kwargs={
            "model_path": resolve_model_path(emb_cfg.model.name_or_path),
            "max_length": emb_cfg.model.max_length,
            "device": device,
        },
    )
    table = pa.concat_tables(ray.get(out.to_arrow_refs()))
    return table.set_column(0, "item_id", table["item_id"].cast(pa.string()))


DENSE = (
    "n_events",
    "recency_days",
    "active_days",
    "n_sessions",
    "frequency",
    "monetary",
    "price_mean",
    "category_affinity",
)


def segments_and_selection(
    uf: Dataset, tl: Dataset, cfg: FeaturesConfig, p: FeatureParams
) -> tuple[Dataset, dict[str, Any]]:
    """K-means segments and PCA fitted on a bounded sample of user features (sklearn), applied to all
    users in parallel; mutual information / chi2 / correlation of features against purchase."""
    # lazy: scikit-learn costs ~1 s on every Ray worker that imports this module for its row functions
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA  # lazy: scikit-learn, as above
    from sklearn.feature_selection import chi2, mutual_info_classif  # lazy: scikit-learn, as above
    from sklearn.preprocessing import StandardScaler  # lazy: scikit-learn, as above

    cols = [c for c in uf.schema().names if c in DENSE or (c.startswith("n_") and c != "n_users")]
    n = uf.count()
    frac = min(1.0, 50_000 / max(n, 1))
    sample = (
        (uf.random_sample(frac, seed=cfg.seed) if frac < 1 else uf)
        .select_columns(["user_id", *cols])
        .to_pandas()
    )
    x = sample[cols].astype(float).fillna(0.0).to_numpy()
    keep = x.std(axis=0) > 0
    cols = [c for c, k in zip(cols, keep) if k]
    x = x[:, keep]
    if len(cols) == 0 or len(sample) < cfg.segments:
        return uf, {"skipped": "not enough users or no varying dense feature"}
    scaler = StandardScaler().fit(np.log1p(np.abs(x)) * np.sign(x))
    xs = scaler.transform(np.log1p(np.abs(x)) * np.sign(x))
    km = KMeans(cfg.segments, n_init=4, random_state=cfg.seed).fit(xs)
    pca = PCA(min(cfg.pca_components, len(cols)), random_state=cfg.seed).fit(xs)
    model = UserModels(
        cols=cols,
        mean=scaler.mean_,
        scale=scaler.scale_,
        centers=km.cluster_centers_,
        pca_mean=pca.mean_,
        pca_components=pca.components_,
    )
    uf = uf.map_batches(_apply_models, batch_format="pyarrow", fn_kwargs={"m": model})
    # purchase label: did the user buy after the cut-off (the held-out part)?
    lab = tl.map_batches(_bought_after, batch_format="pyarrow", fn_kwargs={"p": p}).to_pandas()
    df = sample.merge(lab, on="user_id", how="left").fillna({"bought": 0})
    y = df["bought"].astype(int).to_numpy()
    sel: dict[str, Any] = {
        "label": "bought after the user's training cut-off",
        "n_users": len(df),
        "positive_rate": float(y.mean()) if len(y) else None,
        "explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
    }
    xf = df[cols].astype(float).fillna(0.0).to_numpy()
    sel["correlation"] = pd.DataFrame(xf, columns=cols).corr().round(4).fillna(0).to_dict()
    if 0 < y.sum() < len(y):
        mi = mutual_info_classif(xf, y, random_state=cfg.seed)
        ch, pv = chi2(np.clip(xf, 0, None), y)
        sel["features"] = {
            c: {
                "mutual_info": float(m),
                "chi2": float(np.nan_to_num(c2)),
                "p_value": float(np.nan_to_num(pp, nan=1.0)),
                "pearson_with_label": float(np.nan_to_num(np.corrcoef(xf[:, i], y)[0, 1])),
            }
            for i, (c, m, c2, pp) in enumerate(zip(cols, mi, ch, pv))
        }
        sel["top"] = sorted(sel["features"], key=lambda c: -sel["features"][c]["mutual_info"])[:5]
    else:
        sel["features"] = {}
        sel["skipped"] = "label is constant (no purchases after the cut-off, or all users bought)"
    return uf, sel


def _apply_models(block: pa.Table, m: UserModels) -> pa.Table:
    x = np.column_stack([block[c].to_numpy(zero_copy_only=False).astype(float) for c in m.cols])
    x = np.nan_to_num(x)
    xs = (np.log1p(np.abs(x)) * np.sign(x) - m.mean) / m.scale
    seg = ((xs[:, None, :] - m.centers[None]) ** 2).sum(-1).argmin(1)  # [N]
    pcs = (xs - m.pca_mean) @ m.pca_components.T  # [N, k]
    block = block.append_column("segment", pa.array(seg.astype(np.int32)))
    for i in range(pcs.shape[1]):
        block = block.append_column(f"pca_{i}", pa.array(pcs[:, i]))
    return block


def _bought_after(block: pa.Table, p: FeatureParams) -> pa.Table:
    t = block.combine_chunks()
    cut = _user_cutoffs(t, p)
    parents = pc.list_parent_indices(t["item_id"]).to_numpy()
    ts = pc.cast(t["timestamp"].combine_chunks().flatten(), pa.int64()).to_numpy()
    etype = t["event_type"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    after = (ts >= cut[parents]) & (etype == "buy")
    bought = np.bincount(parents[after], minlength=t.num_rows) > 0
    return pa.table({"user_id": t["user_id"], "bought": bought.astype(np.int8)})


def feature_manifest(out: str, cutoffs_: dict[str, Any]) -> dict[str, Any]:
    """Name, dtype, statistics and source of every feature column (full-table stats via pyarrow.dataset)."""
    sources = {
        FEATURES.user_features: "clean events before each user's cut-off (per-user timelines)",
        FEATURES.item_features: "clean training events, one exchange by item_id, Beta-smoothed rates",
        FEATURES.queries: "clean training events with a query",
        FEATURES.text_features: "items text: TF-IDF (sklearn), embeddings (MiniLM actor pool)",
    }
    features = []
    for table, source in sources.items():
        fs, inner = filesystem(join(out, table))
        try:
            data = pads.dataset(inner, filesystem=fs, format="parquet")
        except (FileNotFoundError, OSError):
            continue
        for field in data.schema:
            col = data.to_table(columns=[field.name])[field.name]
            stats: dict[str, Any] = {"count": len(col), "nulls": col.null_count}
            if pa.types.is_integer(field.type) or pa.types.is_floating(field.type):
                mm = pc.min_max(col)
                stats |= {
                    "mean": pc.mean(col).as_py(),
                    "std": pc.stddev(col).as_py(),
                    "min": mm["min"].as_py(),
                    "max": mm["max"].as_py(),
                }
            elif pa.types.is_string(field.type):
                stats["distinct"] = pc.count_distinct(col).as_py()
            features.append(
                {
                    "table": table,
                    "name": field.name,
                    "dtype": str(field.type),
                    "stats": stats,
                    "source": source,
                }
            )
    return {"cutoffs": cutoffs_, "features": features}
