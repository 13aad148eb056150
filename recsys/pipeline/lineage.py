"""Pipeline gauges for Prometheus (textfile + optional Pushgateway): last run status, time, stage seconds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile


def export_gauges(lineage: dict[str, Any], textfile: Path, pushgateway: str | None, pipeline: str) -> None:
    reg = CollectorRegistry()
    ok = Gauge(
        "recsys_pipeline_last_run_success",
        "1 if the last pipeline run succeeded, 0 if it failed or stopped at a gate.",
        ["pipeline"],
        registry=reg,
    )
    ts = Gauge(
        "recsys_pipeline_last_run_timestamp_seconds",
        "When the last pipeline run finished.",
        ["pipeline"],
        registry=reg,
    )
    secs = Gauge(
        "recsys_pipeline_stage_seconds",
        "Wall time of each stage in the last run (0 = reused from cache).",
        ["pipeline", "stage"],
        registry=reg,
    )
    ok.labels(pipeline).set(int(lineage.get("status") == "succeeded"))
    ts.labels(pipeline).set(time.time())
    for s in lineage.get("stages", []):
        secs.labels(pipeline, s["name"]).set(s["seconds"] if s["action"] == "ran" else 0.0)
    dep = lineage.get("deployment") or {}
    if dep.get("production_after"):
        Gauge(
            "recsys_production_model_version",
            "Registry version serving production.",
            ["pipeline"],
            registry=reg,
        ).labels(pipeline).set(float(dep["production_after"]))
    textfile.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(textfile), reg)
    if pushgateway:
        push_to_gateway(pushgateway, job=f"recsys-pipeline-{pipeline}", registry=reg)
