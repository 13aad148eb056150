"""The tiny pipeline end to end on the real stages (synth logs -> clean -> features -> train ->
evaluate -> index -> registry -> Serve, /recommend from the trained model), then: a worse trained
model is not promoted; a rerun reuses every stage; a promotion moves the running service
without a failed request and rollback moves the alias back; no secret from the environment reaches any output."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import httpx
import pytest
import yaml

from recsys.cli.entry import parse_job, run_parsed
from recsys.utils.net import free_port

SECRETS = {
    "RECSYS_PII_SALT": "pii-salt-5f1c9e0b77",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-pw-a83bd10c42",
    "RECSYS_API_KEY": "api-key-0c6e2d9f31",
}


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
    port = free_port()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = [
        f"output_dir={tmp_path / 'pipe'}",
        f"registry.tracking_uri={uri}",
        f"registry.artifact_location={tmp_path / 'artifacts'}",
        f"deploy.serve.port={port}",
    ]
    spec, cfg = parse_job("pipeline", "tiny", common)
    try:
        report = run_parsed(spec, cfg)
        assert report["status"] == "succeeded"
        assert [s["name"] for s in report["stages"]] == [
            "logs",
            "clean",
            "features",
            "train",
            "evaluate",
            "index",
        ]
        assert all(g["passed"] for g in report["gates"]) and len(report["gates"]) == 4
        floor = next(g for g in report["gates"] if g["gate"] == "ndcg-floor")
        assert floor["details"]["key"] == "metrics.sasrec.ndcg@10"  # the gates are about the trained model
        dep = report["deployment"]
        assert dep["promoted"] and dep["production_after"] == "1"
        assert dep["service"]["smoke"]["status"] == 200
        lineage = json.loads((tmp_path / "pipe" / "lineage.json").read_text())
        assert lineage["git_sha"] and lineage["deployment"]["version"] == "1"
        upstream = {s["name"]: s["upstream"] for s in lineage["stages"]}
        assert upstream == {
            "logs": [],
            "clean": ["logs"],
            "features": ["clean"],
            "train": ["features"],
            "evaluate": ["features", "train"],
            "index": ["clean"],
        }
        train_dir = Path(next(s["output_dir"] for s in lineage["stages"] if s["name"] == "train"))
        reg = ModelRegistry(tracking_uri=uri, model_name="recsys-tiny")
        prod = reg.get("production")["tags"]
        assert json.loads(prod["recsys.champion_spec"]) == {
            "name": "sasrec",
            "kind": "model",
            "path": str(train_dir / "model"),
        }
        assert prod["recsys.model_dir"] == str(train_dir / "model")
        tracked = reg.client.search_runs([reg.experiment_id])
        assert {r.data.tags["recsys.stage"] for r in tracked} == {
            "logs",
            "clean",
            "features",
            "train",
            "evaluate",
            "index",
        }
        # the served arm recommends with the registered (trained) model
        url = f"http://127.0.0.1:{port}"
        seen = dep["service"]["smoke"]["first"]["item_id"]
        rec = httpx.post(f"{url}/recommend", json={"item_ids": [seen], "k": 3}, timeout=60).json()
        assert rec["strategy"] == "sequential" and len(rec["items"]) == 3

        # a worse challenger (the model trained for 1 step instead of 40) against production: not
        # promoted (the floor is lowered so that the champion/challenger gate is what stops it)
        data = yaml.safe_load((project_root / "configs/pipeline/tiny.yaml").read_text())
        train = next(s for s in data["stages"] if s["name"] == "train")
        train["overrides"]["train"].update(max_steps=1, eval_every=1)
        next(g for g in data["gates"] if g["name"] == "ndcg-floor")["min"] = 0.0
        worse_cfg = tmp_path / "worse.yaml"
        worse_cfg.write_text(yaml.safe_dump(data))
        spec, cfg = parse_job("pipeline", str(worse_cfg), common)
        with pytest.raises(Exception, match="gate 'beats-production'"):
            run_parsed(spec, cfg)
        worse = json.loads((tmp_path / "pipe" / "lineage.json").read_text())
        assert [s["action"] for s in worse["stages"]] == ["cached", "cached", "cached", "ran", "ran"]
        assert "production is unchanged" in worse["gates"][-1]["reason"]
        assert worse["gates"][-1]["details"]["champion"] == "production"
        assert reg.alias_version("production") == "1" and [v["version"] for v in reg.versions()] == ["1"]

        # the first config again: every stage is reused; its challenger is production's own model, so
        # the gate sees a refresh (comparing a model with itself can never pass a significance test)
        spec, cfg = parse_job("pipeline", "tiny", common)
        again = run_parsed(spec, cfg)
        assert again["status"] == "succeeded" and [s["action"] for s in again["stages"]] == ["cached"] * 6
        assert again["gates"][-1]["passed"] and again["gates"][-1]["details"]["refresh"]
        assert again["deployment"]["version"] == "1" and not again["deployment"]["promoted"]

        # promote a second version (a copy of the index under a new version) and roll back, live
        target = reg.serving_target("production")
        shutil.copytree(
            Path(target["artifacts"]) / target["index_version"], Path(target["artifacts"]) / "v-copy"
        )
        v2 = reg.register(
            str(Path(target["artifacts"]) / "v-copy"),
            tags={"recsys.index_dir": target["artifacts"], "recsys.index_version": "v-copy"},
        )
        failures, versions, stop = [], set(), threading.Event()

        def hammer():
            while not stop.is_set():
                try:
                    r = httpx.post(f"{url}/search", json={"query": "game", "k": 3}, timeout=60)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                (
                    versions.add(r.json()["version"])
                    if r.status_code == 200
                    else failures.append(f"{r.status_code}: {r.text[:300]}")
                )

        t = threading.Thread(target=hammer)
        t.start()
        try:
            reg.promote(v2)
            serve_target(
                "configs/serve/tiny.yaml", target["artifacts"], "v-copy", port=port, model=target.get("model")
            )
            assert (
                httpx.post(f"{url}/search", json={"query": "game", "k": 3}, timeout=30).json()["version"]
                == "v-copy"
            )
        finally:
            stop.set()
            t.join()
        # rollback moves the alias back; serving its target is the serve_target call above with the old
        # version (a second live redeploy here re-ran the same path: ~30 s of the suite)
        reg.rollback()
        back = reg.serving_target("production")
        assert reg.alias_version("production") == "1" and back["index_version"] == target["index_version"]
        assert back["index_version"] != "v-copy" and "v-copy" in versions
        assert _scan_for_secrets(tmp_path) == []
        # Was an xfail: with Ray's default max_surge_percent 0 every 1-replica deployment, the ingress
        # included, was stopped before its replacement started, and the proxy answered 500 for requests
        # in the killed ingress. Serving now surges (DeploymentArgs.max_surge_percent).
        assert failures == [], f"{len(failures)} request(s) failed during promote/rollback: {failures[:3]}"
    finally:
        serve.shutdown()
