"""Export drift results as Prometheus gauges: a node-exporter textfile and/or a Pushgateway push."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile


def drift_registry(results: list[dict], job: str, last_event_ts: float | None):
    reg = CollectorRegistry()
    psi = Gauge(
        "recsys_drift_psi",
        "PSI between the training snapshot and recent feedback.",
        ["feature"],
        registry=reg,
    )
    ks = Gauge("recsys_drift_ks", "Two-sample KS statistic (numeric features).", ["feature"], registry=reg)
    thr = Gauge(
        "recsys_drift_psi_threshold", "PSI alert threshold of the feature.", ["feature"], registry=reg
    )
    det = Gauge("recsys_drift_detected", "1 if any feature is above its threshold.", registry=reg)
    ran = Gauge("recsys_drift_last_run_timestamp_seconds", "When the drift job last finished.", registry=reg)
    for r in results:
        if "psi" in r:
            psi.labels(feature=r["feature"]).set(r["psi"])
            thr.labels(feature=r["feature"]).set(r["psi_max"])
        if "ks" in r:
            ks.labels(feature=r["feature"]).set(r["ks"])
    det.set(int(any(r.get("drifted") for r in results)))
    ran.set(time.time())
    if last_event_ts is not None:
        Gauge(
            "recsys_data_last_event_timestamp_seconds",
            "Newest event in the recent feedback (data freshness).",
            registry=reg,
        ).set(last_event_ts)
    return reg


def export(
    results: list[dict], textfile: Path | None, pushgateway: str | None, job: str, last_event_ts: float | None
) -> None:
    reg = drift_registry(results, job, last_event_ts)
    if textfile is not None:
        textfile.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(textfile), reg)
    if pushgateway:
        push_to_gateway(pushgateway, job=job, registry=reg)
