"""Monitoring assets: Prometheus config and alert rules pass promtool (config, rules, rule unit
tests); every metric the alerts and dashboard use is exported by recsys (serving, drift, pipeline)
or Ray; the retrain CronJob runs commands whose configs exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MON = ROOT / "cluster" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)


@needs_promtool
@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_promtool(args):
    out = subprocess.run([PROMTOOL, *args], cwd=MON, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def _exported_metric_names() -> set[str]:
    """Names our code registers (prometheus_client declarations in serving, drift and pipeline gauges)."""
    names = set()
    for f in [
        *(ROOT / "recsys" / "serving").glob("*.py"),
        ROOT / "recsys/monitoring/gauges.py",
        ROOT / "recsys/pipeline/lineage.py",
    ]:
        names |= set(re.findall(r'(?:Counter|Gauge|Histogram)\(\s*"([a-z_]+)"', f.read_text()))
    return names


def _used_metric_names(expr: str) -> set[str]:
    return {m for m in re.findall(r"\b((?:recsys|ray)_[a-z_]+)\b", expr)}


def test_alerts_and_dashboard_use_exported_metrics():
    exported = _exported_metric_names()
    assert {"recsys_requests_total", "recsys_drift_psi", "recsys_pipeline_last_run_success"} <= exported
    rules = yaml.safe_load((MON / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {
        "RecsysHighP99Latency",
        "RecsysHighErrorRate",
        "RecsysReplicaSaturation",
        "RecsysDataDrift",
        "RecsysStaleData",
        "RecsysPipelineFailed",
    } <= names
    dash = json.loads((MON / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    for expr in exprs:
        for name in _used_metric_names(expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert base in exported or name.startswith("ray_"), (
                f"{name} in {expr!r} is not exported by recsys"
            )
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for needed in ("qps", "p99", "error", "replicas", "batch", "ctr", "drift", "freshness", "pipeline"):
        assert needed in titles, f"dashboard lacks a {needed} panel"
    ops = (ROOT / "docs" / "OPERATIONS.md").read_text().lower()
    for alert in names:
        assert f"### {alert.lower()}" in ops, f"docs/OPERATIONS.md has no runbook section for {alert}"


def test_retrain_cronjob_commands_name_existing_configs():
    doc = yaml.safe_load((ROOT / "cluster/kuberay/cronjob-retrain.yaml").read_text())
    script = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    configs = re.findall(r"--config (\S+)", script)
    assert configs and all((ROOT / c).is_file() for c in configs), configs
    assert "recsys submit drift" in script and "recsys submit pipeline" in script
    env = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    secret_like = [e["name"] for e in env if re.search(r"PASSWORD|SALT|KEY|TOKEN", e["name"])]
    assert secret_like and all("valueFrom" in e for e in env if e["name"] in secret_like)
