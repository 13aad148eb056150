"""Read the catalog, the interaction history and users for the index job through the data
adapters (``recsys.data.adapters.read_input``: presets, CSV / TSV / JSONL / Parquet / Excel with a
``columns`` mapping, clean / features outputs), then shape them for the serving lookups."""

from __future__ import annotations

import pandas as pd

from recsys.config import InputConfig
from recsys.data.adapters import read_input


def read_canonical(cfg: InputConfig, table: str) -> pd.DataFrame:
    """The canonical ``table`` (items / events / users) of ``cfg`` as pandas (serving lookups live
    in memory anyway)."""
    return read_input(cfg, table).to_pandas()


def canonical_items(df: pd.DataFrame, source: str) -> pd.DataFrame:
    if "item_id" not in df.columns or "title" not in df.columns:
        raise ValueError(
            f"items from {source!r} need item_id and title columns (got {list(df.columns)}); "
            "map them with items.columns: {SOURCE_NAME: item_id, ...} or use a preset"
        )
    out = pd.DataFrame({"item_id": df["item_id"].astype(str), "title": df["title"].fillna("").astype(str)})
    for col in ("category", "brand", "description"):
        if col in df.columns and df[col].notna().any():
            out[col] = df[col].astype("string")
    if "price" in df.columns and df["price"].notna().any():
        out["price"] = pd.to_numeric(df["price"], errors="coerce")
    if "stock" in df.columns and df["stock"].notna().any():  # the live catalog's stock policy reads it
        out["stock"] = pd.to_numeric(df["stock"], errors="coerce")
    if "source_row" in df.columns:  # keep the file's order (row i of every index = catalog row i)
        out = out.iloc[df["source_row"].to_numpy().argsort(kind="stable")]
    out = out[out["item_id"].str.len() > 0].drop_duplicates("item_id", keep="last").reset_index(drop=True)
    return out


def history_events(df: pd.DataFrame) -> pd.DataFrame:
    """Canonical events -> ``user_id, item_id, event_type, order`` (+ optional columns), ``order``
    increasing in time within a user."""
    ev = df.copy()
    ev["user_id"] = ev["user_id"].astype(str)
    ev["item_id"] = ev["item_id"].astype(str)
    keys = [c for c in ("timestamp", "source_row") if c in ev.columns]
    if keys:
        ev = ev.sort_values(keys, kind="stable")
    ev["order"] = ev.groupby("user_id").cumcount()
    return ev.reset_index(drop=True)


def read_items(cfg: InputConfig) -> pd.DataFrame:
    return canonical_items(read_canonical(cfg, "items"), cfg.path)


def read_history(cfg: InputConfig) -> pd.DataFrame:
    return history_events(read_canonical(cfg, "events"))


def read_users(cfg: InputConfig) -> pd.DataFrame:
    return read_canonical(cfg, "users")
