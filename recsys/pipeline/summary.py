"""A newcomer-readable summary of a pipeline run: one row per stage, the gates, the deployment."""

from __future__ import annotations

from typing import Any


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    stages = Table(title="pipeline stages")
    for col in ("stage", "job", "status", "time", "output"):
        stages.add_column(col)
    for s in summary["stages"]:
        took = "reused (unchanged)" if s["action"] == "cached" else f"{s['seconds']:.1f}s"
        stages.add_row(s["name"], s["job"], str(s["status"]), took, s["output_dir"])
    console.print(stages)
    if summary.get("gates"):
        gates = Table(title="quality gates")
        for col in ("gate", "after", "result", "why"):
            gates.add_column(col)
        for g in summary["gates"]:
            gates.add_row(g["gate"], g["stage"], "[green]pass[/green]" if g["passed"] else "[red]FAIL[/red]", g["reason"])
        console.print(gates)
    dep = summary.get("deployment")
    if dep:
        console.print(f"registry {dep['model_name']!r}: version {dep['version']} "
                      f"({'promoted to production' if dep['promoted'] else 'production is ' + str(dep['production_after'])})")
        svc = dep.get("service")
        if svc:
            console.print(f"service: {svc['url']}  (API docs: {svc['url']}/docs)")
