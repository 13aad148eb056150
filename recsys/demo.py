"""``make demo``: the pipeline's local config on the shared data, end to end, leaving the service up.

It starts a persistent local Ray (``cluster/local/start.sh``) unless ``RAY_API_SERVER_ADDRESS``
names a cluster, submits ``pipeline --config <scale>`` to it (a job run without a cluster would take
its Ray, and the service, down with it when it ends), streams the job's console (one line per stage,
then its summary; the job's full log is its ``job.log``), then calls /search, /recommend and
/suggest on the deployed service. A second demo reuses the cluster and replaces the service in
place (Serve's rolling update on the same port); ``recsys serve --stop`` stops it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from rich.table import Table

from recsys.config.loader import load_config
from recsys.config.paths import project_root, runs_root
from recsys.jobs_registry import resolve_config_path
from recsys.ops import submit as sub
from recsys.pipeline.config import PipelineConfig
from recsys.serving import launch
from recsys.utils.console import ENV as CONSOLE_ENV
from recsys.utils.console import RunConsole, short_path
from recsys.utils.net import free_port

DEMO_PORT, DEMO_DASHBOARD, SERVICE_PORT = 6390, 8265, 8000
SERVICE = f"http://127.0.0.1:{SERVICE_PORT}"


# Ray's own lines in a job's log (its job manager's, timestamped; the entrypoint it runs): the demo's log file
RAY_JOB_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+[A-Z]+ \S+\.py:\d+ -- |Running entrypoint for job )"
)


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what to do."""


def cluster_dir() -> Path:
    """start.sh's state directory of the demo's cluster."""
    return Path(os.environ.get("RECSYS_CLUSTER_DIR", f"/tmp/recsys-cluster-{DEMO_PORT}"))


def demo_dashboard() -> str | None:
    """The dashboard of the demo's Ray cluster when it runs. It is recognised by start.sh's state
    file, not by whatever answers on 8265 (another Ray may)."""
    info = cluster_dir() / "cluster.info"
    try:
        address = f"http://127.0.0.1:{info.read_text(encoding='utf-8').split()[1]}"
        httpx.get(f"{address}/api/version", timeout=2).raise_for_status()
        return address
    except (OSError, IndexError, httpx.HTTPError):
        return None


def port_busy(port: int, host: str = "127.0.0.1") -> bool:
    """Something accepts connections on ``port``."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def _cluster_address(out: RunConsole, log: Path) -> str:
    """RAY_API_SERVER_ADDRESS if set; else the demo's own cluster (GCS port 6390), started if needed."""
    address = os.environ.get("RAY_API_SERVER_ADDRESS") or demo_dashboard()
    if address:
        out.print(f"using the Ray cluster at {address}")
        return address
    dashboard = DEMO_DASHBOARD if not port_busy(DEMO_DASHBOARD) else free_port()
    out.print(f"starting a local Ray (cluster/local/start.sh --port {DEMO_PORT}; dashboard :{dashboard}) ...")
    start = project_root() / "cluster" / "local" / "start.sh"
    args = [
        "--workers",
        "0",
        "--head-cpus",
        "2",
        "--port",
        str(DEMO_PORT),
        "--dashboard-port",
        str(dashboard),
    ]
    # its own session: Ctrl-C on (or a timeout of) the demo must not signal the cluster that keeps the service
    proc = subprocess.run([str(start), *args], capture_output=True, text=True, start_new_session=True)
    with open(log, "a", encoding="utf-8") as fh:  # start.sh's output: the demo's log
        fh.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise DemoError(f"cluster/local/start.sh failed (exit {proc.returncode}): {last[0]}")
    return f"http://127.0.0.1:{dashboard}"


def prepare_service_port(out: RunConsole, dashboard: str) -> None:
    """Make room for the service on port 8000. The last demo's app on this cluster is replaced in
    place by the deploy (same config: a rolling update, no port clash); a foreground `recsys serve`
    holding the port is stopped; anything else on it is an error to act on."""
    pid = launch.stop_foreground()
    if pid is not None:
        out.print(f"stopped the foreground `recsys serve` (pid {pid}) that held port {SERVICE_PORT}")
    try:
        with httpx.Client(base_url=dashboard, timeout=10) as client:
            apps = launch.serve_apps(client)
    except httpx.HTTPError:
        apps = []
    if apps:
        out.print(f"the last demo's service ({', '.join(apps)}) is running: this run replaces it in place")
    elif port_busy(SERVICE_PORT):
        raise DemoError(
            f"port {SERVICE_PORT} is taken by another process (not this cluster's Serve); stop it "
            f"(`recsys serve --stop --address <its Ray dashboard>`, or find it: lsof -i :{SERVICE_PORT})"
        )


def job_console(out: RunConsole) -> Callable[[str], None]:
    """Where the submitted job's log goes: its console (stage lines, summary) to the terminal, Ray's
    lines about the job to the demo's log."""

    def write(text: str) -> None:
        for line in text.splitlines(keepends=True):
            if RAY_JOB_LINE.match(line):
                sys.stdout.write(line)  # captured: the demo's log
            else:
                out.raw(line)

    return write


