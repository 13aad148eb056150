"""Runs a person can follow: --quiet / --verbose, failures in two lines with the traceback in job.log,
Ray Data's INFO lines kept off the console, and `recsys serve --stop`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from recsys.cli.main import app
from recsys.serving import launch
from recsys.utils.console import RunConsole, get_console, mode_from, reason

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _bad_feedback(tmp_path: Path) -> Path:
    """A feedback directory whose one file is not Parquet: ab_report validates, then fails reading it."""
    part = tmp_path / "feedback" / "hour=0" / "part-0.parquet"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"not parquet at all")
    return part.parent.parent


def test_mode_flags_env_and_reason(monkeypatch):
    monkeypatch.delenv("RECSYS_CONSOLE", raising=False)
    assert (
        mode_from() == "normal" and mode_from(quiet=True) == "quiet" and mode_from(verbose=True) == "verbose"
    )
    monkeypatch.setenv("RECSYS_CONSOLE", "quiet")
    assert mode_from() == "quiet" and mode_from(verbose=True) == "verbose"
    with pytest.raises(ValueError, match="exclude each other"):
        mode_from(quiet=True, verbose=True)
    assert reason(ValueError("first\n\nsecond\nthird")) == "ValueError: first / second"
    assert reason(RuntimeError("x" * 400)) == "RuntimeError: " + "x" * 297 + "..."


def test_quiet_validation_error_prints_the_field(tmp_path: Path):
    fb = _bad_feedback(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.ab_report",
            "--config",
            "tiny",
            "--quiet",
            f"feedback.path={fb}",
            "alpha=2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "alpha:" in proc.stderr and "less than 1" in proc.stderr
    result = runner.invoke(
        app, ["run", "ab_report", "--config", "tiny", "--quiet", f"feedback.path={fb}", "alpha=2"]
    )
    assert result.exit_code == 1 and "alpha:" in result.output


def test_quiet_runtime_failure_prints_stage_reason_report_and_logs_traceback(tmp_path: Path):
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "run",
            "ab_report",
            "--config",
            "tiny",
            "--quiet",
            f"feedback.path={_bad_feedback(tmp_path)}",
            f"output_dir={out}",
        ],
    )
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines[0].startswith("✗ read failed: ArrowInvalid: ")  # the stage, then the reason
    assert lines[1] == f"  report: {out / 'report.json'} · log (traceback): {out / 'job.log'}"
    assert "Traceback" not in result.output and "INFO" not in result.output
    log = (out / "job.log").read_text()
    assert "Traceback (most recent call last)" in log and "pyarrow" in log
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed" and report["error"].startswith("ArrowInvalid")
    summary = [ln.split() for ln in lines if ln.split()[:1] in (["read"], ["ab_report"])]
    assert [row[:2] for row in summary[-2:]] == [
        ["read", "FAILED"],
        ["ab_report", "FAILED"],
    ]  # the summary table
    assert get_console().mode is None  # the command turned the console off again


def test_verbose_shows_info_lines_default_does_not(tmp_path: Path):
    fb = _bad_feedback(tmp_path)
    verbose = runner.invoke(
        app,
        [
            "run",
            "ab_report",
            "--config",
            "tiny",
            "--verbose",
            f"feedback.path={fb}",
            f"output_dir={tmp_path / 'v'}",
        ],
    )
    assert verbose.exit_code == 1
    assert (
        "INFO recsys: [ab_report] read ..." in verbose.output and "Traceback (most recent" in verbose.output
    )
    default = runner.invoke(
        app, ["run", "ab_report", "--config", "tiny", f"feedback.path={fb}", f"output_dir={tmp_path / 'd'}"]
    )
    assert default.exit_code == 1
    assert "▶ read ..." in default.output and "✗ read: failed in" in default.output
    assert "INFO" not in default.output and "Traceback" not in default.output
    assert "INFO recsys: [ab_report] read ..." in (tmp_path / "d" / "job.log").read_text()


def test_stage_rows_nesting_and_progress_counts():
    console = RunConsole("quiet")  # nothing drawn; rows and counts only
    with console.stage("clean", total=3, unit="tables") as top:
        with console.stage("clean_events") as sub:
            assert top.note == "clean_events" and sub.top is top
        top.advance(2)
        top.done(metric="rows=5")
    with pytest.raises(KeyError), console.stage("features"), console.stage("splits"):
        raise KeyError("user_id")
    assert [(r.name, r.status, r.metric) for r in console.rows] == [
        ("clean", "succeeded", "rows=5"),
        ("features", "failed", ""),
    ]
    assert console.pop_failed_stage() == "features › splits" and console.pop_failed_stage() is None
    assert RunConsole._count(top) == "2/3 tables"


@pytest.mark.slow
def test_default_mode_keeps_ray_data_info_in_the_log_file(tmp_path: Path):
    """A tiny Ray Data job (its own local Ray): a few console lines, Ray Data's INFO lines in job.log."""
    out = tmp_path / "clean"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    env.pop("RECSYS_CONSOLE", None)
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys.cli.main",
            "run",
            "clean",
            "--config",
            "configs/clean/tiny.yaml",
            f"output_dir={out}",
            "limit=500",
            "ray.include_dashboard=false",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    console = (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode == 0, "\n".join(console)
    assert len(console) <= 20, "\n".join(console)
    assert not [ln for ln in console if "INFO" in ln or "streaming_executor" in ln or "pid=" in ln]
    assert "✓ clean_events: succeeded in" in proc.stdout and "full log:" in proc.stdout
    log = (out / "job.log").read_text()
    assert "INFO streaming_executor.py" in log and "[clean] clean_events done in" in log


def _sleeper(pid_path: Path) -> subprocess.Popen:
    code = (  # like serve_forever: Ctrl-C (SIGINT) handled from before the pid file exists
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *_: sys.exit(0))\n"
        "open(sys.argv[1], 'w').write(f'{os.getpid()} http://127.0.0.1:1\\n')\n"
        "time.sleep(120)\n"
    )
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", code, str(pid_path)])
    deadline = time.monotonic() + 30
    while not (pid_path.is_file() and pid_path.read_text().endswith("\n")) and time.monotonic() < deadline:
        time.sleep(0.1)
    return proc


