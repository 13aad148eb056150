"""Outputs of the ``search`` evaluate protocol beyond the metrics: per-query slices (misspelled,
numeric / unit, query length), the ablation report and the worst-queries page (self-contained HTML)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.evaluation.judged import JudgedQuery
from recsys.retrieval.artifacts import resolve_version

_TOKEN = re.compile(r"[a-z0-9]+")


def served_catalog(index: dict[str, Any]) -> pd.DataFrame:
    """``item_id, title`` of the served index version (empty when the arm names no artifacts directory)."""
    if not index.get("artifacts") or index["artifacts"] == "None":
        return pd.DataFrame({"item_id": [], "title": []})
    path = resolve_version(index["artifacts"], index.get("version") or "latest") / "items.parquet"
    items = pd.read_parquet(path, columns=["item_id", "title"])
    return items.assign(item_id=items["item_id"].astype(str), title=items["title"].astype(str))


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def query_segments(queries: list[JudgedQuery], catalog: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-query slice labels: ``misspelled`` (a word of >= 3 letters that no catalog title contains),
    ``numeric`` (a digit: sizes, units, model numbers), ``length`` (1 word / 2-3 words / 4+ words)."""
    vocab = {t for title in catalog["title"] for t in tokens(title)}
    words = [tokens(q.query) for q in queries]
    misspelled = [any(t.isalpha() and len(t) >= 3 and t not in vocab for t in w) for w in words]
    numeric = [any(ch.isdigit() for ch in q.query) for q in queries]
    length = ["1 word" if len(w) <= 1 else "2-3 words" if len(w) <= 3 else "4+ words" for w in words]
    return {
        "misspelled": np.asarray(misspelled),
        "numeric": np.asarray(numeric),
        "length": np.asarray(length, dtype=object),
    }


def slice_table(
    per_variant: dict[str, pd.DataFrame], segments: dict[str, np.ndarray], metrics: list[str]
) -> list[dict[str, Any]]:
    """One row per (variant, slice, value): query count and mean of each metric."""
    rows = []
    for name, per in per_variant.items():
        for seg, labels in segments.items():
            for value in sorted(set(labels.tolist()), key=str):
                mask = labels == value
                rows.append(
                    {
                        "variant": name,
                        "slice": seg,
                        "value": str(value),
                        "queries": int(mask.sum()),
                        **{m: float(per[m].to_numpy()[mask].mean()) for m in metrics},
                    }
                )
    return rows


def worst_queries(
    queries: list[JudgedQuery],
    rankings: list[list[tuple[str, float]]],
    rewritten: list[str | None],
    per: pd.DataFrame,
    catalog: pd.DataFrame,
    metric: str,
    sc: Any,
    top: int = 10,
) -> list[dict[str, Any]]:
    """The ``sc.worst_queries`` lowest-``metric`` queries (ties: lower recall@100 / longer query id
    first, deterministic) with the served top items beside the judged relevant ones."""
    title = dict(zip(catalog["item_id"], catalog["title"]))
    order = np.lexsort((per["query_id"].to_numpy(), per[metric].to_numpy()))[: sc.worst_queries]
    out = []
    for i in order:
        q = queries[int(i)]
        pos = {item: r for r, (item, _) in enumerate(rankings[int(i)])}
        relevant = sorted(q.relevance.items(), key=lambda kv: -kv[1])
        out.append(
            {
                "query": q.query,
                "rewritten": rewritten[int(i)],
                metric: float(per[metric].iat[int(i)]),
                "retrieved": [
                    {"item_id": item, "title": title.get(item, ""), "judged": q.relevance.get(item)}
                    for item, _ in rankings[int(i)][:top]
                ],
                "judged": [
                    {
                        "item_id": item,
                        "title": title.get(item, ""),
                        "relevance": g,
                        "served_rank": pos.get(item),
                    }
                    for item, g in relevant[:top]
                ],
            }
        )
    return out


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-4 or v == 0 else f"{v:.2e}"
    return html.escape("" if v is None else str(v))


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = (
    "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;vertical-align:top}th{background:#eee}"
    ".rel{background:#dfd}.part{background:#ffd}</style>"
)


def write_search_report(
    out_dir: Path, payload: dict[str, Any], worst: list[dict[str, Any]]
) -> dict[str, str]:
    """``report.html`` (ablation with CIs, paired tests, slices, adapter counts) and ``worst_queries.html``."""
    metrics = list(payload["metrics"])
    ablation = [
        {
            **r,
            **{
                f"{m} 95% CI": "[{:.4f}, {:.4f}]".format(*r["ci95"][m])
                for m in metrics
                if m in r.get("ci95", {})
            },
        }
        for r in payload["ablation"]
    ]
    ci_cols = [f"{m} 95% CI" for m in metrics if ablation and f"{m} 95% CI" in ablation[0]]
    parts = [
        f"<html><head><meta charset='utf-8'><title>search evaluation</title>{_STYLE}</head><body>",
        "<h1>Search evaluation (the served pipeline, end to end)</h1>",
        f"<p>{html.escape(str(payload['summary']))}</p>",
        "<h2>Ablation</h2>",
        _table(ablation, ["variant", *metrics, *ci_cols]),
        f"<h2>Paired tests vs {html.escape(str(payload['summary'].get('reference')))}</h2>",
        _table(
            payload["paired_tests"],
            ["model", "metric", "mean_a", "mean_b", "diff", "p_permutation", "p_ttest"],
        ),
        "<h2>Slices</h2>",
        _table(payload["slices"], ["variant", "slice", "value", "queries", *metrics]),
        "<h2>Judgments adapter</h2>",
        f"<pre>{html.escape(str(payload.get('adapter')))}</pre>",
        "<p><a href='worst_queries.html'>The worst queries</a></p></body></html>",
    ]
    report = out_dir / "report.html"
    report.write_text("".join(parts), encoding="utf-8")
    page = [f"<html><head><meta charset='utf-8'><title>worst queries</title>{_STYLE}</head><body>"]
    page.append(
        f"<h1>The {len(worst)} worst queries of {html.escape(payload['summary']['served_variant'])}</h1>"
    )
    for w in worst:
        metric = next(k for k in w if k not in ("query", "rewritten", "retrieved", "judged"))
        shown = f" (rewritten: {html.escape(w['rewritten'])})" if w.get("rewritten") else ""
        page.append(f"<h3>{html.escape(w['query'])}{shown} &mdash; {metric} {w[metric]:.3f}</h3>")
        left = "".join(
            f"<li class='{_cls(r['judged'])}'>{html.escape(r['title'])} <small>[{_cell(r['judged'])}]</small></li>"
            for r in w["retrieved"]
        )
        right = "".join(
            f"<li class='{_cls(r['relevance'])}'>{html.escape(r['title'])} <small>[{r['relevance']:.2f}; "
            f"served at {_cell(None if r['served_rank'] is None else r['served_rank'] + 1)}]</small></li>"
            for r in w["judged"]
        )
        page.append(
            "<table><tr><th>served (top 10) [judged relevance]</th><th>judged [relevance; served rank]</th></tr>"
            f"<tr><td><ol>{left}</ol></td><td><ul>{right}</ul></td></tr></table>"
        )
    page.append("</body></html>")
    worst_path = out_dir / "worst_queries.html"
    worst_path.write_text("".join(page), encoding="utf-8")
    return {"report_html": str(report), "worst_queries_html": str(worst_path)}


def _cls(rel: float | None) -> str:
    return "" if rel is None else "rel" if rel >= 2.5 else "part" if rel >= 2 else ""
