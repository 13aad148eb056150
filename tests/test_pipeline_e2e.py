"""The tiny pipeline end to end on the real stages (synth logs -> clean -> evaluate -> index ->
registry -> Serve), then: a worse challenger is not promoted; promote / rollback move the running
service without a failed request; no secret from the environment reaches any output."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from pathlib import Path

import httpx
import pytest
import yaml

from recsys.cli.entry import parse_job, run_parsed

SECRETS = {"RECSYS_PII_SALT": "pii-salt-5f1c9e0b77", "MLFLOW_TRACKING_PASSWORD": "mlflow-pw-a83bd10c42",
           "RECSYS_API_KEY": "api-key-0c6e2d9f31"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scan_for_secrets(root: Path) -> list[str]:
    hits = []
    for f in root.rglob("*"):
        if f.is_file() and f.stat().st_size < 50_000_000:
            data = f.read_bytes()
            hits += [f"{f}: {k}" for k, v in SECRETS.items() if v.encode() in data]
    return hits


@pytest.mark.slow
@pytest.mark.timeout(2400)  # minutes of Ray Data overhead per stage when the 2 cores are shared
def test_tiny_pipeline_end_to_end(ray_session, tmp_path, monkeypatch, project_root):
    from ray import serve

    from recsys.pipeline.deploy import serve_target
    from recsys.registry import ModelRegistry

    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("RECSYS_RUNS_ROOT", str(tmp_path / "runs"))
    port = _free_port()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = [f"output_dir={tmp_path / 'pipe'}", f"registry.tracking_uri={uri}",
              f"registry.artifact_location={tmp_path / 'artifacts'}", f"deploy.serve.port={port}"]
    spec, cfg = parse_job("pipeline", "tiny", common)
    try:
        report = run_parsed(spec, cfg)
        assert report["status"] == "succeeded"
        assert [s["name"] for s in report["stages"]] == ["logs", "clean", "evaluate", "index"]
        assert all(g["passed"] for g in report["gates"]) and len(report["gates"]) == 3
        dep = report["deployment"]
        assert dep["promoted"] and dep["production_after"] == "1"
        assert dep["service"]["smoke"]["status"] == 200
        lineage = json.loads((tmp_path / "pipe" / "lineage.json").read_text())
        assert lineage["git_sha"] and lineage["deployment"]["version"] == "1"
        assert lineage["stages"][1]["upstream"] == ["logs"] and lineage["stages"][3]["upstream"] == ["clean"]
        reg = ModelRegistry(tracking_uri=uri)
        assert json.loads(reg.get("production")["tags"]["recsys.champion_spec"])["name"] == "itemknn"
        tracked = reg.client.search_runs([reg.experiment_id])
        assert {r.data.tags["recsys.stage"] for r in tracked} == {"logs", "clean", "evaluate", "index"}

        # a worse challenger (1-neighbour itemknn) against production (50 neighbours): not promoted
        data = yaml.safe_load((project_root / "configs/pipeline/tiny.yaml").read_text())
        ev = next(s for s in data["stages"] if s["name"] == "evaluate")
        ev["overrides"]["models"][1]["params"] = {"neighbors": 1}
        worse_cfg = tmp_path / "worse.yaml"
        worse_cfg.write_text(yaml.safe_dump(data))
        spec, cfg = parse_job("pipeline", str(worse_cfg), common)
        with pytest.raises(Exception, match="gate 'beats-production'"):
            run_parsed(spec, cfg)
        worse = json.loads((tmp_path / "pipe" / "lineage.json").read_text())
        assert [s["action"] for s in worse["stages"]] == ["cached", "cached", "ran"]
        assert "production is unchanged" in worse["gates"][-1]["reason"]
        assert reg.alias_version("production") == "1" and [v["version"] for v in reg.versions()] == ["1"]

        # the first config again: its challenger is production's own spec, so the gate sees a refresh
        # (comparing a model with itself can never pass a significance test) and the run succeeds
        spec, cfg = parse_job("pipeline", "tiny", common)
        again = run_parsed(spec, cfg)
        assert again["status"] == "succeeded" and [s["action"] for s in again["stages"]] == ["cached"] * 4
        assert again["gates"][-1]["passed"] and again["gates"][-1]["details"]["refresh"]
        assert again["deployment"]["version"] == "1" and not again["deployment"]["promoted"]

        # promote a second version (a copy of the index under a new version) and roll back, live
        target = reg.serving_target("production")
        shutil.copytree(Path(target["artifacts"]) / target["index_version"], Path(target["artifacts"]) / "v-copy")
        v2 = reg.register(str(Path(target["artifacts"]) / "v-copy"),
                          tags={"recsys.index_dir": target["artifacts"], "recsys.index_version": "v-copy"})
        url = f"http://127.0.0.1:{port}"
        failures, versions, stop = [], set(), threading.Event()

        def hammer():
            while not stop.is_set():
                try:
                    r = httpx.post(f"{url}/search", json={"query": "game", "k": 3}, timeout=60)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                (versions.add(r.json()["version"]) if r.status_code == 200 else failures.append(f"{r.status_code}: {r.text[:300]}"))

        t = threading.Thread(target=hammer)
        t.start()
        try:
            reg.promote(v2)
            serve_target("configs/serve/tiny.yaml", target["artifacts"], "v-copy", port=port)
            reg.rollback()
            back = reg.serving_target("production")
            serve_target("configs/serve/tiny.yaml", back["artifacts"], back["index_version"], port=port)
            assert httpx.post(f"{url}/search", json={"query": "game", "k": 3}, timeout=30).json()["version"] == back["index_version"]
        finally:
            stop.set()
            t.join()
        assert reg.alias_version("production") == "1"
        assert "v-copy" in versions or back["index_version"] in versions
        assert _scan_for_secrets(tmp_path) == []
        # Was an xfail: with Ray's default max_surge_percent 0 every 1-replica deployment, the ingress
        # included, was stopped before its replacement started, and the proxy answered 500 for requests
        # in the killed ingress. Serving now surges (DeploymentArgs.max_surge_percent).
        assert failures == [], f"{len(failures)} request(s) failed during promote/rollback: {failures[:3]}"
    finally:
        serve.shutdown()
