"""Read what the evaluate job needs as pandas: canonical events / sequences / items / pairs /
candidates tables, through the Data adapters (``recsys.data``: presets, any format) or straight
from Parquet written by an earlier stage."""

from __future__ import annotations

import glob
import logging
import os

import numpy as np
import pandas as pd

from recsys.config import InputConfig

log = logging.getLogger("recsys.evaluate")


def _is_parquet(cfg: InputConfig) -> bool:
    p = str(cfg.path)
    return (
        cfg.preset is None
        and not cfg.columns
        and (
            cfg.format == "parquet"
            or p.endswith(".parquet")
            or (
                cfg.format == "auto"
                and not any(p.endswith(s) for s in (".csv", ".tsv", ".txt", ".jsonl", ".json", ".xlsx"))
                and _dir_has_parquet(p)
            )
        )
    )


def _dir_has_parquet(p: str) -> bool:
    return os.path.isdir(p) and bool(glob.glob(os.path.join(p, "**", "*.parquet"), recursive=True))


def load_table(cfg: InputConfig, table: str | None = None) -> pd.DataFrame:
    """One canonical table as a DataFrame (Parquet read directly; anything else via recsys.data)."""
    if _is_parquet(cfg):
        return pd.read_parquet(cfg.path)
    from recsys.data.adapters import read_input  # lazy: pyarrow readers, non-Parquet only

    df = read_input(cfg, table, on_error="mark", keep_meta=True).to_pandas()
    bad = df["_error"].notna() if "_error" in df.columns else pd.Series(False, index=df.index)
    if bad.any():  # reported, never silent: the clean job quarantines such rows for inspection
        first = df.loc[bad].iloc[0]
        log.warning(
            "%s: skipped %d row(s) that do not convert (first: source_row %s: %s); run `recsys run clean` "
            "to quarantine them",
            cfg.path,
            int(bad.sum()),
            first.get("source_row"),
            first["_error"],
        )
    meta = [c for c in ("_error", "_raw", "source_file") if c in df.columns]
    out = df.loc[~bad].drop(columns=meta).reset_index(drop=True)
    out.attrs["skipped_rows"] = int(bad.sum())
    return out


def sequences_from_events(events: pd.DataFrame) -> pd.DataFrame:
    """events (user_id, item_id, timestamp[, source_row]) -> user_id, items, timestamps; each user's
    events in time order (file order breaks ties)."""
    need = {"user_id", "item_id"} - set(events.columns)
    if need:
        raise ValueError(f"events table lacks {sorted(need)}; expected canonical events (see docs/DATA.md)")
    ev = events.assign(user_id=events["user_id"].astype(str), item_id=events["item_id"].astype(str))
    keys = ["user_id"] + [c for c in ("timestamp", "source_row") if c in ev.columns]
    ev = ev.assign(_order=np.arange(len(ev))).sort_values(keys + ["_order"], kind="stable")
    g = ev.groupby("user_id", sort=False)
    out = pd.DataFrame({"items": g["item_id"].agg(list)})
    if "timestamp" in ev.columns:
        out["timestamps"] = g["timestamp"].agg(list)
    return out.reset_index()


def load_sequences(cfg: InputConfig) -> pd.DataFrame:
    """A canonical sequences table (user_id, items) as is, or one built from an events table."""
    df = load_table(cfg, "events") if not _is_parquet(cfg) else pd.read_parquet(cfg.path)
    skipped = df.attrs.get("skipped_rows", 0)
    if "items" in df.columns and "user_id" in df.columns:
        out = df.assign(user_id=df["user_id"].astype(str), items=[[str(i) for i in s] for s in df["items"]])
    else:
        out = sequences_from_events(df)
    out.attrs["skipped_rows"] = skipped
    return out


def load_candidates(cfg: InputConfig, source: str | None = None) -> dict[str, list[str]]:
    """Candidate lists (user_id, items[, source]) -> {user id: items}; ``source`` picks one file
    of a set that ships several (Games-6k: pop, bpr, sasrec)."""
    df = load_table(cfg, "candidates")
    if "source" in df.columns:
        sources = sorted(df["source"].dropna().unique())
        if source is None and len(sources) > 1:
            source = sources[0]
        if source is not None:
            if source not in sources:
                raise ValueError(f"protocol.candidate_source {source!r} not in the candidate files {sources}")
            df = df[df["source"] == source]
    return {str(u): [str(i) for i in items] for u, items in zip(df["user_id"], df["items"])}


def load_pairs(cfg: InputConfig) -> pd.DataFrame:
    """The canonical pairs table (left, right, label, split[, left_id, right_id]); ids default to the texts."""
    df = load_table(cfg, "pairs")
    need = {"left", "right", "label"} - set(df.columns)
    if need:
        raise ValueError(
            f"data.pairs lacks {sorted(need)}; expected the canonical pairs table (docs/DATA.md)"
        )
    if "split" not in df.columns:
        raise ValueError(
            "data.pairs has no split column (train/valid/test); use the product-matching preset or add one"
        )
    for side in ("left", "right"):
        if f"{side}_id" not in df.columns:
            df[f"{side}_id"] = df[side].astype(str)
    df["label"] = df["label"].astype(int)
    return df


def pair_split(
    df: pd.DataFrame, split: str, limit: int | None = None
) -> tuple[list[str], list[str], np.ndarray]:
    """(lefts, rights, labels) of the rows of ``split`` in a :func:`load_pairs` table, at most ``limit``
    (the first rows: the matching protocol's ``max_queries`` / ``max_valid_queries``)."""
    d = df[df["split"] == split]
    if limit:
        d = d.iloc[:limit]
    return (
        d["left"].fillna("").astype(str).tolist(),
        d["right"].fillna("").astype(str).tolist(),
        d["label"].to_numpy(),
    )
