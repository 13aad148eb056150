"""The store's features computed offline from an events table: the reference the online store must
agree with (a test replays the same events through the store and compares the Parquet snapshots),
and what a batch job computes for users the store has not seen.

Expects the canonical events columns ``user_id, item_id, event_type, timestamp`` (+ optional
``session_id, query, country, price``) and, for the profile, the items columns ``item_id, category,
brand, price``. Rows are applied in table order, like the store applies requests in arrival order.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from recsys.online.settings import StoreSettings
from recsys.online.store import MAX_TEXT, EntityState, StoreEvent, clip_text, unix_seconds


def store_events(
    events: pd.DataFrame, items: pd.DataFrame | None
) -> list[tuple[str, StoreEvent, dict[str, Any]]]:
    """``(user_id, StoreEvent, extras)`` per row, with the catalog's category / brand / price joined
    (the event's own price wins, as in /feedback)."""
    attrs = item_attributes(items)
    out = []
    for r in events.to_dict("records"):
        cat, brand, price = attrs.get(str(r["item_id"]), ("", "", None))
        p = r.get("price")
        if p is not None and not (isinstance(p, float) and math.isnan(p)):
            price = float(p)
        ts = unix_seconds(pd.Timestamp(r["timestamp"]))
        ev = StoreEvent(str(r["item_id"]), str(r["event_type"]), ts, cat, brand, price)
        extras = {k: r.get(k) for k in ("session_id", "query", "country")}
        out.append((str(r["user_id"]), ev, extras))
    return out


def item_attributes(items: pd.DataFrame | None) -> dict[str, tuple[str, str, float | None]]:
    """item_id -> (category, brand, price) ('' / None where the catalog lacks them)."""
    if items is None or items.empty:
        return {}
    n = len(items)
    cats = items["category"].astype("string").fillna("") if "category" in items else pd.Series([""] * n)
    brands = items["brand"].astype("string").fillna("") if "brand" in items else pd.Series([""] * n)
    prices = items["price"].astype("float64") if "price" in items else pd.Series([math.nan] * n)
    return {
        str(i): (str(c)[:MAX_TEXT], str(b)[:MAX_TEXT], None if math.isnan(p) else float(p))
        for i, c, b, p in zip(items["item_id"].tolist(), cats.tolist(), brands.tolist(), prices.tolist())
    }


def batch_states(events: pd.DataFrame, items: pd.DataFrame | None, s: StoreSettings) -> list[EntityState]:
    """Every user's state as the store would hold it after receiving these events one by one."""
    acc: dict[str, dict[str, Any]] = {}
    for uid, ev, extras in store_events(events, items):
        a = acc.setdefault(uid, {"ev": [], "q": [], "buy": {}, "cart": {}, "cat": {}, "brand": {}, "p": [],
                                 "country": None, "last": -math.inf})  # fmt: skip
        w = s.weight(ev.event_type)
        if w > 0:
            a["ev"].append((ev.ts, ev.event_type, ev.item_id))
            if ev.category:
                a["cat"].setdefault(ev.category, []).append((ev.ts, w))
            if ev.brand:
                a["brand"].setdefault(ev.brand, []).append((ev.ts, w))
            if ev.price is not None and ev.price > 0:
                a["p"].append((ev.ts, w, math.log(ev.price)))
        if ev.event_type == "buy":
            a["buy"][ev.item_id] = ev.ts
        if ev.event_type == "cart":
            a["cart"][ev.item_id] = ev.ts
        q = clip_text(extras.get("query")).strip()
        if q and s.max_queries > 0:
            a["q"] = ([q] + [x for x in a["q"] if x != q])[: s.max_queries]
        if clip_text(extras.get("country")):
            a["country"] = clip_text(extras["country"])
        a["last"] = max(a["last"], ev.ts)
    return [_finish(uid, a, s) for uid, a in acc.items()]


def _finish(uid: str, a: dict[str, Any], s: StoreSettings) -> EntityState:
    ref = a["last"]

    def decayed(pairs: list[tuple[float, float]]) -> float:
        return sum(w * 2 ** (-(ref - t) / s.half_life_s) for t, w in pairs)

    def top(d: dict[str, list[tuple[float, float]]]) -> tuple[tuple[str, float], ...]:
        scored = sorted(((k, decayed(v)) for k, v in d.items()), key=lambda kv: (-kv[1], kv[0]))
        return tuple(scored[: s.max_profile])

    def last_n(d: dict[str, float]) -> tuple[str, ...]:
        return tuple(k for k, _ in sorted(d.items(), key=lambda kv: (kv[1], kv[0]))[-s.max_purchases :])

    moments = [0.0, 0.0, 0.0]
    for t, w, lp in a["p"]:
        d = w * 2 ** (-(ref - t) / s.half_life_s)
        moments[0] += d
        moments[1] += d * lp
        moments[2] += d * lp * lp
    return EntityState(
        kind="u",
        id=uid,
        events=tuple(a["ev"][-s.max_events :]),
        queries=tuple(a["q"]),
        purchased=last_n(a["buy"]) if s.max_purchases else (),
        carted=last_n(a["cart"]) if s.max_purchases else (),
        categories=top(a["cat"]),
        brands=top(a["brand"]),
        country=a["country"],
        ref=ref,
        last=ref,
        price_moments=(moments[0], moments[1], moments[2]),
    )
