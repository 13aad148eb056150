"""Serving lookups computed from the catalog and the history: item popularity, popularity lists by
country and category (the cold-start fallbacks), per-user recent / purchased items, country,
category affinity and price band, and past-query statistics for autocomplete."""

from __future__ import annotations

import json
from typing import cast

import numpy as np
import pandas as pd


def item_popularity(
    items: pd.DataFrame, events: pd.DataFrame | None, event_weights: dict[str, float]
) -> np.ndarray:
    """Weighted interaction count per catalog row (float64 [N])."""
    if events is None or events.empty:
        return np.zeros(len(items))
    w = events["event_type"].map(event_weights).fillna(1.0)
    pop = w.groupby(events["item_id"]).sum()
    return cast(np.ndarray, items["item_id"].map(pop).fillna(0.0).to_numpy(dtype=np.float64))


def popular_lists(
    items: pd.DataFrame,
    events: pd.DataFrame | None,
    popularity: np.ndarray,
    event_weights: dict[str, float],
    top_n: int,
) -> pd.DataFrame:
    """``segment_type`` (global / country / category), ``segment``, ``items`` (most popular first)."""
    rows = []
    order = np.argsort(-popularity, kind="stable")[:top_n]
    rows.append(("global", "*", items["item_id"].to_numpy()[order].tolist()))
    if "category" in items.columns:
        cat = items.assign(_pop=popularity).dropna(subset=["category"])
        for c, grp in cat.groupby("category", sort=True):
            rows.append(
                (
                    "category",
                    str(c),
                    grp.sort_values("_pop", ascending=False, kind="stable")["item_id"].head(top_n).tolist(),
                )
            )
    if events is not None and "country" in events.columns:
        ev = events.dropna(subset=["country"])
        w = ev["event_type"].map(event_weights).fillna(1.0)
        by = w.groupby([ev["country"], ev["item_id"]]).sum().reset_index(name="w")
        for c, grp in by.groupby("country", sort=True):
            rows.append(
                (
                    "country",
                    str(c),
                    grp.sort_values("w", ascending=False, kind="stable")["item_id"].head(top_n).tolist(),
                )
            )
    return pd.DataFrame(rows, columns=["segment_type", "segment", "items"])


def user_lookup(
    items: pd.DataFrame,
    events: pd.DataFrame | None,
    users: pd.DataFrame | None,
    recent_n: int,
    purchase_events: list[str],
) -> pd.DataFrame:
    """One row per known user: ``country, recent_items, purchased, category_affinity`` (JSON
    category -> share), ``mean_price`` (NaN when the catalog has no prices)."""
    cols = ["user_id", "country", "recent_items", "purchased", "category_affinity", "mean_price"]
    if events is None or events.empty:
        base = users[["user_id"]].astype(str).copy() if users is not None else pd.DataFrame({"user_id": []})
        base["recent_items"] = [[] for _ in range(len(base))]
        base["purchased"] = [[] for _ in range(len(base))]
    else:
        ev = events.sort_values(["user_id", "order"], kind="stable")
        recent = (
            ev.drop_duplicates(["user_id", "item_id"], keep="last")
            .groupby("user_id")["item_id"]
            .agg(lambda s: s.tolist()[-recent_n:])
        )
        bought = (
            ev[ev["event_type"].isin(purchase_events)]
            .groupby("user_id")["item_id"]
            .agg(lambda s: sorted(set(s)))
        )
        base = pd.DataFrame({"recent_items": recent}).join(pd.DataFrame({"purchased": bought}), how="left")
        base["purchased"] = base["purchased"].map(lambda v: v if isinstance(v, list) else [])
        base = base.reset_index().rename(columns={"index": "user_id"})
    base["user_id"] = base["user_id"].astype(str)
    long = (
        base[["user_id", "recent_items"]].explode("recent_items").rename(columns={"recent_items": "item_id"})
    )
    long = long.dropna(subset=["item_id"]).merge(items, on="item_id", how="inner")
    base["category_affinity"] = "{}"
    base["mean_price"] = float("nan")
    if "category" in long.columns and len(long):
        shares = (
            long.dropna(subset=["category"])
            .groupby("user_id")["category"]
            .value_counts(normalize=True)
            .round(4)
        )
        aff = (
            shares.reset_index()
            .groupby("user_id")
            .apply(
                lambda g: json.dumps({str(c): float(v) for c, v in zip(g["category"], g.iloc[:, -1])}),
                include_groups=False,
            )
        )
        base["category_affinity"] = base["user_id"].map(aff).fillna("{}")
    if "price" in long.columns and len(long):
        base["mean_price"] = base["user_id"].map(long.groupby("user_id")["price"].mean()).astype(float)
    country = None
    if users is not None and "country" in users.columns:
        country = users.assign(user_id=users["user_id"].astype(str)).set_index("user_id")["country"]
    elif events is not None and "country" in events.columns:
        country = (
            events.dropna(subset=["country"]).groupby("user_id")["country"].agg(lambda s: s.mode().iloc[0])
        )
    base["country"] = base["user_id"].map(country) if country is not None else None
    return base[cols]


def query_stats(events: pd.DataFrame | None, conversion_events: list[str]) -> pd.DataFrame:
    """``query, count, conversions`` from events that carry a query (empty when none do)."""
    if events is None or "query" not in events.columns:
        return pd.DataFrame({"query": [], "count": [], "conversions": []})
    ev = events.dropna(subset=["query"])
    ev = ev[ev["query"].astype(str).str.strip().str.len() > 0]
    conv = ev["event_type"].isin(conversion_events)
    out = ev.assign(_conv=conv).groupby("query").agg(count=("query", "size"), conversions=("_conv", "sum"))
    return out.reset_index()
