"""The pipeline framework on cheap real jobs (doctor, drift): hash-keyed cache, rerun on changed
input, a failing stage that stops the pipeline, resume with from_stage, lineage and gauges; the
drift job on shifted synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from recsys.cli.entry import parse_job, run_parsed


def _events(path, n: int, price_mu: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 86400 * 7, n), unit="s")
    pd.DataFrame(
        {
            "user_id": rng.integers(0, 50, n).astype(str),
            "item_id": rng.integers(0, 200, n).astype(str),
            "event_type": rng.choice(["view", "click", "buy"], n, p=[0.8, 0.15, 0.05]),
            "timestamp": ts,
            "price": rng.lognormal(price_mu, 0.4, n),
        }
    ).to_parquet(path, index=False)


@pytest.fixture()
def drift_setup(tmp_path):
    _events(tmp_path / "ref.parquet", 3000, 3.0, 0)
    _events(tmp_path / "same.parquet", 3000, 3.0, 1)
    _events(tmp_path / "shifted.parquet", 3000, 3.8, 2)
    cfg = {
        "reference": {"path": str(tmp_path / "ref.parquet"), "format": "parquet"},
        "current": {"path": str(tmp_path / "same.parquet"), "format": "parquet"},
        "features": [
            {"column": "price", "kind": "numeric", "psi_max": 0.25, "ks_max": 0.2},
            {"column": "event_type", "kind": "categorical", "psi_max": 0.25},
        ],
        "max_stale_hours": None,
        "seed": 0,
    }
    path = tmp_path / "drift.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return tmp_path, path


def test_drift_job_passes_on_same_and_fails_on_shift(ray_session, drift_setup):
    tmp, cfg_path = drift_setup
    spec, cfg = parse_job("drift", str(cfg_path), [f"output_dir={tmp / 'd1'}"])
    report = run_parsed(spec, cfg)
    assert report["status"] == "succeeded" and report["drifted_features"] == []
    spec, cfg = parse_job(
        "drift", str(cfg_path), [f"output_dir={tmp / 'd2'}", f"current.path={tmp / 'shifted.parquet'}"]
    )
    with pytest.raises(Exception, match="drift in price"):
        run_parsed(spec, cfg)
    assert json.loads((tmp / "d2" / "report.json").read_text())["status"] == "failed"
    saved = json.loads((tmp / "d2" / "drift.json").read_text())
    assert saved["drifted_features"] == ["price"] and saved["counts"]["current_rows"] == 3000
    prom = (tmp / "d2" / "drift.prom").read_text()
    assert "recsys_drift_detected 1.0" in prom and 'recsys_drift_psi{feature="price"}' in prom


def test_pipeline_cache_rerun_stop_and_resume(ray_session, drift_setup, tmp_path, monkeypatch):
    tmp, drift_cfg = drift_setup
    monkeypatch.setenv("RECSYS_RUNS_ROOT", str(tmp_path / "runs"))
    pipe = {
        "output_dir": str(tmp_path / "pipe"),
        "track": False,
        "stages": [
            {"name": "probe", "job": "doctor", "config": "tiny"},
            {"name": "drift", "job": "drift", "config": str(drift_cfg), "after": ["probe"]},
        ],
    }
    pcfg = tmp_path / "pipe.yaml"
    pcfg.write_text(yaml.safe_dump(pipe))

    def run(*overrides):
        spec, cfg = parse_job("pipeline", str(pcfg), list(overrides))
        try:
            return run_parsed(spec, cfg)
        except Exception:  # noqa: BLE001 - the report on disk is what we check
            return json.loads((tmp_path / "pipe" / "report.json").read_text())

    first = run()
    assert first["status"] == "succeeded"
    assert [s["action"] for s in first["stages"]] == ["ran", "ran"]
    again = run()
    assert [s["action"] for s in again["stages"]] == ["cached", "cached"]
    assert [s["key"] for s in again["stages"]] == [s["key"] for s in first["stages"]]

    # the drift stage's input changes -> only it reruns, under a new key
    _events(tmp / "same.parquet", 3000, 3.0, 5)
    changed = run()
    assert [s["action"] for s in changed["stages"]] == ["cached", "ran"]
    assert changed["stages"][1]["key"] != first["stages"][1]["key"]

    # a failing stage stops the pipeline, names it, and leaves lineage + gauges
    _events(tmp / "same.parquet", 3000, 3.9, 6)
    stopped = run()
    assert stopped["status"] == "failed" and "stage 'drift' (drift) failed" in stopped["error"]
    assert "from_stage=drift" in stopped["error"]
    lineage = json.loads((tmp_path / "pipe" / "lineage.json").read_text())
    assert lineage["status"] == "stopped" and lineage["stages"][-1]["status"] == "failed"
    assert lineage["git_sha"] and lineage["stages"][0]["config"]["cpus_per_probe"] == 0.1
    assert (
        'recsys_pipeline_last_run_success{pipeline="pipe"} 0.0'
        in (tmp_path / "pipe" / "pipeline.prom").read_text()
    )

    # fixed (threshold raised); resume from the failed stage: the earlier stage is reused
    pipe["stages"][1]["overrides"] = {"features": [{"column": "price", "kind": "numeric", "psi_max": 50.0}]}
    pcfg.write_text(yaml.safe_dump(pipe))
    resumed = run("from_stage=drift")
    assert resumed["status"] == "succeeded", resumed.get("error")
    assert [s["action"] for s in resumed["stages"]] == ["cached", "ran"]
    assert (
        'recsys_pipeline_last_run_success{pipeline="pipe"} 1.0'
        in (tmp_path / "pipe" / "pipeline.prom").read_text()
    )


@pytest.mark.slow
def test_corrupted_logs_stop_at_inventory_with_the_violated_rule(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_RUNS_ROOT", str(tmp_path / "runs"))
    rng = np.random.default_rng(0)
    n = 400
    users = np.where(rng.random(n) < 0.3, "", rng.integers(0, 40, n).astype(str))  # 30% of user ids lost
    pd.DataFrame(
        {
            "user_id": users,
            "item_id": rng.integers(0, 90, n).astype(str),
            "event_type": "view",
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC").astype(str),
        }
    ).to_csv(tmp_path / "events.csv", index=False)
    pipe = {
        "output_dir": str(tmp_path / "pipe"),
        "track": False,
        "stages": [
            {
                "name": "inventory",
                "job": "inventory",
                "config": "tiny",
                "overrides": {
                    "input": {"path": str(tmp_path / "events.csv"), "format": "csv", "table": "events"},
                    "limit": None,
                    "now": "2024-01-02T00:00:00Z",
                    "contract": [
                        {"metric": "null_rate", "table": "events", "column": "user_id", "max": 0.01},
                        {"metric": "min_rows", "table": "events", "min": 100},
                    ],
                },
            },
            {
                "name": "clean",
                "job": "clean",
                "config": "tiny",
                "overrides": {"input": {"path": "@{inventory}"}},
            },
        ],
        "gates": [{"name": "contract", "kind": "data_contract", "stage": "inventory"}],
    }
    (tmp_path / "pipe.yaml").write_text(yaml.safe_dump(pipe))
    spec, cfg = parse_job("pipeline", str(tmp_path / "pipe.yaml"), [])
    with pytest.raises(Exception, match="stage 'inventory' \\(inventory\\) failed \\(gate contract\\)"):
        run_parsed(spec, cfg)
    lineage = json.loads((tmp_path / "pipe" / "lineage.json").read_text())
    assert [s["name"] for s in lineage["stages"]] == ["inventory"]  # clean never ran
    gate = lineage["gates"][0]
    assert not gate["passed"] and "null_rate" in gate["reason"] and "user_id" in gate["reason"]
