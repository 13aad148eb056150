"""What a pipeline run adds under the run's summary table (one row per stage, drawn by the console):
the quality gates, the registry version, the service's URL."""

from __future__ import annotations

from typing import Any


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """Passed gates on one line, each failed gate with its reason, then the registry version."""
    gates = summary.get("gates") or []
    passed = [g["gate"] for g in gates if g["passed"]]
    lines = [f"quality gates passed: {', '.join(passed)}"] if passed else []
    lines += [f"gate {g['gate']} after {g['stage']}: FAIL — {g['reason']}" for g in gates if not g["passed"]]
    dep = summary.get("deployment")
    if dep:
        state = "promoted to production" if dep["promoted"] else f"production is {dep['production_after']}"
        lines.append(f"registry {dep['model_name']!r}: version {dep['version']} ({state})")
    return lines


def service_url(summary: dict[str, Any]) -> str | None:
    """The URL of the service the pipeline deployed, if it did."""
    return ((summary.get("deployment") or {}).get("service") or {}).get("url")
