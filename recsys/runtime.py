"""Run one job: setup (seed, env, Ray, output dir) -> run -> cleanup (report.json, Ray shutdown).

A job module in ``jobs/`` provides ``CONFIG`` (its pydantic config class) and
``run(cfg, ctx) -> dict``; the dict (counts, metrics, artifacts, ...) is merged into
``report.json``. Nothing here knows what a job does.

When the console is on (the CLI, ``python -m jobs.<job>``; see ``recsys.utils.console``) a run is
captured: its stages (``ctx.timer`` / ``ctx.progress``) are the console's progress displays, and
everything else it prints, Ray's and libraries' logs and worker output included, goes to
``<output_dir>/job.log``; it ends with a summary table, or a failure in two lines.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from recsys.config.base import JobConfig
from recsys.config.loader import dump_config
from recsys.config.paths import runs_root
from recsys.utils.console import RunConsole, Stage, StageRow, get_console, reason, short_path
from recsys.utils.log import get_logger
from recsys.utils.seed import seed_everything

# Set for every job (and passed to Ray workers): no model hub at run time.
JOB_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0"}
# Allocator settings of a job's Ray workers when `ray.retain_worker_memory` (the default): freed memory stays in the
# process for its next task. Arrow's pool is mimalloc (purge delay -1: never return pages); numpy and pandas use glibc
# malloc (no separate mmap for large blocks, no trim). Measured in docs/BENCHMARKS.md (ETL, 2026-12-03 23:00 UTC).
WORKER_MEMORY_ENV = {
    "MIMALLOC_PURGE_DELAY": "-1",
    "MALLOC_MMAP_THRESHOLD_": "4294967296",
    "MALLOC_TRIM_THRESHOLD_": "68719476736",
}
# Ray Serve's HAProxy ingress + throughput-optimized mode (direct ingress, gRPC between replicas), read by the
# Serve controller, proxies and replicas when a cluster's nodes start (`recsys serve --fast-ingress` sets them for
# a local Ray). The mode also moves user code and the router onto each replica's main event loop; the last two
# keys keep them apart, as by default (the only fast-ingress run where the reranker autoscaled had them, and the
# overhead was no worse). Measured on the local config: docs/BENCHMARKS.md (Serving).
# Where a captured run writes everything but its progress, summary and errors (in its output dir).
LOG_FILE = "job.log"
# Ray Data's own progress bars repeat what the console shows; captured runs (not --verbose) turn them off.
QUIET_RAY_DATA_ENV = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
FAST_INGRESS_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1",
}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("recsys", "ray", "torch", "transformers", "deepspeed", "pyarrow", "pydantic"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def git_sha() -> str | None:
    with contextlib.suppress(Exception):
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
    return None


@dataclass
class JobContext:
    """What a running job gets besides its config: where to write, a logger, timers, progress."""

    job: str
    output_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    log: Any = field(default_factory=get_logger)
    console: RunConsole = field(default_factory=get_console)

    @contextlib.contextmanager
    def progress(self, name: str, total: float | None = None, unit: str = "") -> Iterator[Stage]:
        """A stage of the job: timed into ``timings[name]``, shown as one progress display (``total``
        ``unit``s when known: ``advance(n)`` on the yielded handle moves the bar and gives the ETA)."""
        start = time.perf_counter()
        self.log.info("[%s] %s ...", self.job, name)
        try:
            with self.console.stage(name, total=total, unit=unit) as stage:
                yield stage
        finally:
            self.timings[name] = round(time.perf_counter() - start, 3)
            self.log.info("[%s] %s done in %.1fs", self.job, name, self.timings[name])

    @contextlib.contextmanager
    def timer(self, name: str) -> Iterator[None]:
        """A stage without a known size (a spinner and the elapsed time)."""
        with self.progress(name):
            yield

    def note(self, text: str) -> None:
        """A line under the run's summary table (a gate's verdict, a registered version)."""
        self.console.note(text)

    def service(self, url: str) -> None:
        """The URL of a service the job left running (the summary says how to stop it)."""
        self.console.service_url = url

    def path(self, *parts: str) -> Path:
        p = self.output_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def resolve_output_dir(job: str, cfg: JobConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(runs_root()) / job / stamp


def init_ray(cfg: JobConfig) -> bool:
    """Connect to ``ray.address`` / RAY_ADDRESS, else start a local Ray. Returns True if we started it."""
    import ray  # heavy: only jobs that need Ray

    if ray.is_initialized():
        return False
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    # Worker output is streamed to the driver; a captured run writes it to job.log (utils/console.py).
    kwargs: dict[str, Any] = {"log_to_driver": True}
    env = worker_env(cfg.ray.retain_worker_memory, submitted="RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ)
    if quiet_ray_data(get_console()):
        env.update({k: v for k, v in QUIET_RAY_DATA_ENV.items() if k not in os.environ})
    if env:
        kwargs["runtime_env"] = {"env_vars": env}
    if address:
        ray.init(address=address, **kwargs)
    else:
        start_local_ray(
            num_cpus=cfg.ray.num_cpus,
            num_gpus=cfg.ray.num_gpus,
            include_dashboard=cfg.ray.include_dashboard,
            object_store_memory=cfg.ray.object_store_memory,
            env=kwargs.get("runtime_env", {}).get("env_vars"),
        )
    return True


def quiet_ray_data(console: RunConsole) -> bool:
    """Turn Ray Data's progress bars off for a captured run that is not --verbose (the console shows
    each stage; the bars would only fill job.log). Returns whether it did."""
    if not console.on or console.mode == "verbose":
        return False
    os.environ.update(QUIET_RAY_DATA_ENV)  # read when the driver's DataContext is made
    if "ray.data" in sys.modules:  # already made: set it there too
        sys.modules["ray.data"].DataContext.get_current().enable_progress_bars = False
    return True


def key_metric(report: dict[str, Any], n: int = 2) -> str:
    """The first ``n`` scalar metrics of a report (else its counts) as ``k=v`` for a summary row."""
    for key in ("metrics", "counts"):
        items = [(k, v) for k, v in (report.get(key) or {}).items() if isinstance(v, int | float | str)]
        if items:
            return " ".join(f"{k}={_fmt(v)}" for k, v in items[:n])
    return ""


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    return f"{v:,}" if isinstance(v, int) else f"{v:.4g}"


def worker_env(retain_memory: bool, submitted: bool, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables the job's ``ray.init`` gives its workers: JOB_ENV, plus WORKER_MEMORY_ENV with
    ``retain_memory``. Ray merges these with a submitted job's runtime env and fails on a key both set, so a
    submitted job (which carries JOB_ENV already, see ``recsys submit``) passes only keys its environment lacks."""
    env = {**JOB_ENV, **(WORKER_MEMORY_ENV if retain_memory else {})}
    if submitted:
        present: Mapping[str, str] = os.environ if environ is None else environ
        env = {k: v for k, v in env.items() if k not in present}
    return env


