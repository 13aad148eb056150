"""Multi-node integration: `recsys submit pipeline --config tiny` (its data stages, index and deploy) on a
local head + 1 worker node (cluster/local/start.sh): the job SUCCEEDED, its tasks ran on both nodes, the
service answered."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from recsys.utils.net import free_port


@pytest.mark.slow
@pytest.mark.timeout(2400)  # minutes of Ray Data overhead per stage when the 2 cores are shared
def test_submit_tiny_pipeline_to_two_node_cluster(local_cluster, monkeypatch):
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_nodes, list_tasks

    from recsys.cli.main import app

    for k, v in local_cluster["env"].items():
        if k.startswith(("RECSYS_", "RAY_AUTH")):
            monkeypatch.setenv(k, v)
    port = free_port()
    out = local_cluster["runs"] / "pipeline" / "tiny"
    result = CliRunner().invoke(
        app,
        [
            "submit",
            "pipeline",
            "--config",
            "tiny",
            "--address",
            local_cluster["address"],
            "--submission-id",
            "pipeline-2node",
            f"output_dir={out}",
            f"deploy.serve.port={port}",
            "deploy.serve.config=configs/serve/tiny.yaml",
            # train and evaluate are one Ray Train run and one evaluate job, the same on 2 nodes as on one
            # (test_pipeline_e2e runs them): the data stages' exchanges, index and Serve are what nodes change
            "stages[name=train].enabled=false",
            "stages[name=evaluate].enabled=false",
            "gates=[{name: rows-reconcile, kind: reconciliation, stage: clean}]",
            "deploy.model_stage=null",
            "deploy.champion_gate=null",
        ],
    )
    client = JobSubmissionClient(local_cluster["address"])
    assert result.exit_code == 0, result.output[-3000:] + client.get_job_logs("pipeline-2node")[-3000:]
    assert str(client.get_job_status("pipeline-2node").value) == "SUCCEEDED"
    assert "SUCCEEDED" in result.output  # a waiting submit prints the final status and exits 0

    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "succeeded" and report["deployment"]["promoted"]
    assert report["deployment"]["service"]["smoke"]["status"] == 200

    job_id = client.get_job_info("pipeline-2node").job_id
    tasks = list_tasks(
        address=local_cluster["address"],
        filters=[("job_id", "=", job_id)],
        limit=10000,
        raise_on_missing_output=False,
    )
    nodes = {t.node_id for t in tasks if t.node_id}
    assert len(list_nodes(address=local_cluster["address"])) == 2
    assert len(nodes) == 2, f"tasks ran on {len(nodes)} node(s): {nodes}"

    r = httpx.post(f"http://127.0.0.1:{port}/search", json={"query": "game", "k": 3}, timeout=60)
    assert r.status_code == 200 and r.json()["items"]
