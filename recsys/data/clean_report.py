"""clean.html: the clean job's report for a human (no server, no scripts): the data-loss gate's verdict,
what the quarantine costs in business terms, and up to 5 quarantined records per reason with their raw
text, source file and line, so a wrong mapping shows itself in the first screen."""

from __future__ import annotations

import html
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from recsys.data.io import filesystem

EXAMPLES = 5
LOSS_LABELS = {
    "users_in": "users in the input",
    "users_lost": "users lost entirely (no clean row)",
    "rows_without_user": "rows without a user id",
    "sessions_in": "sessions in the input",
    "sessions_lost": "sessions lost entirely",
    "items_in": "items in the input",
    "items_lost": "items lost entirely",
    "revenue_in": "gross revenue in the input (|price x quantity|, quantity 1 where absent)",
    "revenue_quarantined": "gross revenue quarantined",
    "revenue_quarantined_share": "share of revenue quarantined",
    "quantity_in": "quantity in the input (|quantity|)",
    "quantity_quarantined": "quantity quarantined",
    "quantity_quarantined_share": "share of quantity quarantined",
}


def examples(quarantine_dir: str, per_reason: int = EXAMPLES) -> dict[str, list[dict[str, Any]]]:
    """Up to ``per_reason`` quarantined records per reason (reason, raw, source_file, source_row), read
    batch by batch until every reason seen has its examples (a large quarantine is not loaded whole)."""
    fs, inner = filesystem(quarantine_dir)
    if fs.get_file_info(inner).type == pafs.FileType.NotFound:
        return {}
    ds = pads.dataset(inner, filesystem=fs, format="parquet")
    out: dict[str, list[dict[str, Any]]] = {}
    cols = ["reason", "raw", "source_file", "source_row"]
    for batch in ds.to_batches(columns=cols):
        for reason in pc.unique(batch["reason"]).to_pylist():
            have = out.setdefault(reason, [])
            if len(have) < per_reason:
                rows = batch.filter(pc.equal(batch["reason"], reason)).slice(0, per_reason - len(have))
                have.extend(rows.to_pylist())
    for rows in out.values():
        rows.sort(
            key=lambda r: (r["source_file"] or "", r["source_row"] if r["source_row"] is not None else -1)
        )
    return dict(sorted(out.items()))


def _fmt(key: str, v: Any) -> str:
    if key.endswith("_share"):
        return f"{v:.2%}"
    return f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)


def render(report: dict[str, Any], samples: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """The HTML page of a clean run: ``report`` as in report.json (counts, tables with reasons and loss,
    data_gate), ``samples`` table -> reason -> example records (``examples``)."""
    e = html.escape
    gate = report["data_gate"]
    c = report["counts"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Clean report</title><style>",
        "body{font-family:sans-serif;margin:24px;max-width:1200px}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}th{background:#eee}"
        ".bad{color:#c00;font-weight:bold}.ok{color:#080}pre{margin:0;white-space:pre-wrap;max-width:700px;"
        "max-height:8em;overflow:auto}</style></head><body><h1>Clean report</h1>",
        f"<p>{c['rows_in']:,} rows in: {c['rows_clean']:,} clean, {c['rows_quarantined']:,} quarantined, "
        f"{c['rows_duplicate']:,} duplicates (every row accounted for).</p>",
        f"<h2>Data-loss gate: <span class='{'ok' if gate['passed'] else 'bad'}'>"
        f"{'passed' if gate['passed'] else 'FAILED'}</span></h2>",
        "<table><tr><th>table</th><th>check</th><th>value</th><th>bound</th><th>result</th></tr>",
    ]
    for ch in gate["checks"]:
        cls = "ok" if ch["ok"] else "bad"
        parts.append(
            f"<tr><td>{e(ch['table'])}</td><td>{e(ch['check'])}</td><td>{ch['value']:.2%}</td>"
            f"<td>{ch['max']:.2%}</td><td class='{cls}'>{'pass' if ch['ok'] else 'FAIL'}</td></tr>"
        )
    parts.append("</table>")
    if not gate["passed"]:
        parts.append(f"<p class='bad'>{e(gate['summary'])}</p>")
    for name, t in report["tables"].items():
        parts.append(
            f"<h2>Table <code>{e(name)}</code>: {t['rows_in']:,} in, {t['rows_clean']:,} clean, "
            f"{t['rows_quarantined']:,} quarantined, {t['rows_duplicate']:,} duplicates</h2>"
        )
        loss = t.get("loss") or {}
        if loss:
            parts.append("<h3>What the quarantine costs</h3><table><tr><th>measure</th><th>value</th></tr>")
            for k, v in loss.items():
                parts.append(f"<tr><td>{e(LOSS_LABELS.get(k, k))}</td><td>{e(_fmt(k, v))}</td></tr>")
            parts.append("</table>")
        reasons = t.get("reasons") or {}
        if reasons:
            parts.append(
                "<h3>Reasons</h3><table><tr><th>reason</th><th>rows</th><th>share of input</th></tr>"
            )
            for r, k in reasons.items():
                parts.append(f"<tr><td>{e(r)}</td><td>{k:,}</td><td>{k / max(t['rows_in'], 1):.2%}</td></tr>")
            parts.append("</table>")
        shown = samples.get(name) or {}
        if shown:
            parts.append(
                f"<h3>Quarantined records (up to {EXAMPLES} per reason)</h3>"
                "<table><tr><th>reason</th><th>source file</th><th>source_row</th><th>raw text</th></tr>"
            )
            for r, rows in shown.items():
                for row in rows:
                    parts.append(
                        f"<tr><td>{e(r)}</td><td>{e(str(row['source_file']))}</td>"
                        f"<td>{e(str(row['source_row']))}</td><td><pre>{e(str(row['raw'])[:2000])}</pre></td></tr>"
                    )
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
