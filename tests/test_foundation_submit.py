"""`recsys submit` round trip against a real local multi-node Ray cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recsys.ops.submit import build_submission

ROOT = Path(__file__).resolve().parents[1]
RECSYS = [sys.executable, "-m", "recsys.cli.main"]


def test_build_submission_is_ray_job_submit_equivalent(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("RECSYS_DATA_ROOT", raising=False)
    spec = build_submission(
        "doctor", str(ROOT / "configs/doctor/tiny.yaml"), ["seed=3"], "http://127.0.0.1:8265", {}
    )
    assert spec["entrypoint"] == "python -m jobs.doctor --config configs/doctor/tiny.yaml seed=3"
    env = spec["runtime_env"]
    assert env["working_dir"] == str(ROOT) and ".venv/" in env["excludes"]
    assert (
        env["env_vars"]["HF_HUB_OFFLINE"] == "1" and Path(env["env_vars"]["RECSYS_DATA_ROOT"]).is_absolute()
    )
    # a remote cluster does not get this machine's paths; a config outside the project travels inline
    outside = tmp_path / "mine.yaml"
    outside.write_text("model: null\n")
    remote = build_submission("doctor", str(outside), [], "http://10.1.2.3:8265", {"A": "1"})
    assert "RECSYS_DATA_ROOT" not in remote["runtime_env"]["env_vars"]
    assert remote["runtime_env"]["env_vars"]["RECSYS_CONFIG_YAML"] == "model: null\n"
    assert "--config env:RECSYS_CONFIG_YAML" in remote["entrypoint"]


@pytest.mark.slow
def test_submit_no_wait_then_status_and_logs(local_cluster):
    addr, env = local_cluster["address"], local_cluster["env"]
    out = local_cluster["runs"] / "doctor-submit"
    sub = subprocess.run(
        [
            *RECSYS,
            "submit",
            "doctor",
            "--config",
            "tiny",
            "--address",
            addr,
            "--no-wait",
            f"output_dir={out}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert sub.returncode == 0, sub.stdout + sub.stderr
    sid = sub.stdout.strip().splitlines()[-1]
    assert sid.startswith("raysubmit_")
    deadline, status = time.time() + 240, ""
    while time.time() < deadline:
        status = subprocess.run(
            [*RECSYS, "status", sid, "--address", addr], capture_output=True, text=True, cwd=ROOT, env=env
        ).stdout.strip()
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(2)
    logs = subprocess.run(
        [*RECSYS, "logs", sid, "--address", addr], capture_output=True, text=True, cwd=ROOT, env=env
    ).stdout
    assert status == "SUCCEEDED", logs
    # the submitted job prints its summary table (the INFO lines are in its job.log)
    assert "doctor: succeeded" in logs and "full log:" in logs, logs
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"nodes": 2, "nodes_ok": 2}  # a probe ran on each node
    assert len({p["node_id"] for p in report["cluster"]["probes"]}) == 2


@pytest.mark.slow
def test_submit_waits_and_exits_with_job_status(local_cluster):
    """Waiting submit exits with the job's status: 1 and FAILED here (exit 0 and SUCCEEDED: the two-node
    pipeline submit in tests/test_pipeline_cluster.py, which waits the same way)."""
    addr, env = local_cluster["address"], local_cluster["env"]
    # an invalid config is refused before anything is submitted
    bad = subprocess.run(
        [*RECSYS, "submit", "doctor", "--config", "tiny", "--address", addr, "cpus_per_probe=0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 1 and "cpus_per_probe" in bad.stderr and "submitted" not in bad.stdout
    # a job that fails on the cluster (model absent there) makes submit exit non-zero with FAILED
    fail = subprocess.run(
        [
            *RECSYS,
            "submit",
            "doctor",
            "--config",
            "tiny",
            "--address",
            addr,
            "model.name_or_path=some-org/not-cached",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=240,
    )
    assert fail.returncode == 1 and "FAILED" in fail.stdout and "ModelNotFoundError" in fail.stdout
