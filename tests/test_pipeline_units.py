"""Pure pieces of the pipeline area: drift statistics, gates, stage keys, configs (no Ray)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.monitoring import drift
from recsys.pipeline import gates as G
from recsys.pipeline.hashing import fingerprint_path, stage_key


def test_psi_numeric_zero_for_same_distribution_and_large_for_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 20_000)
    assert drift.psi_numeric(ref, ref.copy()) == pytest.approx(0.0, abs=1e-12)
    assert drift.psi_numeric(ref, rng.normal(0, 1, 20_000)) < 0.01
    assert drift.psi_numeric(ref, rng.normal(1.0, 1, 20_000)) > 0.5


def test_psi_categorical_exact_value_and_share_changes():
    ref = pd.Series(["a"] * 50 + ["b"] * 50)
    cur = pd.Series(["a"] * 80 + ["b"] * 20)
    psi, moved = drift.psi_categorical(ref, cur, top_k=10)
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert psi == pytest.approx(
        expected, rel=1e-4
    )  # "<other>" holds 0 on both sides (floored at EPS: 0 contribution)
    assert moved["a"] == pytest.approx(0.3) and moved["b"] == pytest.approx(-0.3)


def test_ks_and_compare_report_drift_and_skips():
    rng = np.random.default_rng(1)
    ref = pd.DataFrame(
        {
            "price": rng.lognormal(3, 0.5, 2000),
            "event_type": rng.choice(["view", "click"], 2000, p=[0.9, 0.1]),
        }
    )
    cur = pd.DataFrame(
        {
            "price": rng.lognormal(3.6, 0.5, 2000),
            "event_type": rng.choice(["view", "click"], 2000, p=[0.9, 0.1]),
        }
    )
    specs = [
        drift.FeatureSpec("price", "numeric", 0.25, 0.2),
        drift.FeatureSpec("event_type", "categorical", 0.25, None),
        drift.FeatureSpec("query", "categorical", 0.25, None),
    ]
    rows = {r["feature"]: r for r in drift.compare(ref, cur, specs, min_rows=50)}
    assert rows["price"]["drifted"] and rows["price"]["ks"] > 0.4 and rows["price"]["ks_pvalue"] < 1e-6
    assert not rows["event_type"]["drifted"]
    assert rows["query"]["skipped"] == "column 'query' not in the reference data"


def test_lookup_handles_dotted_model_names():
    rep = {"metrics": {"recent-pop.v2": {"ndcg@10": 0.4}}}
    assert G.lookup(rep, "metrics.recent-pop.v2.ndcg@10") == 0.4
    assert G.lookup(rep, "metrics.nope") is G._MISSING


def test_gates_verdicts():
    ok = {
        "status": "succeeded",
        "contract_violations": [],
        "reconciled": True,
        "primary_metric": "ndcg@10",
        "metrics": {"knn": {"ndcg@10": 0.3}},
    }
    assert G.data_contract("c", "inventory", ok, None).passed
    bad = {"status": "failed", "error": "ContractError: events.user_id null_rate 0.4 > max 0.01"}
    v = G.data_contract("c", "inventory", bad, None)
    assert not v.passed and "null_rate 0.4 > max 0.01" in v.reason
    assert G.reconciliation("r", "clean", ok, None).passed
    assert not G.reconciliation("r", "clean", {**ok, "reconciled": False}, None).passed
    assert G.metric_min("m", "evaluate", ok, None, "knn", None, 0.25).passed
    v = G.metric_min("m", "evaluate", ok, None, "knn", None, 0.35)
    assert not v.passed and v.reason == "metrics.knn.ndcg@10 = 0.3000 < minimum 0.35"


def test_compression_gate_picks_the_promotable_variant_or_says_why_not():
    from recsys.pipeline.deploy import variant_tags

    rows = [
        {"variant": "torch", "path": "/m", "promotable": True, "reason": "reference", "f1": 0.8},
        {
            "variant": "onnx-int8",
            "path": "/v/i8",
            "promotable": False,
            "speedup_vs_torch": 2.4,
            "f1": 0.78,
            "reason": "f1 0.7800 vs the uncompressed model's 0.8000: relative drop 2.50% exceeds the bound",
        },
        {
            "variant": "onnx",
            "path": "/v/o",
            "promotable": True,
            "speedup_vs_torch": 1.4,
            "f1": 0.8,
            "reason": "ok",
        },
    ]
    report = {"variants": rows, "quality": {"task": "matching"}, "primary_metric": "f1", "output_dir": "/c"}
    v = G.compression("c", "compress", {**report, "promoted": {"variant": "onnx"}}, None)
    assert v.passed and v.details["path"] == "/v/o" and "onnx (1.4x torch pairs/s) promotable" in v.reason
    v = G.compression("c", "compress", report, "onnx-int8")
    assert not v.passed and "not promoted: f1 0.7800" in v.reason and "exceeds the bound" in v.reason
    tags = variant_tags(report, v.as_dict())
    assert [r["variant"] for r in tags["recsys.variants"]] == ["torch", "onnx-int8", "onnx"]
    assert (
        tags["recsys.variants"][1]["f1"] == 0.78
        and "exceeds the bound" in tags["recsys.serving_variant_refused"]
    )
    assert "recsys.serving_variant" not in tags
    none = G.compression("c", "compress", {**report, "promoted": None}, None)
    assert not none.passed and none.reason.startswith(
        "no compressed variant passed the quality gate: onnx-int8:"
    )
    assert "quality section" in G.compression("c", "compress", {"variants": rows}, None).reason


def test_compression_gate_is_advisory_and_may_sit_on_a_disabled_stage():
    from recsys.config.loader import ConfigError, load_config
    from recsys.pipeline.config import PipelineConfig

    data = {
        "stages": [
            {"name": "a", "job": "doctor", "config": "tiny"},
            {"name": "compress", "job": "compress", "config": "tiny", "enabled": False},
        ],
        "gates": [{"name": "fast", "kind": "compression", "stage": "compress"}],
        "deploy": {"index_stage": "a", "compress_gate": "fast"},
    }
    assert load_config(PipelineConfig, None, data=data).gates[0].kind == "compression"
    data["deploy"]["compress_gate"] = "nope"
    with pytest.raises(ConfigError, match="compress_gate 'nope' must name a gate of kind compression"):
        load_config(PipelineConfig, None, data=data)


def test_champion_challenger_needs_a_significant_win():
    def rep(diff, p):
        return {
            "primary_metric": "ndcg@10",
            "significance": [
                {
                    "model": "new",
                    "vs": "production",
                    "metric": "ndcg@10",
                    "diff": diff,
                    "p_permutation": p,
                    "mean_a": 0.5,
                    "mean_b": 0.5 - diff,
                    "n": 200,
                }
            ],
        }

    first = G.champion_challenger("cc", "evaluate", rep(0, 1), "new", None, None, 0.05, "p_permutation", 0.0)
    assert first.passed and "first champion" in first.reason
    assert G.champion_challenger(
        "cc", "evaluate", rep(0.05, 0.01), "new", "production", None, 0.05, "p_permutation", 0.0
    ).passed
    worse = G.champion_challenger(
        "cc", "evaluate", rep(-0.02, 0.01), "new", "production", None, 0.05, "p_permutation", 0.0
    )
    assert not worse.passed and "is not better" in worse.reason and "production is unchanged" in worse.reason
    noise = G.champion_challenger(
        "cc", "evaluate", rep(0.01, 0.3), "new", "production", None, 0.05, "p_permutation", 0.0
    )
    assert not noise.passed and "not significantly better" in noise.reason


def test_stage_key_ignores_output_dir_and_tracks_inputs(tmp_path):
    f = tmp_path / "events.csv"
    f.write_text("a,b\n1,2\n")
    fp = fingerprint_path(str(f))
    k1 = stage_key("clean", {"output_dir": "x", "limit": 5}, {str(f): fp})
    assert k1 == stage_key("clean", {"output_dir": "y", "limit": 5}, {str(f): fp})
    assert k1 != stage_key("clean", {"output_dir": "x", "limit": 6}, {str(f): fp})
    f.write_text("a,b\n1,2\n3,4\n")
    assert k1 != stage_key("clean", {"output_dir": "x", "limit": 5}, {str(f): fingerprint_path(str(f))})


def test_pipeline_config_errors_name_the_fix(project_root):
    from recsys.config.loader import ConfigError, load_config
    from recsys.pipeline.config import PipelineConfig

    data = {
        "stages": [
            {"name": "a", "job": "doctor", "config": "tiny", "overrides": {"x": "@{b}"}},
            {"name": "b", "job": "doctor", "config": "tiny"},
        ],
        "gates": [{"name": "g", "kind": "metric_min", "stage": "b"}],
        "from_stage": "zzz",
    }
    with pytest.raises(ConfigError) as exc:
        load_config(PipelineConfig, None, data=data)
    text = exc.value.render()
    assert "gates[0]: gate 'g': kind metric_min needs min" in text
    data["gates"] = []
    with pytest.raises(ConfigError) as exc:
        load_config(PipelineConfig, None, data=data)
    assert "stage 'a' reads @{b} but no earlier stage is named 'b'" in exc.value.render()


def test_registry_config_rejects_credentials_in_uri():
    from recsys.config.loader import ConfigError, load_config
    from recsys.pipeline.config import PipelineConfig

    data = {
        "stages": [{"name": "a", "job": "doctor", "config": "tiny"}],
        "registry": {"tracking_uri": "https://bob:secret@mlflow.example.com"},
    }
    with pytest.raises(ConfigError, match="must not embed credentials; export MLFLOW_TRACKING_USERNAME"):
        load_config(PipelineConfig, None, data=data)


def test_shipped_pipeline_and_drift_configs_validate(project_root):
    from recsys.cli.entry import parse_job

    for job in ("pipeline", "drift"):
        for path in sorted((project_root / "configs" / job).glob("*.yaml")):
            assert path.read_text().startswith("# "), f"{path} must start with its launch command"
            parse_job(job, str(path), [], check_paths=False)


def test_every_shipped_pipeline_stage_config_validates(project_root, monkeypatch):
    """Each stage's job config with its overrides (upstream outputs stand in for @{stage}) passes the
    job's schema, run from the repository root where "cluster" is also the cluster/ folder."""
    import yaml

    from recsys.jobs_registry import get_job, resolve_config_path
    from recsys.pipeline.stages import stage_data

    monkeypatch.chdir(project_root)
    assert resolve_config_path("index", "cluster") == project_root / "configs" / "index" / "cluster.yaml"
    for path in sorted((project_root / "configs" / "pipeline").glob("*.yaml")):
        stages = yaml.safe_load(path.read_text())["stages"]
        outputs = {s["name"]: f"/nonexistent/{s['name']}" for s in stages}
        for s in stages:
            data = stage_data(s["job"], s["config"], s.get("overrides") or {}, outputs)
            get_job(s["job"]).config_cls.model_validate(data, context={"check_paths": False})


