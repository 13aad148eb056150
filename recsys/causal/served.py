"""The Serve app's feedback (its /feedback Parquet sink, ``hour=*/part-*.parquet``) as a click log.

Feedback event columns used: ``user_id, item_id, event_type`` (impression / click / ...), ``query``,
``position``, ``request_id``, ``arm``, ``policy_id``, ``propensity`` (older files without the last two read
as null). One impression row per (request, item) shown:

- ``session_id`` = the response's ``request_id`` (the page shown); impressions sent without one are grouped
  per (user, session, query) and counted (``impressions_without_request_id``);
- ``query_id`` = the search query, or ``recommend:<user_id>`` for a page without a query;
- ``click`` = 1 when a click event names the same request and item (clicks that match no impression are
  counted, never joined elsewhere: ``clicks_without_impression``);
- ``position``, ``policy_id``, ``propensity``, ``arm`` as logged with the impression (a repeated
  impression of the same item in the same request keeps the first: ``duplicate_impressions``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FEEDBACK_GLOB = "hour=*/part-*.parquet"
COLUMNS = (
    "session_id",
    "user_id",
    "query_id",
    "item_id",
    "position",
    "click",
    "policy_id",
    "propensity",
    "arm",
)


def is_feedback_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and any(Path(path).glob(FEEDBACK_GLOB))


def read_events(root: str | Path) -> pd.DataFrame:
    """Every feedback file under ``root``; columns a file lacks (older schema) are null."""
    files = sorted(Path(root).glob(FEEDBACK_GLOB))
    if not files:
        raise ValueError(
            f"no feedback files ({FEEDBACK_GLOB}) under {root}; point `logs` at the app's feedback_dir"
        )
    ev = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    for c in ("query", "request_id", "session_id", "position", "arm", "policy_id", "propensity"):
        if c not in ev.columns:
            ev[c] = None
    return ev


def _session_key(ev: pd.DataFrame) -> pd.Series:
    fallback = (
        "u:"
        + ev["user_id"].astype(str)
        + "|s:"
        + ev["session_id"].astype(str)
        + "|q:"
        + ev["query"].astype(str)
    )
    return ev["request_id"].where(ev["request_id"].notna(), fallback).astype(str)


def impressions_from_feedback(events: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Feedback events -> (impressions with :data:`COLUMNS`, counts that reconcile the events used)."""
    ev = events.assign(_s=_session_key(events))
    imp = ev[ev["event_type"] == "impression"]
    clicks = ev[ev["event_type"] == "click"]
    first = imp.drop_duplicates(["_s", "item_id"], keep="first")
    clicked = clicks.drop_duplicates(["_s", "item_id"])[["_s", "item_id"]].assign(click=1)
    out = first.merge(clicked, on=["_s", "item_id"], how="left")
    query = out["query"].where(out["query"].notna(), "recommend:" + out["user_id"].astype(str))
    table = pd.DataFrame(
        {
            "session_id": out["_s"].to_numpy(),
            "user_id": out["user_id"].astype(str).to_numpy(),
            "query_id": query.astype(str).to_numpy(),
            "item_id": out["item_id"].astype(str).to_numpy(),
            "position": pd.array(out["position"], dtype="Int32"),
            "click": out["click"].fillna(0).astype("int8").to_numpy(),
            "policy_id": out["policy_id"].to_numpy(dtype=object),
            "propensity": pd.to_numeric(out["propensity"], errors="coerce").astype("float64").to_numpy(),
            "arm": out["arm"].to_numpy(dtype=object),
        }
    )
    matched = clicks.merge(first[["_s", "item_id"]], on=["_s", "item_id"], how="inner")
    counts = {
        "feedback_events": len(events),
        "feedback_impressions": len(imp),
        "feedback_clicks": len(clicks),
        "impressions": len(table),
        "duplicate_impressions": len(imp) - len(first),
        "impressions_without_request_id": int(imp["request_id"].isna().sum()),
        "impressions_without_propensity": int(table["propensity"].isna().sum()),
        "clicks_without_impression": len(clicks) - len(matched),
        "repeat_clicks": len(matched) - int(table["click"].sum()),
        "other_events": len(events) - len(imp) - len(clicks),
    }
    return table, counts


def read_impressions(root: str | Path) -> tuple[pd.DataFrame, dict[str, int]]:
    """The impressions of a feedback directory, with the counts of :func:`impressions_from_feedback`."""
    return impressions_from_feedback(read_events(root))
