"""Write evaluation outputs: per-query Parquet, leaderboard JSON, and a self-contained HTML report
(leaderboard with 95% CIs, published numbers, paired significance, per-segment table, charts)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if np.isnan(v) else f"{v:.4f}"
    return html.escape(str(v))


def _table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _chart(leaderboard: list[dict[str, Any]], metric: str) -> str:
    import matplotlib  # lazy: matplotlib is slow to import and only the HTML chart needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib costs ~1 s; only the charts need it

    names = [r["model"] for r in leaderboard]
    vals = np.array([r.get(metric, np.nan) for r in leaderboard], dtype=float)
    ci = [r.get("ci95", {}).get(metric) for r in leaderboard]
    err = None
    if all(c is not None for c in ci):
        err = np.array([[v - c[0] for v, c in zip(vals, ci)], [c[1] - v for v, c in zip(vals, ci)]])
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(names) + 2), 3))
    ax.bar(names, vals, yerr=err, capsize=4, color="#4c72b0")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} with 95% bootstrap CI")
    plt.xticks(rotation=30, ha="right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return f'<img alt="{html.escape(metric)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def write_html(
    path: Path,
    title: str,
    summary: dict[str, Any],
    leaderboard: list[dict[str, Any]],
    significance: list[dict[str, Any]],
    segments: pd.DataFrame | None,
    primary: str,
) -> None:
    metric_cols = [k for k in leaderboard[0] if k not in ("model", "ci95", "info")] if leaderboard else []
    lb = pd.DataFrame([{"model": r["model"], **{m: r.get(m) for m in metric_cols}} for r in leaderboard])
    ci_rows = pd.DataFrame(
        [
            {
                "model": r["model"],
                **{f"{m} 95% CI": f"[{c[0]:.4f}, {c[1]:.4f}]" for m, c in r.get("ci95", {}).items()},
            }
            for r in leaderboard
        ]
    )
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        "<p>"
        + "; ".join(f"<b>{html.escape(str(k))}</b>: {html.escape(str(v))}" for k, v in summary.items())
        + "</p>",
        "<h2>Leaderboard</h2>",
        _table(lb),
        _table(ci_rows) if len(ci_rows.columns) > 1 else "",
        _chart(leaderboard, primary) if leaderboard else "",
    ]
    if significance:
        parts += ["<h2>Paired significance</h2>", _table(pd.DataFrame(significance))]
    if segments is not None and len(segments):
        parts += [f"<h2>{html.escape(primary)} by user segment</h2>", _table(segments)]
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
    )
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>",
        encoding="utf-8",
    )


def segment_table(per_query: pd.DataFrame, primary: str, segment: str) -> pd.DataFrame:
    """Mean of the primary metric per model and segment value (columns = segments)."""
    if segment not in per_query.columns:
        return pd.DataFrame()
    t = per_query.pivot_table(index="model", columns=segment, values=primary, aggfunc="mean")
    t.columns = [f"{segment}={c}" for c in t.columns]
    counts = per_query[per_query["model"] == per_query["model"].iloc[0]][segment].value_counts()
    t = t.reset_index()
    t.loc[len(t)] = ["(queries)"] + [float(counts.get(c.split("=", 1)[1], 0)) for c in t.columns[1:]]
    return t


def write_results_json(path: str | Path, payload: dict[str, Any]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload, indent=2, default=float) + "\n", encoding="utf-8")
