"""``make demo``: the pipeline's local config on the shared data, end to end, leaving the service up.

It starts a persistent local Ray (``cluster/local/start.sh``) unless ``RAY_API_SERVER_ADDRESS``
names a cluster, submits ``pipeline --config <scale>`` to it (a job run without a cluster would take
its Ray, and the service, down with it when it ends), then calls /search, /recommend and /suggest on
the deployed service and prints what came back.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from recsys.config.paths import project_root, runs_root

DEMO_PORT, DEMO_DASHBOARD = 6390, 8265
SERVICE = "http://127.0.0.1:8000"


def _cluster_address(console: Console) -> str:
    """RAY_API_SERVER_ADDRESS if set; else the demo's own cluster (GCS port 6390), started if needed.
    It is recognised by start.sh's state file, not by whatever answers on 8265 (another Ray may)."""
    from recsys.runtime import _dashboard_port

    address = os.environ.get("RAY_API_SERVER_ADDRESS")
    if address:
        return address
    info = Path(os.environ.get("RECSYS_CLUSTER_DIR", f"/tmp/recsys-cluster-{DEMO_PORT}")) / "cluster.info"
    if info.is_file():
        address = f"http://127.0.0.1:{info.read_text().split()[1]}"
        try:
            httpx.get(f"{address}/api/version", timeout=2).raise_for_status()
            console.print(f"using the demo's Ray cluster already at {address}")
            return address
        except (httpx.HTTPError, IndexError):
            pass
    dashboard = _dashboard_port(DEMO_DASHBOARD)
    console.rule("[bold]starting a local Ray[/bold] (cluster/local/start.sh)")
    start = project_root() / "cluster" / "local" / "start.sh"
    subprocess.run([str(start), "--workers", "0", "--head-cpus", "2", "--port", str(DEMO_PORT),
                    "--dashboard-port", str(dashboard)], check=True)
    return f"http://127.0.0.1:{dashboard}"


def _show_examples(console: Console) -> None:
    with httpx.Client(base_url=SERVICE, timeout=30) as http:
        search = http.post("/search", json={"query": "zelda", "k": 5}).json()
        hits = search.get("items", [])
        table = Table(title='POST /search {"query": "zelda", "k": 5}')
        for col in ("#", "item_id", "title", "score"):
            table.add_column(col)
        for hit in hits:
            table.add_row(str(hit["position"]), hit["item_id"], str(hit.get("title")), f"{hit['score']:.3f}")
        console.print(table)
        seed = [hits[0]["item_id"]] if hits else []
        rec = http.post("/recommend", json={"item_ids": seed, "k": 5}).json()
        console.print(f"POST /recommend {{item_ids: {seed}}} ->",
                      [f"{i['item_id']}: {i.get('title')}" for i in rec.get("items", [])])
        suggest = http.get("/suggest", params={"q": "mari", "k": 5}).json()
        console.print("GET /suggest?q=mari ->", json.dumps(suggest)[:400])


def run_demo(scale: str = "local") -> int:
    from recsys.cli import submit as sub
    from recsys.jobs_registry import resolve_config_path

    console = Console()
    address = _cluster_address(console)
    console.rule(f"[bold]pipeline[/bold] --config {scale} -> {address}")
    sid = sub.submit("pipeline", str(resolve_config_path("pipeline", scale)), [], address)
    final = sub.follow(sid, address)
    report = Path(runs_root()) / "pipeline" / scale / "report.json"
    console.print(f"pipeline {final}; report: {report}")
    if final != "SUCCEEDED":
        console.print(f"[red]the pipeline did not succeed; logs: recsys logs {sid} --address {address}[/red]")
        return 1
    try:
        _show_examples(console)
    except (httpx.HTTPError, KeyError, IndexError) as exc:
        console.print(f"[red]the service did not answer as expected: {exc}[/red]")
        return 1
    console.print(f"\nThe service is running: {SERVICE}/docs (OpenAPI), metrics at {SERVICE}/metrics.")
    console.print(f"Ray dashboard: {address}. Stop everything: cluster/local/stop.sh --port {DEMO_PORT}")
    return 0
