"""MLflow registry: versions with tags, staging / production / previous aliases, promote, rollback,
run tracking, and the `recsys models` commands (embedded sqlite, no server)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recsys.registry.tracking import track_job


@pytest.fixture(scope="module")
def registry_env(tmp_path_factory):
    from recsys.registry import ModelRegistry

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    reg = ModelRegistry(tracking_uri=uri, artifact_location=str(root / "artifacts"), model_name="games")
    dirs = []
    for i in range(3):
        d = root / f"index-v{i}"
        d.mkdir()
        (d / "manifest.json").write_text(json.dumps({"version": f"v{i}"}))
        dirs.append(d)
    return reg, uri, dirs, root


def test_register_promote_rollback(registry_env):
    from recsys.registry import RegistryError

    reg, _, dirs, root = registry_env
    run_id = reg.log_run(
        "evaluate",
        params={"protocol": {"split": "loo"}, "metrics": ["ndcg@10"]},
        metrics={"ndcg@10": 0.61, "not-a-number": "x"},
        artifacts={"index": str(dirs[0])},
    )
    run = reg.client.get_run(run_id)
    assert run.data.metrics == {"ndcg_at_10": 0.61}
    assert run.data.params["protocol.split"] == "loo" and run.data.params["metrics"] == '["ndcg@10"]'
    v1 = reg.register(
        str(dirs[0]),
        run_id=run_id,
        tags={
            "recsys.index_dir": str(root),
            "recsys.index_version": "v0",
            "recsys.metrics": {"gate": {"diff": 0.1}},
        },
    )
    v2 = reg.register(str(dirs[1]), tags={"recsys.index_dir": str(root), "recsys.index_version": "v1"})
    assert (v1, v2) == ("1", "2")
    assert reg.alias_version("staging") == "2"
    assert reg.promote(v1) == {"production": "1", "previous": None}
    assert reg.promote(v2) == {"production": "2", "previous": "1"}
    assert reg.alias_version("staging") is None  # promoting the staged version clears staging
    rows = {r["version"]: r for r in reg.versions()}
    assert rows["2"]["aliases"] == ["production"] and rows["1"]["aliases"] == ["previous"]
    assert json.loads(rows["1"]["tags"]["recsys.metrics"]) == {"gate": {"diff": 0.1}}
    assert reg.serving_target("production") == {"version": "2", "artifacts": str(root), "index_version": "v1"}
    assert reg.local_path("production") == str(dirs[1].resolve())
    assert reg.rollback() == {"production": "1", "rolled_back": "2"}
    assert reg.get("2")["tags"]["recsys.rolled_back"] == "true"
    with pytest.raises(RegistryError, match="no earlier production version to roll back to"):
        reg.rollback()
    with pytest.raises(RegistryError, match="has no version or alias '9'"):
        reg.promote("9")


def test_models_cli(registry_env):
    from recsys.cli.main import app

    reg, uri, dirs, root = registry_env
    v3 = reg.register(str(dirs[2]), tags={"recsys.index_dir": str(root), "recsys.index_version": "v2"})
    runner = CliRunner()
    base = ["--tracking-uri", uri, "--name", "games"]
    res = runner.invoke(app, ["models", "promote", v3, *base])
    assert res.exit_code == 0, res.output
    assert f"production = {v3} (previous: 1)" in res.output
    res = runner.invoke(app, ["models", "ls", *base, "--json"])
    rows = {r["version"]: r["aliases"] for r in json.loads(res.output)}
    assert rows[v3] == ["production"] and rows["1"] == ["previous"]
    res = runner.invoke(app, ["models", "rollback", *base])
    assert res.exit_code == 0 and f"rolled back {v3} -> production = 1" in res.output
    res = runner.invoke(app, ["models", "promote", "42", *base])
    assert res.exit_code == 1 and "has no version or alias '42'" in res.output


# ---- tracking of standalone jobs (recsys.runtime.run_job -> recsys.registry.tracking) -------------------------


def _toy_job(tmp_path, fail: bool = False):
    """A job config and run() without Ray: nested params, nested metrics, a small and a large artifact."""
    from pydantic import Field

    from recsys.config import JobConfig, StrictModel

    class Inner(StrictModel):
        lr: float = Field(0.01, description="x")
        names: list[str] = Field(default_factory=lambda: ["a", "b"], description="x")

    class ToyConfig(JobConfig):
        inner: Inner = Field(default_factory=Inner, description="x")

    def run(cfg, ctx):
        if fail:
            raise ValueError("boom")
        (ctx.output_dir / "small.txt").write_text("hello")
        (ctx.output_dir / "big.bin").write_bytes(b"\0" * 2_000_000)
        return {
            "metrics": {"itemknn": {"ndcg@10": 0.25, "note": "text"}, "loss": 1.5},
            "counts": {"rows": 7},
            "artifacts": {"small": str(ctx.output_dir / "small.txt"), "big": str(ctx.output_dir / "big.bin")},
        }

    return ToyConfig, run


def test_run_job_tracks_params_metrics_artifacts(tmp_path, monkeypatch):
    from recsys.registry import ModelRegistry
    from recsys.runtime import run_job

    monkeypatch.setenv("RECSYS_RUNS_ROOT", str(tmp_path / "runs"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    Toy, run = _toy_job(tmp_path)
    cfg = Toy.model_validate(
        {
            "output_dir": str(tmp_path / "out"),
            "tracking": {"uri": uri, "experiment": "jobs", "max_artifact_mb": 1},
        }
    )
    report = run_job("toy", cfg, run, needs_ray=False, track=track_job)
    assert report["status"] == "succeeded"
    assert report["tracking"]["experiment"] == "jobs" and report["tracking"]["uri"] == uri
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["tracking"] == report["tracking"]

    reg = ModelRegistry(tracking_uri=uri, experiment="jobs")
    run_ = reg.client.get_run(report["tracking"]["run_id"])
    assert run_.info.status == "FINISHED" and run_.info.run_name == "toy"
    assert run_.data.params == {
        "seed": "0",
        "output_dir": str(tmp_path / "out"),
        "inner.lr": "0.01",
        "inner.names": '["a", "b"]',
        "ray.address": "None",
        "ray.num_cpus": "None",
        "ray.num_gpus": "None",
        "ray.include_dashboard": "True",
        "ray.object_store_memory": "None",
        "ray.retain_worker_memory": "True",
        "tracking.enabled": "True",
        "tracking.uri": uri,
        "tracking.experiment": "jobs",
        "tracking.max_artifact_mb": "1.0",
        "tracking.timeout_s": "10.0",
    }
    metrics = dict(run_.data.metrics)
    assert metrics.pop("time.total") >= 0
    assert metrics == {"itemknn.ndcg_at_10": 0.25, "loss": 1.5, "count.rows": 7.0}
    assert run_.data.tags["recsys.job"] == "toy" and run_.data.tags["recsys.status"] == "succeeded"
    assert run_.data.tags["recsys.artifact.big"] == str(tmp_path / "out" / "big.bin")  # over max_artifact_mb
    logged = sorted(
        f.path
        for d in reg.client.list_artifacts(run_.info.run_id)
        for f in reg.client.list_artifacts(run_.info.run_id, d.path)
    )
    assert logged == ["report/report.json", "small/small.txt"]


def test_run_job_tracking_env_default_failed_job_and_off(tmp_path, monkeypatch):
    from recsys.registry import ModelRegistry
    from recsys.runtime import run_job

    monkeypatch.setenv("RECSYS_RUNS_ROOT", str(tmp_path / "runs"))
    uri = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    Toy, failing = _toy_job(tmp_path, fail=True)
    with pytest.raises(ValueError, match="boom"):
        run_job("toy", Toy(output_dir=str(tmp_path / "failed")), failing, needs_ray=False, track=track_job)
    reg = ModelRegistry(tracking_uri=uri)  # experiment "recsys": the default
    (only,) = reg.client.search_runs([reg.experiment_id])
    assert only.info.status == "FAILED" and only.data.tags["recsys.status"] == "failed"
    assert (
        json.loads((tmp_path / "failed" / "report.json").read_text())["tracking"]["run_id"]
        == only.info.run_id
    )

    _, ok = _toy_job(tmp_path)
    report = run_job(
        "toy",
        Toy(output_dir=str(tmp_path / "off"), tracking={"enabled": False}),
        ok,
        needs_ray=False,
        track=track_job,
    )
    assert "tracking" not in report and len(reg.client.search_runs([reg.experiment_id])) == 1
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    report = run_job("toy", Toy(output_dir=str(tmp_path / "nouri")), ok, needs_ray=False, track=track_job)
    assert "tracking" not in report and report["status"] == "succeeded"


def test_run_job_unreachable_tracking_server_warns(tmp_path, monkeypatch, caplog):
    import socket

    from recsys.runtime import run_job

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    Toy, run = _toy_job(tmp_path)
    cfg = Toy(output_dir=str(tmp_path / "out"), tracking={"uri": f"http://127.0.0.1:{port}", "timeout_s": 2})
    report = run_job("toy", cfg, run, needs_ray=False, track=track_job)
    assert report["status"] == "succeeded" and "tracking" not in report
    assert json.loads((tmp_path / "out" / "report.json").read_text())["status"] == "succeeded"
    assert f"MLflow tracking skipped: http://127.0.0.1:{port} did not answer" in caplog.text


def test_tracking_config_rejects_credentials_and_redacts():
    from pydantic import ValidationError

    from recsys.config import TrackingConfig
    from recsys.registry.tracking import redact

    with pytest.raises(ValidationError, match="tracking.uri must not embed credentials"):
        TrackingConfig(uri="https://bob:pw@mlflow.example.com")
    assert redact("https://token@mlflow.example.com/x") == "https://***@mlflow.example.com/x"
    assert redact("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"


@pytest.mark.slow
def test_recsys_run_doctor_is_tracked(ray_session, tmp_path, monkeypatch):
    """A real job through the CLI path (parse_job -> run_job): `recsys run doctor --config tiny tracking.uri=...`."""
    from recsys.cli.entry import parse_job, run_parsed
    from recsys.registry import ModelRegistry

    monkeypatch.setenv("RECSYS_RUNS_ROOT", str(tmp_path / "runs"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec, cfg = parse_job(
        "doctor",
        "tiny",
        [f"output_dir={tmp_path / 'doctor'}", f"tracking.uri={uri}", "tracking.experiment=doctor"],
    )
    report = run_parsed(spec, cfg)
    assert report["status"] == "succeeded"
    run = ModelRegistry(tracking_uri=uri, experiment="doctor").client.get_run(report["tracking"]["run_id"])
    params = run.data.params
    assert {
        k: params[k] for k in ("model", "texts", "cpus_per_probe", "ray.num_cpus", "tracking.experiment")
    } == {
        "model": "None",
        "texts": '["wireless gaming mouse"]',
        "cpus_per_probe": "0.1",
        "ray.num_cpus": "2.0",
        "tracking.experiment": "doctor",
    }
    assert len(params) == 16
    metrics = {k: v for k, v in run.data.metrics.items() if not k.startswith("time.")}
    assert metrics == {"count.nodes": 1.0, "count.nodes_ok": 1.0}
    assert {"time.total", "time.probe_nodes"} <= set(run.data.metrics)
