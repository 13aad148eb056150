"""Cluster manifests: they parse, carry the required fields, pin the project's Ray version, and
name jobs and configs that exist."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from recsys.jobs_registry import job_names

ROOT = Path(__file__).resolve().parents[1]
KUBERAY = sorted((ROOT / "cluster" / "kuberay").glob("*.yaml"))


def pinned_ray_version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'"ray\[[^\]]*\]==([0-9.]+)"', text).group(1)


def images(obj) -> list[str]:
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k == "image" and isinstance(v, str)] + [
            i for v in obj.values() for i in images(v)
        ]
    if isinstance(obj, list):
        return [i for v in obj for i in images(v)]
    return []


def check_image(image: str, version: str) -> None:
    repo, _, tag = image.rpartition(":")
    if repo == "valkey/valkey":  # the online store's server (valkey.yaml): a pinned release, never latest
        assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"{image}: pin a Valkey release"
    elif repo == "rayproject/ray":
        assert tag.startswith(version), f"{image}: tag must start with the pinned Ray {version}"
    else:
        assert f"ray{version}" in tag, f"{image}: the job image tag must name the pinned Ray (ray{version})"


def check_entrypoint(entrypoint: str) -> None:
    argv = shlex.split(entrypoint)
    assert argv[:2] == ["python", "-m"] and argv[2].startswith("jobs."), entrypoint
    assert argv[2].removeprefix("jobs.") in job_names(), f"{entrypoint}: no such job"
    cfg = argv[argv.index("--config") + 1]
    assert (ROOT / cfg).is_file(), f"{entrypoint}: config {cfg} does not exist"


def worker_groups(spec: dict) -> list[dict]:
    return spec.get("workerGroupSpecs", [])


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_kuberay_manifest(path: Path):
    version = pinned_ray_version()
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert path.read_text().startswith("# "), "manifests start with a comment giving the command"
    for doc in docs:
        assert doc["apiVersion"] in ("ray.io/v1", "batch/v1", "apps/v1", "v1"), doc["apiVersion"]
        kind, spec = doc["kind"], doc["spec"]
        assert doc["metadata"]["name"]
        for image in images(doc):
            check_image(image, version)
        if kind in ("Service", "StatefulSet"):  # the online store (valkey.yaml)
            assert doc["metadata"]["name"] == "recsys-valkey"
            continue
        if kind == "RayJob":
            check_entrypoint(spec["entrypoint"])
            cluster = spec["rayClusterSpec"]
        elif kind == "RayService":
            cluster = spec["rayClusterConfig"]
            serve = yaml.safe_load(spec["serveConfigV2"])
            for app in serve["applications"]:
                module = (
                    app["import_path"].rsplit(":", 1)[0]
                    if ":" in app["import_path"]
                    else app["import_path"].rsplit(".", 1)[0]
                )
                assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), app["import_path"]
        elif kind == "RayCluster":
            cluster = spec
        elif kind == "CronJob":
            continue
        else:
            pytest.fail(f"unexpected kind {kind}")
        assert cluster["rayVersion"] == version
        assert cluster.get("enableInTreeAutoscaling") is True
        assert cluster["headGroupSpec"]["template"]["spec"]["containers"]
        for group in worker_groups(cluster):
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
            limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
            if group["groupName"].startswith("gpu"):
                assert int(limits["nvidia.com/gpu"]) >= 1


def test_every_job_has_a_rayjob():
    have = {p.stem.removeprefix("rayjob-") for p in KUBERAY if p.stem.startswith("rayjob-")}
    missing = {j for j in job_names() if j not in ("ab_report",)} - have
    assert not missing, f"jobs without a KubeRay RayJob manifest: {sorted(missing)}"


def test_dockerfile_uses_pinned_ray_image():
    text = (ROOT / "cluster" / "docker" / "Dockerfile").read_text()
    image = re.search(r"ARG RAY_IMAGE=(\S+)", text).group(1)
    check_image(image, pinned_ray_version())
    assert "constraints.txt" in text and "HF_HUB_OFFLINE=1" in text


def test_cluster_launcher_yaml():
    cfg = yaml.safe_load((ROOT / "cluster" / "launcher" / "aws.yaml").read_text())
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type", "setup_commands"):
        assert key in cfg, key
    assert cfg["head_node_type"] in cfg["available_node_types"]
    check_image(cfg["docker"]["image"], pinned_ray_version())


@pytest.mark.parametrize("script", ["start.sh", "stop.sh"])
def test_local_cluster_scripts_are_valid_bash(script: str):
    path = ROOT / "cluster" / "local" / script
    assert path.stat().st_mode & 0o111, f"{script} must be executable"
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
