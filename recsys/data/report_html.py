"""Self-contained inventory.html: matplotlib charts embedded as base64 PNG, no server, no scripts."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt  # lazy: matplotlib costs ~1 s; loaded (Agg backend) by charts()

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def charts(prof: dict[str, Any], png_dir: Path | None = None) -> list[tuple[str, str]]:
    """(title, base64 png) of a table's charts; also written as files into png_dir when given."""
    import matplotlib  # lazy: matplotlib costs ~1 s and only the HTML report draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib costs ~1 s; only the charts need it

    out = []
    daily = prof.get("daily_events") or {}
    if len(daily) > 1:
        fig, ax = plt.subplots(figsize=(8, 2.6))
        ax.plot(list(range(len(daily))), list(daily.values()), color="#3465a4")
        ticks = list(range(0, len(daily), max(1, len(daily) // 8)))
        ax.set_xticks(ticks, [list(daily)[i] for i in ticks], rotation=30, fontsize=7)
        ax.set_title(f"{prof['table']}: rows per day")
        out.append(("rows per day", _png(fig)))
    funnel = prof.get("funnel") or {}
    if funnel:
        order = ["impression", "search", "view", "click", "cart", "fav", "buy", "return", "rate"]
        keys = [k for k in order if k in funnel] + [k for k in funnel if k not in order]
        fig, ax = plt.subplots(figsize=(6, 2.6))
        ax.bar(keys, [funnel[k] for k in keys], color="#73d216")
        ax.set_yscale("log")
        ax.set_title(f"{prof['table']}: funnel (events per type, log scale)")
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        out.append(("funnel", _png(fig)))
    hists = [
        (c, v["histogram"]) for c, v in prof["columns"].items() if "histogram" in v and v["kind"] == "number"
    ][:6]
    if hists:
        fig, axes = plt.subplots(
            1, len(hists), figsize=(3.2 * len(hists), 2.6), squeeze=False, layout="constrained"
        )  # keeps the suptitle clear of the panel titles
        for ax, (c, h) in zip(axes[0], hists):
            e = h["edges"]
            ax.bar(
                e[:-1],
                h["counts"],
                width=[b - a for a, b in zip(e[:-1], e[1:])],
                align="edge",
                color="#f57900",
            )
            ax.set_title(c, fontsize=9)
            ax.tick_params(labelsize=7)
        fig.suptitle(f"{prof['table']}: distributions (p01..p99)", fontsize=10)
        out.append(("distributions", _png(fig)))
    nulls = {c: v["null_rate"] for c, v in prof["columns"].items()}
    if nulls:
        fig, ax = plt.subplots(figsize=(6, 0.3 * len(nulls) + 0.8))
        ax.barh(list(nulls), list(nulls.values()), color="#cc0000")
        for i, v in enumerate(nulls.values()):  # a rate of 0 draws no bar: print every value
            ax.text(min(v, 0.85) + 0.01, i, f"{v:.3f}", va="center", fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_title(f"{prof['table']}: null rate per column")
        ax.tick_params(labelsize=8)
        out.append(("null rates", _png(fig)))
    if png_dir is not None:
        for title, data in out:
            (png_dir / f"{prof['table']}_{title.replace(' ', '_')}.png").write_bytes(base64.b64decode(data))
    return out


def render(inventory: dict[str, Any], png_dir: Path | None = None) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Data inventory</title><style>",
        "body{font-family:sans-serif;margin:24px;max-width:1200px}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#eee}"
        ".bad{color:#c00;font-weight:bold}"
        ".ok{color:#080}img{margin:6px 0;border:1px solid #ddd}</style></head><body>",
        f"<h1>Data inventory</h1><p>Generated {e(inventory['generated_at'])} "
        f"from <code>{e(inventory['input'])}</code></p>",
    ]
    review = inventory.get("review") or []
    if inventory.get("verdict"):
        cls = "ok" if inventory["verdict"] == "ok" else "bad"
        parts.append(f"<h2>Verdict: <span class='{cls}'>{e(inventory['verdict'])}</span></h2>")
        if review:
            parts.append("<ul>" + "".join(f"<li>{e(r)}</li>" for r in review) + "</ul>")
    contract = inventory.get("contract") or []
    if contract:
        parts.append("<h2>Quality contract</h2><table><tr><th>rule</th><th>value</th><th>result</th></tr>")
        for r in contract:
            cls = "ok" if r["ok"] else "bad"
            fail = "WARN: " if r.get("severity") == "warn" else "FAIL: "
            parts.append(
                f"<tr><td>{e(r['label'])}</td><td>{e(str(r['value']))}</td>"
                f"<td class='{cls}'>{'pass' if r['ok'] else fail + e(r['why'] or '')}</td></tr>"
            )
        parts.append("</table>")
    if inventory.get("roles"):
        parts.append(
            "<h2>Inferred column roles</h2><table>"
            "<tr><th>column</th><th>role</th><th>confidence</th><th>why</th><th>null share (sample)</th>"
            "<th>null tokens (sample)</th><th>candidates</th></tr>"
        )
        for r in inventory["roles"]:
            tokens = ", ".join(f"{e(repr(k))}: {v:.2%}" for k, v in (r.get("null_tokens") or {}).items())
            parts.append(
                f"<tr><td>{e(r['column'])}</td><td>{e(str(r['role']))}</td><td>{r['confidence']}</td>"
                f"<td>{e(str(r.get('why', '')))}</td><td>{r.get('null_share', 0):.4f}</td><td>{tokens}</td>"
                f"<td>{e(str(r.get('candidates')))}</td></tr>"
            )
        parts.append(
            "</table><p>Proposed adapter: <code>adapter.yaml</code> (accepted by <code>recsys run clean</code>).</p>"
        )
    for prof in inventory["tables"].values():
        parts.append(
            f"<h2>Table <code>{e(prof['table'])}</code>: {prof['rows']:,} rows, "
            f"duplicate rate {prof['duplicate_rate']:.4f}</h2>"
        )
        ri = prof.get("referential_integrity") or {}
        if ri:
            parts.append(
                "<p>Referential integrity: "
                + "; ".join(
                    f"{e(k)}: {v['orphans']:,} orphans ({v['orphan_rate']:.2%})" for k, v in ri.items()
                )
                + "</p>"
            )
        parts.append(
            "<table><tr><th>column</th><th>type</th><th>null rate</th><th>null share (tokens)</th>"
            "<th>parse rate</th><th>distinct</th><th>min</th><th>max</th>"
            "<th>p50</th><th>outliers</th><th>top values</th><th>text</th><th>PII rows</th></tr>"
        )
        for c, v in prof["columns"].items():
            top = ", ".join(f"{e(str(t['value']))[:30]} ({t['count']})" for t in v.get("top", [])[:5])
            pii = ", ".join(f"{k}: {x['rows']}" for k, x in (v.get("pii") or {}).items() if x["rows"])
            text = (
                f"{v['text']['mean_chars']:.0f} chars / {v['text']['mean_words']:.1f} words"
                if "text" in v
                else ""
            )
            tokens = ", ".join(
                f"{e(repr(k))}: {t['rows']:,}" for k, t in (v.get("null_tokens") or {}).items()
            )
            share = f"{v['null_share']:.4f}" + (f" ({tokens})" if tokens else "") if "null_share" in v else ""
            rate = "" if v.get("parse_rate") is None else f"{v['parse_rate']:.4f}"
            parts.append(
                f"<tr><td>{e(c)}</td><td>{e(v['type'])}</td><td>{v['null_rate']:.4f}</td><td>{share}</td>"
                f"<td>{rate}</td><td>{v['distinct']:,}</td>"
                f"<td>{e(str(v.get('min', '')))}</td><td>{e(str(v.get('max', '')))}</td>"
                f"<td>{e(str(round(v['quantiles']['p50'], 4)) if 'quantiles' in v else '')}</td>"
                f"<td>{v.get('outliers', {}).get('count', '')}</td><td>{top}</td><td>{text}</td>"
                f"<td class='{'bad' if pii else ''}'>{e(pii)}</td></tr>"
            )
        parts.append("</table>")
        ts = prof["columns"].get("timestamp")
        if ts and "coverage_days" in ts:
            parts.append(
                f"<p>Time coverage {e(ts['min'])} .. {e(ts['max'])} ({ts['coverage_days']:.1f} days); "
                f"freshness {ts['freshness_days']:.1f} days.</p>"
            )
        for title, data in charts(prof, png_dir):
            parts.append(f"<h3>{e(title)}</h3><img alt='{e(title)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