def test_plan_arms_moves_every_arm_or_only_the_named_one(tmp_path, monkeypatch):
    from recsys.pipeline.deploy import plan_arms

    monkeypatch.setenv("RECSYS_RUNS_ROOT", str(tmp_path))
    (tmp_path / "index" / "old").mkdir(parents=True)
    arms = [
        {"name": "A", "weight": 0.5, "artifacts": "runs/index/old", "version": "latest"},
        {
            "name": "B",
            "weight": 0.5,
            "artifacts": "runs/index/missing",
            "version": "latest",
            "recommend": {"diversity": 0.3},
        },
    ]
    every = plan_arms(arms, "/idx/new", "v7", None)
    assert [(a["artifacts"], a["version"]) for a in every] == [("/idx/new", "v7"), ("/idx/new", "v7")]
    assert (
        every[1]["recommend"] == {"diversity": 0.3} and arms[0]["artifacts"] == "runs/index/old"
    )  # input untouched
    with pytest.raises(ValueError, match="arm 'B' serves 'runs/index/missing', which does not exist"):
        plan_arms(arms, "/idx/new", "v7", "A")  # B would keep a missing index
    only_b = plan_arms(
        arms, "/idx/new", "v7", "B"
    )  # A keeps runs/index/old, which exists under RECSYS_RUNS_ROOT
    assert [a["artifacts"] for a in only_b] == ["runs/index/old", "/idx/new"]
    with pytest.raises(ValueError, match="'C' is not an arm"):
        plan_arms(arms, "/idx/new", "v7", "C")
    with pytest.raises(ValueError, match="no args.arms"):
        plan_arms([], "/idx/new", "v7", None)