def _dashboard_port(preferred: int = 8265) -> int:
    """``preferred`` if it is free, else any free port (we must know the port Ray's dashboard gets)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_local_ray(
    num_cpus: float | None = None,
    num_gpus: int | None = None,
    include_dashboard: bool = True,
    object_store_memory: int | None = None,
    env: dict[str, str] | None = None,
    log_to_driver: bool = True,
    dashboard_port: int | None = None,
) -> None:
    """Start a local Ray whose workers can reach its State API even when other Rays run on this machine.

    Ray Train's PlacementGroupCleaner (a worker) calls the State API without an address, so it
    autodetects the cluster, which fails with "Found multiple active Ray instances" next to another
    Ray (a test run, a demo cluster): a stopped Tune trial then keeps its placement group and the
    sweep starves. RAY_API_SERVER_ADDRESS in the workers' environment names this Ray's dashboard.
    """
    import ray  # heavy: only jobs that need Ray

    # A free port can be taken by another process before the dashboard binds it: retry on another
    # (only when we picked the port; an explicit dashboard_port is the caller's to fix).
    attempts = 3 if include_dashboard and not dashboard_port else 1
    for attempt in range(attempts):
        env_vars = dict(env or {})
        kwargs: dict[str, Any] = {}
        if include_dashboard:
            port = dashboard_port or _dashboard_port(8265 if attempt == 0 else 0)
            kwargs.update(dashboard_host="127.0.0.1", dashboard_port=port)
            env_vars.setdefault("RAY_API_SERVER_ADDRESS", f"http://127.0.0.1:{port}")
        try:
            ray.init(
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                include_dashboard=include_dashboard,
                object_store_memory=object_store_memory,
                log_to_driver=log_to_driver,
                runtime_env={"env_vars": env_vars} if env_vars else None,
                **kwargs,
            )
            return
        except Exception:  # noqa: BLE001 - port race or a slow start: a fresh try on another port
            ray.shutdown()
            if attempt == attempts - 1:
                raise


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=str, sort_keys=False) + "\n", encoding="utf-8")


# (report, cfg.tracking, logger) -> a reference to the logged run for report.json, or None. A hook rather
# than an import: tracking (recsys.registry, MLflow) sits layers above the runtime.
Tracker = Callable[[dict[str, Any], Any, logging.Logger], "dict[str, Any] | None"]


def run_job(
    job: str,
    cfg: JobConfig,
    run: Callable[[Any, JobContext], dict[str, Any] | None],
    *,
    needs_ray: bool = True,
    track: Tracker | None = None,
) -> dict[str, Any]:
    """setup -> run -> cleanup. Always writes report.json (status failed + error on exceptions).

    ``track`` (the CLI passes ``recsys.registry.tracking.track_job``; a pipeline passes none: it logs its
    stages itself) logs the finished run, e.g. to MLflow per ``cfg.tracking``; it returns the run's
    reference for report.json, or None, and never changes the job's status."""
    for k, v in JOB_ENV.items():
        os.environ.setdefault(k, v)
    seed_everything(cfg.seed)
    out = resolve_output_dir(job, cfg)
    out.mkdir(parents=True, exist_ok=True)
    console = get_console()
    outer = not console.captured  # the outermost run (not a pipeline's stage) prints the summary
    ctx = JobContext(job=job, output_dir=out, console=console)
    report: dict[str, Any] = {
        "job": job,
        "status": "running",
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "output_dir": str(out),
        "versions": versions(),
        "git_sha": git_sha(),
        "config": dump_config(cfg),
    }
    started_ray = interrupted = False
    failure: BaseException | None = None
    t0 = time.perf_counter()
    with console.capture(out / LOG_FILE):
        try:
            if needs_ray and getattr(cfg, "needs_ray", True):  # a config may say this run needs no Ray
                with ctx.timer("ray_init"):
                    started_ray = init_ray(cfg)
            result = run(cfg, ctx) or {}
            report.update(result)
            report["status"] = "succeeded"
        except BaseException as exc:
            failure = exc
            partial = getattr(exc, "result", None)  # a job that failed a check after its outputs (clean's
            if isinstance(partial, dict):  # data-loss gate) keeps its numbers and verdict in report.json
                report.update(partial)
            report["status"] = "failed"
            report["error"] = f"{type(exc).__name__}: {exc}"
            report["traceback"] = traceback.format_exc()
            if console.on:
                console.to_log(report["traceback"])
            interrupted = not isinstance(exc, Exception)  # Ctrl-C: exit now, do not talk to a server
            raise
        finally:
            report["timings"] = {**ctx.timings, "total": round(time.perf_counter() - t0, 3)}
            report["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
            write_json(out / "report.json", report)
            ctx.log.info("[%s] %s; report: %s", job, report["status"], out / "report.json")
            if started_ray:
                import ray  # heavy: imported (and started) above only when the job needs Ray

                ray.shutdown()
            if track is not None and not interrupted:
                _track(track, report, cfg, ctx, out)
            _show_result(console, job, report, failure, outer)
    return report


def _show_result(
    console: RunConsole, job: str, report: dict[str, Any], failure: BaseException | None, outer: bool
) -> None:
    """A failure in two lines (the stage, the reason, the report); the summary table after the outer run."""
    path = Path(report["output_dir"]) / "report.json"
    if failure is not None:
        console.error(console.pop_failed_stage() or job, reason(failure), path)
    if outer:
        console.summary(
            f"{job}: {report['status']}",
            final=StageRow(
                job, report["status"], key_metric(report), report["timings"]["total"], short_path(path)
            ),
        )


def _track(track: Tracker, report: dict[str, Any], cfg: JobConfig, ctx: JobContext, out: Path) -> None:
    """Log the finished run; its reference goes into report.json (rewritten) when it worked."""
    tracked = track(report, cfg.tracking, ctx.log)
    if tracked:
        report["tracking"] = tracked
        write_json(out / "report.json", report)