def _show_examples(out: RunConsole) -> None:
    with httpx.Client(base_url=SERVICE, timeout=30) as http:
        search = http.post("/search", json={"query": "zelda", "k": 5}).json()
        hits = search.get("items", [])
        table = Table(title='POST /search {"query": "zelda", "k": 5}', title_justify="left")
        for col in ("#", "item_id", "title", "score"):
            table.add_column(col)
        for hit in hits:
            table.add_row(str(hit["position"]), hit["item_id"], str(hit.get("title")), f"{hit['score']:.3f}")
        out.show(table)
        seed = [hits[0]["item_id"]] if hits else []
        rec = http.post("/recommend", json={"item_ids": seed, "k": 5}).json()
        items = [f"{i['item_id']}: {i.get('title')}" for i in rec.get("items", [])]
        out.print(f"POST /recommend {{item_ids: {seed}}} -> {items}")
        suggest = http.get("/suggest", params={"q": "mari", "k": 5}).json()
        out.print(f"GET /suggest?q=mari -> {json.dumps(suggest)[:300]}")


def _pipeline_config(scale: str) -> PipelineConfig:
    return load_config(PipelineConfig, resolve_config_path("pipeline", scale), check_paths=False)


def kept_production(scale: str) -> str | None:
    """The gate's reason when the pipeline stopped at its champion/challenger gate (the model trained now did
    not significantly beat production, e.g. on a second `make demo` after an upgrade: production is unchanged,
    a verdict rather than a failure); None for any other outcome."""
    cfg = _pipeline_config(scale)
    if cfg.output_dir is None or cfg.deploy is None or not cfg.deploy.champion_gate:
        return None
    lineage = Path(cfg.output_dir) / "lineage.json"
    if not lineage.is_file():
        return None
    run = json.loads(lineage.read_text(encoding="utf-8"))
    gate = next((g for g in run.get("gates", []) if g.get("gate") == cfg.deploy.champion_gate), None)
    if run.get("status") != "stopped" or gate is None or gate.get("passed"):
        return None
    return str(gate.get("reason"))


def serve_production(scale: str) -> str:
    """Serve the registry's production version with the pipeline's serve config on the demo cluster (in place
    when its service runs: a rolling update); what `recsys models promote --serve` does."""
    import ray  # lazy: only this path needs a driver on the cluster

    from recsys.pipeline.deploy import serve_target
    from recsys.registry import ModelRegistry

    cfg = _pipeline_config(scale)
    if cfg.deploy is None or cfg.deploy.serve is None:
        raise DemoError(f"configs/pipeline/{scale}.yaml deploys no service (deploy.serve)")
    target = ModelRegistry.from_config(cfg.registry).serving_target("production")
    ray.init(address=f"127.0.0.1:{DEMO_PORT}", log_to_driver=False)
    try:
        served = serve_target(
            cfg.deploy.serve.config,
            target["artifacts"],
            target["index_version"],
            cfg.deploy.serve.arm,
            port=cfg.deploy.serve.port or SERVICE_PORT,
            model=target.get("model"),
        )
    finally:
        ray.shutdown()
    return f"{served['url']} serves production version {target['version']} (index {target['index_version']})"


def run_demo(scale: str, out: RunConsole) -> int:
    """The demo with ``out`` (the console, on): its own log is runs/demo/demo.log."""
    log = Path(runs_root()) / "demo" / "demo.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("", encoding="utf-8")  # this run's log only
    with out.capture(log):
        try:
            address = _cluster_address(out, log)
            prepare_service_port(out, address)
        except DemoError as exc:
            out.error("demo", str(exc))
            return 1
        out.print(f"pipeline --config {scale}, submitted to {address}:")
        sid = sub.submit(
            "pipeline",
            str(resolve_config_path("pipeline", scale)),
            [],
            address,
            {CONSOLE_ENV: out.mode or "normal"},
        )
        final = sub.follow(sid, address, write=job_console(out))
        kept = kept_production(scale) if final != "SUCCEEDED" else None
        if final != "SUCCEEDED" and kept is None:
            out.error(
                "demo",
                f"the pipeline's Ray job ended {final}; its console: recsys logs {sid} --address {address}",
            )
            return 1
        if (
            kept is not None
        ):  # a second demo whose retrained model did not beat the first one's: not a failure
            out.print(f"production keeps serving: {kept}")
            try:
                out.print(f"service: {serve_production(scale)}")
            except Exception as exc:  # noqa: BLE001 - registry, Ray and Serve errors all end the demo the same way
                out.error("demo", f"could not serve production: {type(exc).__name__}: {exc}")
                return 1
        try:
            _show_examples(out)
        except (httpx.HTTPError, KeyError, IndexError) as exc:
            out.error("demo", f"the service did not answer as expected: {type(exc).__name__}: {exc}")
            return 1
    out.print(
        f"The service keeps running: {SERVICE}/docs (OpenAPI), metrics at {SERVICE}/metrics; Ray dashboard: "
        f"{address}. Stop the service: recsys serve --stop "
        f"(Ray too: cluster/local/stop.sh --port {DEMO_PORT}). "
        f"Demo log: {short_path(log)}",
        quiet_too=True,
    )
    return 0
