"""MLflow tracking of a standalone job run (``recsys run train|tune|evaluate|...``), called by
``recsys.runtime.run_job`` after report.json is written, so every job gets it the same way.

Off unless a tracking URI is known (``tracking.uri`` or MLFLOW_TRACKING_URI). Tracking never changes
a job's outcome: an unreachable server or any MLflow error is a warning, and the job's status stands.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from recsys.registry.mlflow_registry import ModelRegistry

_USERINFO = re.compile(r"^([a-z+]+://)[^/@]+@")


def tracking_uri(cfg) -> str | None:
    """The URI a job logs to (``TrackingConfig``), or None when tracking is off."""
    if not cfg.enabled:
        return None
    return cfg.uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def redact(uri: str) -> str:
    """A URI fit for report.json and logs: ``https://user:pw@host`` -> ``https://***@host``."""
    return _USERINFO.sub(r"\1***@", uri)


def dir_bytes(path: Path) -> int:
    return (
        path.stat().st_size
        if path.is_file()
        else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    )


def split_artifacts(artifacts: dict[str, Any], max_mb: float) -> tuple[dict[str, str], dict[str, str]]:
    """The job's ``artifacts`` (name -> path) as (uploaded, too large or absent: recorded as tags only)."""
    upload, by_ref = {}, {}
    for name, path in (artifacts or {}).items():
        p = Path(str(path))
        if "://" not in str(path) and p.exists() and dir_bytes(p) <= max_mb * 1e6:
            upload[name] = str(p)
        else:
            by_ref[f"recsys.artifact.{name}"] = str(path)
    return upload, by_ref


def reachable(uri: str, timeout_s: float) -> str | None:
    """None when an http(s) tracking server answers ``/health`` (or the URI is not http); else why not."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        httpx.get(uri.rstrip("/") + "/health", timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - connection errors, and httpx.InvalidURL (not an HTTPError)
        return f"{type(exc).__name__}: {exc}"
    return None


@contextlib.contextmanager
def _bounded_http(timeout_s: float) -> Iterator[None]:
    """MLflow retries a failing server for minutes by default; a finished job should not wait that long."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES")}
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, int(timeout_s))))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def track_job(report: dict[str, Any], cfg, log) -> dict[str, Any] | None:
    """Log ``report`` (a finished job's report.json, written) as one MLflow run per ``cfg``
    (a ``TrackingConfig``). Returns ``{"run_id", "experiment", "uri"}``, or None when tracking is
    off or failed (with a warning)."""
    uri = tracking_uri(cfg)
    if uri is None:
        return None
    shown = redact(uri)
    why = reachable(uri, cfg.timeout_s)
    if why:
        log.warning(
            "[%s] MLflow tracking skipped: %s did not answer (%s); the job's outputs are unaffected",
            report.get("job"),
            shown,
            why,
        )
        return None
    try:
        upload, by_ref = split_artifacts(report.get("artifacts") or {}, cfg.max_artifact_mb)
        with _bounded_http(cfg.timeout_s):
            reg = ModelRegistry(tracking_uri=uri, experiment=cfg.experiment)
            run_id = reg.log_job_report(report, by_ref, artifacts=upload)
    except Exception as exc:  # noqa: BLE001 - tracking must never fail a job that otherwise succeeded
        log.warning(
            "[%s] MLflow tracking to %s failed: %s: %s; the job's outputs are unaffected",
            report.get("job"),
            shown,
            type(exc).__name__,
            exc,
        )
        return None
    log.info(
        "[%s] MLflow run %s logged to %s (experiment %s)", report.get("job"), run_id, shown, cfg.experiment
    )
    return {"run_id": run_id, "experiment": cfg.experiment, "uri": shown}