def test_stop_foreground_interrupts_the_server_in_the_pid_file(tmp_path: Path):
    pid_path = tmp_path / "serve.pid"
    proc = _sleeper(pid_path)
    assert launch.stop_foreground(pid_path, timeout_s=30) == proc.pid
    assert proc.wait(timeout=10) == 0 and not pid_path.exists()  # SIGINT: its Ctrl-C path ran
    assert launch.stop_foreground(pid_path) is None
    pid_path.write_text("999999999 http://x\n")  # stale: removed, nothing signalled
    assert launch.stop_foreground(pid_path) is None and not pid_path.exists()


def test_stop_apps_shuts_serve_down_through_the_dashboard():
    calls: list[str] = []
    running = {"applications": {"recsys": {}, "shadow": {}}}

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        assert request.url.path == "/api/serve/applications/"
        if request.method == "DELETE":
            running["applications"] = {}
        return httpx.Response(200, json=running)

    with httpx.Client(base_url="http://dash", transport=httpx.MockTransport(handler)) as client:
        assert launch.stop_apps(client, timeout_s=5) == ["recsys", "shadow"]
        assert calls == ["GET", "DELETE", "GET"]
        assert launch.stop_apps(client) == [] and calls[-1] == "GET"


def test_serve_stop_command(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("RECSYS_RUNS_ROOT", str(tmp_path))
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setattr("recsys.demo.demo_dashboard", lambda: None)
    assert runner.invoke(app, ["serve", "--stop"]).output.strip() == "no service running"
    proc = _sleeper(launch.pid_file())
    result = runner.invoke(app, ["serve", "--stop"])
    assert result.exit_code == 0 and result.output.strip() == f"stopped recsys serve (pid {proc.pid})"
    assert proc.wait(timeout=10) == 0


def test_second_demo_replaces_its_service_or_names_the_port_clash(monkeypatch, capsys):
    from recsys import demo

    out = RunConsole("normal")
    monkeypatch.setattr(demo.launch, "stop_foreground", lambda: None)
    monkeypatch.setattr(demo.launch, "serve_apps", lambda client: ["recsys"])
    demo.prepare_service_port(
        out, "http://127.0.0.1:1"
    )  # the last demo's app: updated in place by the deploy
    assert (
        "the last demo's service (recsys) is running: this run replaces it in place"
        in capsys.readouterr().out
    )
    monkeypatch.setattr(demo.launch, "serve_apps", lambda client: [])
    monkeypatch.setattr(demo, "port_busy", lambda port: port == 8000)
    with pytest.raises(demo.DemoError, match="port 8000 is taken by another process"):
        demo.prepare_service_port(out, "http://127.0.0.1:1")
    monkeypatch.setattr(demo.launch, "stop_foreground", lambda: 4242)  # a foreground `recsys serve` held it
    monkeypatch.setattr(demo, "port_busy", lambda port: False)
    demo.prepare_service_port(out, "http://127.0.0.1:1")
    assert "stopped the foreground `recsys serve` (pid 4242)" in capsys.readouterr().out


def test_a_second_demo_whose_model_loses_the_champion_gate_keeps_production(tmp_path, monkeypatch):
    """The pipeline stopped at its champion/challenger gate (the model trained now is not significantly
    better than the first demo's): the demo reports the verdict and serves production instead of failing;
    any other stop or failure stays a failure."""
    from recsys import demo

    monkeypatch.setenv("RECSYS_RUNS_ROOT", str(tmp_path))
    out_dir = tmp_path / "pipeline" / "tiny"
    out_dir.mkdir(parents=True)
    reason = "challenger 'sasrec' is not significantly better than production (...); production is unchanged"
    gates = [
        {"gate": "ndcg-floor", "kind": "metric_min", "passed": True},
        {"gate": "beats-production", "kind": "champion_challenger", "passed": False, "reason": reason},
    ]

    def lineage(status: str, gates: list) -> None:
        (out_dir / "lineage.json").write_text(json.dumps({"status": status, "gates": gates}))

    assert demo.kept_production("tiny") is None  # no run yet
    lineage("stopped", gates)
    assert demo.kept_production("tiny") == reason
    lineage("failed", gates)  # a crash after the gate: a failure
    assert demo.kept_production("tiny") is None
    lineage("stopped", [dict(gates[0], passed=False, reason="below the floor"), gates[1]])
    assert demo.kept_production("tiny") == reason  # the champion gate's own verdict is what counts
    lineage("stopped", [dict(gates[0], passed=False, reason="below the floor")])
    assert demo.kept_production("tiny") is None  # another gate stopped it: a failure


def test_summary_rows_key_metric_and_pipeline_lines():
    from recsys.pipeline.runner import _row_status
    from recsys.pipeline.summary import service_url, summary_lines
    from recsys.runtime import key_metric

    assert (
        key_metric({"metrics": {"ndcg@10": 0.61234, "nested": {}}, "counts": {"rows": 5}}) == "ndcg@10=0.6123"
    )
    assert key_metric({"metrics": {}, "counts": {"rows_in": 10000, "rows_clean": 8738, "x": 1}}) == (
        "rows_in=10,000 rows_clean=8,738"
    )
    assert key_metric({}) == ""
    ok, bad = {"status": "succeeded"}, {"status": "failed"}
    assert [_row_status(ok, True, False), _row_status(ok, False, False), _row_status(ok, True, True)] == [
        None,
        "reused",
        "gate failed",
    ]
    assert _row_status(bad, True, True) == "failed"
    summary = {
        "gates": [
            {"gate": "contract", "stage": "inventory", "passed": True, "reason": "ok"},
            {"gate": "floor", "stage": "evaluate", "passed": False, "reason": "ndcg@10 0.4 < 0.55"},
        ],
        "deployment": {
            "model_name": "games",
            "version": "3",
            "promoted": True,
            "production_after": "3",
            "service": {"url": "http://127.0.0.1:8000"},
        },
    }
    assert summary_lines(summary) == [
        "quality gates passed: contract",
        "gate floor after evaluate: FAIL — ndcg@10 0.4 < 0.55",
        "registry 'games': version 3 (promoted to production)",
    ]
    assert service_url(summary) == "http://127.0.0.1:8000" and service_url({"deployment": None}) is None


def test_demo_keeps_rays_job_lines_off_the_console(tmp_path: Path, capsys):
    from recsys import demo

    out = RunConsole("normal")
    with out.capture(tmp_path / "demo.log"):
        demo.job_console(out)(
            "2026-12-07 12:41:22,668\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
            "Running entrypoint for job raysubmit_X: python -m jobs.pipeline --config c.yaml\n"
            "▶ [1/7] inventory ...\n"
        )
    assert capsys.readouterr().out == "▶ [1/7] inventory ...\n"
    assert (tmp_path / "demo.log").read_text().splitlines() == [
        "2026-12-07 12:41:22,668\tINFO job_manager.py:581 -- Runtime env is setting up.",
        "Running entrypoint for job raysubmit_X: python -m jobs.pipeline --config c.yaml",
    ]