def test_plan_arms_leaves_registry_arms_to_their_alias(tmp_path, monkeypatch):
    from recsys.pipeline.deploy import plan_arms

    monkeypatch.setenv("RECSYS_RUNS_ROOT", str(tmp_path))
    arms = [
        {"name": "A", "registry": {"alias": "production"}},
        {"name": "B", "artifacts": "runs/index/old", "version": "latest"},
    ]
    assert plan_arms(arms, "/idx/new", "v7", None) == [
        {"name": "A", "registry": {"alias": "production"}},
        {"name": "B", "artifacts": "/idx/new", "version": "v7"},
    ]
    assert plan_arms(arms, "/idx/new", "v7", "B")[0] == {"name": "A", "registry": {"alias": "production"}}


def test_plan_arms_sets_the_promoted_model_for_recommend_on_the_arms_that_move(tmp_path, monkeypatch):
    from recsys.pipeline.deploy import plan_arms

    monkeypatch.setenv("RECSYS_RUNS_ROOT", str(tmp_path))
    (tmp_path / "index" / "old").mkdir(parents=True)
    arms = [
        {"name": "A", "artifacts": "runs/index/old", "version": "latest"},
        {"name": "B", "artifacts": "runs/index/old", "version": "latest", "recommend": {"diversity": 0.3}},
    ]
    app = {"candidates": 100, "diversity": 0.2}
    every = plan_arms(arms, "/idx/new", "v7", None, model="/train/model", recommend=app)
    # an arm's recommend replaces the app's section: A takes the app's settings, B keeps its own
    assert [a["recommend"] for a in every] == [
        {"candidates": 100, "diversity": 0.2, "model": "/train/model"},
        {"diversity": 0.3, "model": "/train/model"},
    ]
    only_b = plan_arms(arms, "/idx/new", "v7", "B", model="/train/model", recommend=app)
    assert "recommend" not in only_b[0] and only_b[1]["recommend"]["model"] == "/train/model"
    assert "recommend" not in plan_arms(arms, "/idx/new", "v7", None, recommend=app)[0]  # no model: unchanged


