"""Single-process pandas baseline of the ETL benchmark (for the comparison only, not used by jobs).

Same logic as the Ray Data path (recsys.data.clean + recsys.data.features): validate rows with
reasons, bot bursts, exact/near duplicates, sessions, then per-user sequences and per-item counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EVENT_TYPES = ["impression", "view", "click", "cart", "fav", "buy", "return", "rate", "search"]


def run(events_path: str, out: str, opts: dict) -> dict[str, int]:
    df = pd.read_parquet(events_path)
    rows_in = len(df)
    reason = pd.Series(pd.NA, index=df.index, dtype="string")

    def flag(mask, label):
        nonlocal reason
        reason = reason.mask(mask.fillna(False) & reason.isna(), label)

    for k in ("user_id", "item_id", "event_type", "timestamp"):
        flag(df[k].isna(), f"missing_key:{k}")
    flag(df["query"].str.len() > opts["max_field_chars"], "oversized_field:query")
    flag(~df["event_type"].isin(EVENT_TYPES), "unknown_event_type")
    flag(df["timestamp"] > pd.Timestamp(opts["max_ts"], tz="UTC"), "timestamp_out_of_range")
    flag(df["price"] < 0, "negative_price")
    flag(df["price"] > opts["max_price"], "absurd_price")
    flag(df["quantity"].abs() > opts["max_quantity"], "absurd_quantity")
    df["query"] = (
        df["query"].str.normalize("NFKC").str.replace(r"\s+", " ", regex=True).str.strip().str.lower()
    )
    ok = df[reason.isna()].copy()
    quarantined = int(reason.notna().sum())
    # bots: > K events per user-minute
    minute = ok["timestamp"].dt.floor("min")
    per_min = ok.groupby([ok["user_id"], minute])["item_id"].transform("size")
    bots = per_min > opts["bot_per_minute"]
    quarantined += int(bots.sum())
    # duplicates: compared with the previous row in key order, bot rows included (as the Ray path does);
    # only non-bot rows are flagged
    ok = ok.sort_values(["user_id", "item_id", "event_type", "timestamp", "source_row"])
    bots = bots.loc[ok.index]
    cols = [c for c in ok.columns if c not in ("source_row", "session_id")]
    exact = ok[cols].eq(ok[cols].shift()).all(axis=1) | (ok[cols].isna() & ok[cols].shift().isna()).all(
        axis=1
    )
    same = (ok[["user_id", "item_id", "event_type"]] == ok[["user_id", "item_id", "event_type"]].shift()).all(
        axis=1
    )
    near = same & (ok["timestamp"].diff() <= pd.Timedelta(microseconds=opts["near_us"])) & ~exact
    dup = (exact | near) & ~bots
    duplicates = int(dup.sum())
    ok = ok[~dup & ~bots].sort_values(["user_id", "timestamp", "source_row"])
    new = (ok["user_id"] != ok["user_id"].shift()) | (
        ok["timestamp"].diff() > pd.Timedelta(microseconds=opts["gap_us"])
    )
    ok["session_id"] = ok["user_id"] + ":" + new.groupby(ok["user_id"]).cumsum().astype(str)
    assert rows_in == len(ok) + quarantined + duplicates
    ok.to_parquet(f"{out}/events.parquet")
    seq = (
        ok[~ok["event_type"].isin(["impression", "search"])]
        .groupby("user_id")
        .agg(items=("item_id", list), timestamps=("timestamp", list))
        .reset_index()
    )
    seq.to_parquet(f"{out}/sequences.parquet")
    items = ok.groupby(["item_id", "event_type"]).size().unstack(fill_value=0)
    items["n_users"] = ok.groupby("item_id")["user_id"].nunique()
    items["price_mean"] = ok.groupby("item_id")["price"].mean()
    items.reset_index().to_parquet(f"{out}/item_counts.parquet")
    return {
        "rows_in": rows_in,
        "rows_clean": len(ok),
        "rows_quarantined": quarantined,
        "rows_duplicate": duplicates,
        "users": len(seq),
        "items": len(items),
    }


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    print(json.dumps(run(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
    _ = np
