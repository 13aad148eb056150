"""The recsys CLI: ls, validate (no Ray), run, and python -m jobs.<job>."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from recsys.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_ls_lists_jobs_and_configs():
    result = runner.invoke(app, ["ls"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "doctor" in result.output and "cluster, local, tiny" in result.output


def test_validate_ok_and_errors_exit_1_without_starting_ray(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeed: 1\ncpus_per_probe: lots\nmodel:\n  name_or_path: ./missing-model\n")
    code = (
        "import sys; from typer.testing import CliRunner; from recsys.cli.main import app\n"
        "r = CliRunner().invoke(app, ['validate', 'doctor', '--config', sys.argv[1], 'ray.num_cpu=2'])\n"
        "print(r.output); print('RAY_IMPORTED', 'ray' in sys.modules); sys.exit(r.exit_code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "4 error(s)" in out
    for needle in (
        "seeed: unknown key",
        "cpus_per_probe:",
        "model.name_or_path: model directory",
        "ray.num_cpu:",
    ):
        assert needle in out
    assert "RAY_IMPORTED False" in out  # validation never imports (let alone starts) Ray

    ok = runner.invoke(app, ["validate", "doctor", "--config", "tiny", "seed=3"])
    assert ok.exit_code == 0 and "config OK" in ok.output


def test_run_writes_report(ray_session, tmp_path: Path):
    out = tmp_path / "doctor"
    result = runner.invoke(app, ["run", "doctor", "--config", "tiny", f"output_dir={out}", "seed=5"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "succeeded"
    assert report["config"]["seed"] == 5 and report["config"]["model"] is None
    assert report["counts"]["nodes"] >= 1 and report["counts"]["nodes_ok"] == report["counts"]["nodes"]
    assert {"ray", "torch", "python"} <= set(report["versions"])
    assert "probe_nodes" in report["timings"] and report["timings"]["total"] > 0


def test_failed_job_still_writes_report(ray_session, tmp_path: Path, monkeypatch):
    import jobs.doctor

    def boom(cfg, ctx):
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(jobs.doctor, "run", boom)
    out = tmp_path / "failed"
    result = runner.invoke(app, ["run", "doctor", "--config", "tiny", f"output_dir={out}"])
    assert result.exit_code != 0
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed" and "probe exploded" in report["error"]
