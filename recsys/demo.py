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
    address = os.environ.get("RAY_API_SERVER_ADDRESS")
    if address:
        return address
    address = f"http://127.0.0.1:{DEMO_DASHBOARD}"
    try:
        httpx.get(f"{address}/api/version", timeout=2).raise_for_status()
        console.print(f"using the Ray cluster already at {address}")
        return address
    except httpx.HTTPError:
        pass
    console.rule("[bold]starting a local Ray[/bold] (cluster/local/start.sh)")
    start = project_root() / "cluster" / "local" / "start.sh"
    subprocess.run([str(start), "--workers", "0", "--head-cpus", "2", "--port", str(DEMO_PORT),
                    "--dashboard-port", str(DEMO_DASHBOARD)], check=True)
    return address


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
