"""Quality gates: pure checks of a stage's report.json (dict in, verdict out).

Every verdict names what was checked, the value found and, on failure, why the pipeline stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Verdict:
    gate: str
    kind: str
    stage: str
    passed: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_MISSING = object()


def lookup(report: dict[str, Any], dotted: str) -> Any:
    """``report["a"]["b"]`` for ``"a.b"``; model names may contain dots, so a remaining suffix is tried whole."""
    node: Any = report
    parts = dotted.split(".")
    i = 0
    while i < len(parts):
        if not isinstance(node, dict):
            return _MISSING
        for j in range(len(parts), i, -1):  # longest key first: "metrics.recent-pop.ndcg@10"
            key = ".".join(parts[i:j])
            if key in node:
                node, i = node[key], j
                break
        else:
            return _MISSING
    return node


def data_contract(name: str, stage: str, report: dict[str, Any], key: str | None) -> Verdict:
    """The stage (inventory) succeeded and its violations list is empty."""
    key = key or "contract_violations"
    if report.get("status") != "succeeded":
        return Verdict(
            name,
            "data_contract",
            stage,
            False,
            f"data contract violated: {report.get('error', 'stage failed')}",
        )
    found = lookup(report, key)
    violations = [] if found is _MISSING or found in (None, 0, False) else found
    if violations:
        return Verdict(
            name,
            "data_contract",
            stage,
            False,
            f"data contract violated: {violations}",
            {"violations": violations},
        )
    return Verdict(name, "data_contract", stage, True, "every contract rule holds", {"key": key})


def data_loss(name: str, stage: str, report: dict[str, Any], key: str | None) -> Verdict:
    """The clean stage's data-loss gate: its recorded per-table numbers re-judged by the clean job's own
    function (``recsys.data.clean.data_gate``) under the bounds it ran with, so the pipeline and the job
    cannot disagree. Read also when the stage failed (the gate is what failed it)."""
    from recsys.data.clean import data_gate  # pyarrow: imported when a data_loss gate is checked

    recorded = lookup(report, key or "data_gate")
    tables = report.get("tables")
    if recorded is _MISSING or not isinstance(recorded, dict) or not isinstance(tables, dict):
        return Verdict(
            name,
            "data_loss",
            stage,
            False,
            f"report of stage {stage!r} has no data-loss verdict ({key or 'data_gate'!r} and tables): "
            f"{report.get('error') or 'is it a clean stage?'}",
        )
    verdict = data_gate(tables, recorded["max_quarantine_fraction"], recorded["max_null_fraction"])
    details = {k: verdict[k] for k in ("checks", "top_reasons")} | {
        "loss": {t: v.get("loss", {}) for t, v in tables.items()}
    }
    return Verdict(name, "data_loss", stage, verdict["passed"], verdict["summary"], details)


def reconciliation(name: str, stage: str, report: dict[str, Any], key: str | None) -> Verdict:
    """The clean stage accounted for every input row (``reconciled: true``)."""
    key = key or "reconciled"
    counts = report.get("counts", {})
    value = lookup(report, key)
    if value is _MISSING:
        return Verdict(
            name,
            "reconciliation",
            stage,
            False,
            f"report of stage {stage!r} has no {key!r}; set the gate's key to the field that says rows reconcile",
            {"counts": counts},
        )
    if not value:
        return Verdict(
            name,
            "reconciliation",
            stage,
            False,
            f"rows do not reconcile ({key} = {value!r}): rows in != clean + quarantined + duplicates",
            {"counts": counts},
        )
    return Verdict(
        name,
        "reconciliation",
        stage,
        True,
        "every input row is clean, quarantined or a duplicate",
        {"counts": counts},
    )


def _metric_name(report: dict[str, Any], metric: str | None) -> str | None:
    return metric or report.get("primary_metric")


def metric_min(
    name: str,
    stage: str,
    report: dict[str, Any],
    key: str | None,
    model: str | None,
    metric: str | None,
    minimum: float,
) -> Verdict:
    """A metric of the report (``metrics.<model>.<metric>`` for evaluate, ``metrics.<metric>`` otherwise) >= minimum."""
    m = _metric_name(report, metric)
    key = key or (f"metrics.{model}.{m}" if model else f"metrics.{m}")
    value = lookup(report, key)
    if value is _MISSING or not isinstance(value, int | float):
        return Verdict(
            name, "metric_min", stage, False, f"metric {key!r} not found in the report of stage {stage!r}"
        )
    ok = value >= minimum
    return Verdict(
        name,
        "metric_min",
        stage,
        ok,
        f"{key} = {value:.4f} {'>=' if ok else '<'} minimum {minimum}",
        {"key": key, "value": value, "min": minimum},
    )


def champion_challenger(
    name: str,
    stage: str,
    report: dict[str, Any],
    challenger: str,
    champion: str | None,
    metric: str | None,
    alpha: float,
    test: str,
    min_improvement: float,
) -> Verdict:
    """The challenger beats the champion (evaluated on the same queries by the evaluate stage) with a
    significant paired difference. No champion (first deployment): passes."""
    m = _metric_name(report, metric)
    if champion is None:
        return Verdict(
            name,
            "champion_challenger",
            stage,
            True,
            "no production model yet: the challenger is the first champion",
            {"challenger": challenger, "metric": m},
        )
    row = next(
        (
            r
            for r in report.get("significance", [])
            if r.get("model") == challenger and r.get("vs") == champion
        ),
        None,
    )
    if row is None:
        return Verdict(
            name,
            "champion_challenger",
            stage,
            False,
            f"no paired test of {challenger!r} vs {champion!r} in the report of stage {stage!r} "
            "(is the challenger in the evaluate config's models?)",
        )
    p, diff = float(row[test]), float(row["diff"])
    details = {
        "challenger": challenger,
        "champion": champion,
        "metric": row.get("metric", m),
        "diff": diff,
        test: p,
        "alpha": alpha,
        "mean_challenger": row.get("mean_a"),
        "mean_champion": row.get("mean_b"),
        "n": row.get("n"),
    }
    if diff <= min_improvement or p >= alpha:
        why = (
            "is not better"
            if diff <= 0
            else ("improves too little" if diff <= min_improvement else "is not significantly better")
        )
        return Verdict(
            name,
            "champion_challenger",
            stage,
            False,
            f"challenger {challenger!r} {why} than production ({row.get('metric', m)} diff {diff:+.4f}, "
            f"{test} {p:.4g}, alpha {alpha}); production is unchanged",
            details,
        )
    return Verdict(
        name,
        "champion_challenger",
        stage,
        True,
        f"challenger {challenger!r} beats production by {diff:+.4f} ({test} {p:.4g} < {alpha})",
        details,
    )


def compression(name: str, stage: str, report: dict[str, Any], variant: str | None) -> Verdict:
    """A compress stage's quality gate: the ``variant`` row (default: the report's ``promoted``, the fastest
    promotable one) kept its quality within the compress config's ``quality.max_relative_drop``. Advisory:
    a failure records why the variant is not promoted (the pipeline goes on with the uncompressed model)."""
    rows = {r.get("variant"): r for r in report.get("variants", [])}
    if "quality" not in report:
        return Verdict(
            name,
            "compression",
            stage,
            False,
            f"the report of stage {stage!r} has no quality verdicts: give its compress config a quality section "
            "(quality.protocol, quality.max_relative_drop)",
        )
    verdicts = [
        {k: r.get(k) for k in ("variant", "promotable", "relative_drop", "speedup_vs_torch", "reason")}
        for r in rows.values()
    ]
    chosen = variant or (report.get("promoted") or {}).get("variant")
    if chosen is None:
        return Verdict(
            name,
            "compression",
            stage,
            False,
            "no compressed variant passed the quality gate: "
            + "; ".join(f"{v['variant']}: {v['reason']}" for v in verdicts[1:]),
            {"variants": verdicts},
        )
    if chosen not in rows:
        return Verdict(
            name,
            "compression",
            stage,
            False,
            f"variant {chosen!r} is not in the report of stage {stage!r} (it has {sorted(rows)}); fix the gate's model",
        )
    row = rows[chosen]
    details = {"variant": chosen, "path": row.get("path"), "variants": verdicts}
    state = "promotable" if row.get("promotable") else "not promoted"
    return Verdict(
        name,
        "compression",
        stage,
        bool(row.get("promotable")),
        f"{chosen} ({row.get('speedup_vs_torch')}x torch pairs/s) {state}: {row.get('reason')}",
        details,
    )


def ope_no_drop(name: str, stage: str, report: dict[str, Any], estimator: str, max_drop: float) -> Verdict:
    """An ``ope`` stage's estimate of the challenger (``ope.estimates.<estimator>``) is not significantly
    below the logging policy's CTR (``ope.logged_ctr``): fails when the CI's upper end is under
    ``logged_ctr * (1 - max_drop)`` (a significant predicted drop: the challenger gets no traffic)."""
    est = lookup(report, f"ope.estimates.{estimator}")
    base = lookup(report, "ope.logged_ctr")
    if not isinstance(est, dict) or not isinstance(base, int | float):
        return Verdict(
            name, "ope_no_drop", stage, False, f"no ope.estimates.{estimator} / ope.logged_ctr in {stage!r}"
        )
    floor = base * (1 - max_drop)
    ok = est["ci_high"] >= floor
    details = {
        "estimator": estimator,
        **est,
        "logged_ctr": base,
        "floor": floor,
        "counts": report.get("counts"),
    }
    reason = (
        f"{estimator} CTR {est['value']:.4f} [{est['ci_low']:.4f}, {est['ci_high']:.4f}] vs logged {base:.4f}: "
        + (
            "no significant drop"
            if ok
            else f"significant predicted drop (CI below {floor:.4f}); not deployed"
        )
    )
    return Verdict(name, "ope_no_drop", stage, ok, reason, details)
