"""Read an events input for monitoring as a bounded pandas frame."""

from __future__ import annotations

import pandas as pd

from recsys.evaluation.data import load_table  # Parquet read directly, anything else through recsys.data


def load_events(
    cfg,
    max_rows: int | None,
    seed: int,
    window_days: float | None = None,
    start: str | None = None,
    end: str | None = None,
) -> tuple[pd.DataFrame, int]:
    """The canonical events of ``cfg`` (an InputConfig) as pandas: events in [start, end), the last
    ``window_days`` days of those, then a seeded sample of ``max_rows``. Rows that do not convert are
    dropped and counted (second value): monitoring raw logs must not stop at the first bad line, nor
    hide how many there were."""
    df = load_table(cfg, "events")
    n_bad = int(df.attrs.get("skipped_rows", 0))
    for bound, keep in ((start, lambda ts, b: ts >= b), (end, lambda ts, b: ts < b)):
        if bound is not None:
            b = pd.Timestamp(bound)
            df = df[keep(df["timestamp"], b.tz_localize("UTC") if b.tzinfo is None else b)]
    if window_days is not None and "timestamp" in df.columns and len(df):
        df = df[df["timestamp"] >= df["timestamp"].max() - pd.Timedelta(days=window_days)]
    if max_rows is not None and len(df) > max_rows:
        df = df.sample(n=max_rows, random_state=seed)
    return df.reset_index(drop=True), n_bad