@pytest.mark.slow
def test_registry_arm_serves_the_versions_trained_model(tmp_path, monkeypatch):
    from recsys.registry import ModelRegistry
    from recsys.serving.config import ServeArgs
    from recsys.serving.targets import resolve_arms

    monkeypatch.setenv("RECSYS_RUNS_ROOT", str(tmp_path / "runs"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    reg = ModelRegistry(tracking_uri=uri, artifact_location=str(tmp_path / "artifacts"), model_name="games")
    (tmp_path / "index" / "v1").mkdir(parents=True)
    tags = {"recsys.index_dir": str(tmp_path / "index"), "recsys.index_version": "v1"}
    reg.register(str(tmp_path / "index" / "v1"), tags=tags)  # 1: index only
    reg.register(
        str(tmp_path / "index" / "v1"), tags={**tags, "recsys.model_dir": "/train/model"}
    )  # 2: + model
    reg.promote("2")
    assert reg.serving_target("production")["model"] == "/train/model" and "model" not in reg.serving_target(
        "1"
    )
    args = ServeArgs.model_validate(
        {
            "recommend": {"candidates": 50},
            "arms": [
                {
                    "name": "A",
                    "registry": {"alias": "production", "model_name": "games", "tracking_uri": uri},
                },
                {"name": "B", "registry": {"alias": "1", "model_name": "games", "tracking_uri": uri}},
            ],
        }
    )
    built, _ = resolve_arms(args)
    a, b = built.arms
    assert (a.recommend.model, a.recommend.candidates) == ("/train/model", 50) and b.recommend is None
