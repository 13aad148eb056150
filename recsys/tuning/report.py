"""HTML report of a sweep with matplotlib plots (embedded PNGs): objective per trial, learning
curves coloured by trial, each hyperparameter against the objective; the trials table; best config."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from recsys.tuning.results import TrialRecord

STATUS_COLOURS = {
    "completed": "tab:green",
    "stopped_early": "tab:orange",
    "error": "tab:red",
    "no_report": "tab:gray",
    "unfinished": "tab:purple",
}


def _png(fig) -> str:
    import matplotlib.pyplot as plt  # lazy: matplotlib costs ~1 s; write_report selects the Agg backend first

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plot_objective(table: pd.DataFrame, metric: str) -> str:
    import matplotlib.pyplot as plt  # lazy: matplotlib costs ~1 s; write_report selects the Agg backend first

    fig, ax = plt.subplots(figsize=(7, 3.2))
    col = f"best_{metric}"
    for i, row in table.reset_index(drop=True).iterrows():
        ax.bar(i, row[col] if pd.notna(row[col]) else 0, color=STATUS_COLOURS.get(row["status"], "tab:blue"))
    ax.set_xticks(range(len(table)), table["trial_id"].str[-5:], rotation=60, fontsize=7)
    ax.set_ylabel(f"best {metric}")
    ax.set_title("Objective per trial (green completed, orange stopped early, red failed)")
    return _png(fig)


def plot_curves(records: list[TrialRecord], metric: str, time_attr: str) -> str:
    import matplotlib.pyplot as plt  # lazy: matplotlib costs ~1 s; write_report selects the Agg backend first

    fig, ax = plt.subplots(figsize=(7, 3.6))
    cmap = plt.get_cmap("tab20")
    for i, rec in enumerate(records):
        h = rec.history
        if metric in h and time_attr in h and len(h):
            ax.plot(h[time_attr], h[metric], marker="o", ms=3, color=cmap(i % 20), label=rec.trial_id[-5:])
    ax.set_xlabel(time_attr)
    ax.set_ylabel(metric)
    ax.set_title("Learning curves (validation), one colour per trial")
    if records:
        ax.legend(fontsize=6, ncol=4)
    return _png(fig)


def plot_params(table: pd.DataFrame, metric: str, log_keys: set[str]) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt  # lazy: matplotlib costs ~1 s; write_report selects the Agg backend first

    out = []
    col = f"best_{metric}"
    for key in [c for c in table.columns if c.startswith("config/")]:
        name = key.removeprefix("config/")
        fig, ax = plt.subplots(figsize=(4.2, 3))
        x, y = table[key], table[col]
        colours = [STATUS_COLOURS.get(s, "tab:blue") for s in table["status"]]
        if pd.api.types.is_numeric_dtype(x):
            ax.scatter(x, y, c=colours)
            if name in log_keys:
                ax.set_xscale("log")
        else:
            cats = sorted(x.astype(str).unique())
            ax.scatter([cats.index(v) for v in x.astype(str)], y, c=colours)
            ax.set_xticks(range(len(cats)), cats, rotation=30, fontsize=7)
        ax.set_xlabel(name)
        ax.set_ylabel(f"best {metric}")
        out.append((name, _png(fig)))
    return out


def write_report(
    path: Path,
    *,
    title: str,
    table: pd.DataFrame,
    records: list[TrialRecord],
    metric: str,
    mode: str,
    time_attr: str,
    log_keys: set[str],
    best: dict[str, Any] | None,
    summary: dict[str, Any],
) -> None:
    import matplotlib  # lazy: matplotlib costs ~1 s and only a finished sweep draws

    matplotlib.use("Agg")
    imgs = [
        ("Objective per trial", plot_objective(table, metric)),
        ("Learning curves", plot_curves(records, metric, time_attr)),
    ]
    imgs += [(f"{name} vs {metric}", png) for name, png in plot_params(table, metric, log_keys)]
    figs = "\n".join(
        f'<figure><img src="data:image/png;base64,{png}"><figcaption>{html.escape(cap)}</figcaption></figure>'
        for cap, png in imgs
    )
    facts = "".join(
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in summary.items()
    )
    best_html = (
        f"<pre>{html.escape(yaml.safe_dump(best, sort_keys=False))}</pre>"
        if best
        else "<p>No trial reported the objective.</p>"
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} figure{{display:inline-block;margin:.5em}}
table{{border-collapse:collapse;font-size:12px}} td,th{{border:1px solid #ccc;padding:2px 6px}}</style></head><body>
<h1>{html.escape(title)}</h1><p>Objective: <b>{html.escape(metric)}</b> ({mode}).</p><ul>{facts}</ul>
{figs}
<h2>Trials</h2>{table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")}
<h2>Best trial's parameters</h2>{best_html}
</body></html>"""
    path.write_text(page, encoding="utf-8")
