"""Read the catalog and the interaction history that the index job turns into serving lookups.

Canonical Parquet (the clean / features jobs' outputs) is read as is; CSV / TSV / JSONL files are
mapped onto canonical names with the input's ``columns`` mapping. A history is either long
**events** (``user_id, item_id`` [+ ``event_type, timestamp, query, country, price``]) or
**sequences** (``user_id, items``; ``items`` a list or a space-separated string, optionally with a
held-out last ``item_id`` that is appended, e.g. RecBole ``.inter`` files).
"""

from __future__ import annotations

import glob
import os
from typing import Any

import pandas as pd

ITEM_COLUMNS = ("item_id", "title", "category", "brand", "price", "description")


def _files(path: str) -> list[str]:
    if any(ch in path for ch in "*?["):
        return sorted(glob.glob(path, recursive=True))
    if os.path.isdir(path):
        return sorted(p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True)
                      if os.path.isfile(p) and not os.path.basename(p).startswith((".", "_")))
    return [path]


def _format(path: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    ext = os.path.splitext(path)[1].lower()
    return {".parquet": "parquet", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
            ".xlsx": "excel"}.get(ext, "tsv")


def read_table(path: str, fmt: str = "auto", columns: dict[str, str] | None = None, preset: str | None = None) -> pd.DataFrame:
    """One input (file / dir / glob) -> a DataFrame with canonical column names."""
    if preset:
        raise ValueError(
            f"preset {preset!r}: the index job reads canonical tables; run the clean/features job with "
            "that preset first and point the input at its output, or give format + columns instead"
        )
    frames = []
    for f in _files(path):
        kind = _format(f, fmt)
        if kind == "parquet":
            frames.append(pd.read_parquet(f))
        elif kind in ("csv", "tsv"):
            frames.append(pd.read_csv(f, sep="," if kind == "csv" else "\t", dtype=str, keep_default_na=False,
                                      quoting=3 if kind == "tsv" else 0))
        elif kind == "jsonl":
            frames.append(pd.read_json(f, lines=True, dtype=False))
        elif kind == "excel":
            frames.append(pd.read_excel(f, dtype=str))
        else:
            raise ValueError(f"format {kind!r} is not readable here; use parquet, csv, tsv, jsonl or excel")
    if not frames:
        raise FileNotFoundError(f"no files under {path!r}")
    df = pd.concat(frames, ignore_index=True)
    if columns:
        missing = sorted(set(columns) - set(df.columns))
        if missing:
            raise ValueError(f"columns mapping names {missing} but {path!r} has columns {list(df.columns)}; fix the mapping")
        df = df.rename(columns=columns)
    return df


def canonical_items(df: pd.DataFrame, source: str) -> pd.DataFrame:
    if "item_id" not in df.columns or "title" not in df.columns:
        raise ValueError(f"items from {source!r} need item_id and title columns (got {list(df.columns)}); "
                         "map them with items.columns: {SOURCE_NAME: item_id, ...}")
    out = pd.DataFrame({"item_id": df["item_id"].astype(str), "title": df["title"].fillna("").astype(str)})
    for col in ("category", "brand", "description"):
        if col in df.columns:
            out[col] = df[col].astype("string")
    if "price" in df.columns:
        out["price"] = pd.to_numeric(df["price"], errors="coerce")
    out = out[out["item_id"].str.len() > 0].drop_duplicates("item_id", keep="last").reset_index(drop=True)
    return out


def history_to_events(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Either shape -> long events ``user_id, item_id, event_type, order`` (+ optional columns),
    ``order`` increasing in time within a user."""
    if "user_id" not in df.columns:
        raise ValueError(f"history from {source!r} needs a user_id column (got {list(df.columns)}); map it in history.columns")
    if "items" in df.columns:  # sequences
        seqs = df["items"].map(lambda v: v.split() if isinstance(v, str) else list(v))
        if "item_id" in df.columns:  # held-out target, appended as the most recent item
            seqs = [s + [str(t)] if isinstance(t, str) and t else s for s, t in zip(seqs, df["item_id"])]
        ev = pd.DataFrame({"user_id": df["user_id"].astype(str), "item_id": list(seqs)}).explode("item_id")
        ev = ev.dropna(subset=["item_id"])
        ev["order"] = ev.groupby("user_id").cumcount()
        ev["event_type"] = "buy"
        for col in ("country",):
            if col in df.columns:
                ev[col] = df.loc[ev.index, col].values
        return ev.reset_index(drop=True)
    if "item_id" not in df.columns:
        raise ValueError(f"history from {source!r} needs item_id (events) or items (sequences); got {list(df.columns)}")
    ev = df.copy()
    ev["user_id"] = ev["user_id"].astype(str)
    ev["item_id"] = ev["item_id"].astype(str)
    if "event_type" not in ev.columns:
        ev["event_type"] = "buy"
    if "timestamp" in ev.columns:
        ev = ev.sort_values("timestamp", kind="stable")
    ev["order"] = ev.groupby("user_id").cumcount()
    return ev.reset_index(drop=True)


def read_items(spec: dict[str, Any]) -> pd.DataFrame:
    return canonical_items(read_table(**spec), spec["path"])


def read_history(spec: dict[str, Any]) -> pd.DataFrame:
    return history_to_events(read_table(**spec), spec["path"])
