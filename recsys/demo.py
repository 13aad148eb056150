"""``make demo``: run the local demo end to end and print what each stage did.

The steps are the jobs that exist, in flow order, each with its ``local`` config. The pipeline
job (when present) replaces this list with one call.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

DEMO_STEPS: list[tuple[str, str]] = [
    ("doctor", "local"),
]


def run_demo(scale: str = "local") -> int:
    from recsys.cli.entry import parse_job, run_parsed
    from recsys.jobs_registry import job_names

    console = Console()
    available = set(job_names())
    rows = []
    for job, cfg_scale in DEMO_STEPS:
        if job not in available:
            continue
        cfg_scale = scale if scale != "local" else cfg_scale
        console.rule(f"[bold]{job}[/bold] ({cfg_scale})")
        t0 = time.perf_counter()
        spec, cfg = parse_job(job, cfg_scale, [])
        report = run_parsed(spec, cfg)
        rows.append((job, report["status"], f"{time.perf_counter() - t0:.1f}s", report["output_dir"]))
        if report["status"] != "succeeded":
            break
    table = Table(title="recsys demo")
    for col in ("stage", "status", "time", "outputs (report.json inside)"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return 0 if rows and all(r[1] == "succeeded" for r in rows) else 1
