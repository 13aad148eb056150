"""Register a pipeline's index (+ model) as a registry version, promote it, and serve it.

Serving an update is ``serve.run`` of the same application with the arm's index directory and
version changed: Ray Serve replaces replicas in a rolling update (new ones become ready before
old ones stop), so promote and rollback never take the service down.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx

from recsys.registry.mlflow_registry import PRODUCTION, ModelRegistry
from recsys.serving.config import project_path
from recsys.serving.launch import read_serve_config, start


def deploy_key(parts: dict[str, Any]) -> str:
    """Identity of a deployable: the index and model stage keys plus the champion spec."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def find_version(registry: ModelRegistry, key: str) -> str | None:
    for v in registry.versions():
        if v["tags"].get("recsys.deploy_key") == key:
            return v["version"]
    return None


def register(
    registry: ModelRegistry,
    index_report: dict[str, Any],
    model_report: dict[str, Any] | None,
    champion_spec: dict[str, Any] | None,
    key: str,
    lineage: str,
    metrics: dict[str, Any],
    compressed: dict[str, Any] | None = None,
) -> tuple[str, bool]:
    """Register (or find, when the same deployable was registered before); returns (version, is_new).

    ``compressed`` (``{"report": <compress stage report>, "verdict": <its compression gate verdict>}``)
    records each variant with its report row (``recsys.variants``) and, when the gate passed, the serving
    variant (``recsys.serving_variant``: its directory, which the serve config's backend opens)."""
    existing = find_version(registry, key)
    if existing:
        return existing, False
    arts = index_report.get("artifacts", {})
    tags = {
        "recsys.deploy_key": key,
        "recsys.index_dir": str(Path(index_report["output_dir"]).resolve()),
        "recsys.index_version": str(index_report.get("version", "latest")),
        "recsys.lineage": lineage,
        "recsys.git_sha": index_report.get("git_sha") or "unknown",
        "recsys.metrics": metrics,
    }
    if model_report:
        tags["recsys.model_dir"] = str(
            model_report.get("artifacts", {}).get("model", model_report["output_dir"])
        )
    if champion_spec:
        tags["recsys.champion_spec"] = champion_spec
    if compressed:
        tags.update(variant_tags(compressed["report"], compressed["verdict"]))
    source = arts.get("index") or index_report["output_dir"]
    return registry.register(source, tags=tags), True


VARIANT_FIELDS = (
    "variant",
    "backend",
    "path",
    "size_mb",
    "pairs_s",
    "speedup_vs_torch",
    "promotable",
    "reason",
)


def variant_tags(report: dict[str, Any], verdict: dict[str, Any]) -> dict[str, Any]:
    """Registry tags of a compress stage: every variant's row (its quality metric and CI too) and, when
    the compression gate passed, the serving variant."""
    primary = report.get("primary_metric")
    extra = (primary, f"{primary}_ci95", "relative_drop") if primary else ()
    rows = [{k: r.get(k) for k in (*VARIANT_FIELDS, *extra)} for r in report.get("variants", [])]
    tags: dict[str, Any] = {"recsys.variants": rows, "recsys.compress_dir": report.get("output_dir")}
    if verdict.get("passed"):
        tags["recsys.serving_variant"] = verdict["details"]["path"]
    else:
        tags["recsys.serving_variant_refused"] = verdict.get("reason")
    return tags


def champion_spec(registry: ModelRegistry) -> tuple[str | None, dict[str, Any] | None]:
    """(production version, the evaluate ModelSpec recorded with it) — the champion to re-evaluate."""
    version = registry.alias_version(PRODUCTION)
    if version is None:
        return None, None
    raw = registry.get(version)["tags"].get("recsys.champion_spec")
    return version, (json.loads(raw) if raw else None)


def plan_arms(
    arms: list[dict[str, Any]],
    artifacts: str,
    index_version: str,
    arm: str | None,
    where: str = "serve config",
    model: str | None = None,
    recommend: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The serve config's ``arms`` after a promotion. By default every arm serves the promoted index
    (the arms of an A/B test then differ in serving parameters); with ``arm`` only that arm moves and
    the others keep their own artifacts, which must exist (checked before anything is deployed).
    ``model`` (the promoted version's sequential recommender) becomes ``recommend.model`` of every arm
    that moves; an arm's ``recommend`` replaces the app's whole section, so the arm's own (or else the
    app's, ``recommend``) settings are kept beside it."""
    if not arms:
        raise ValueError(
            f"{where}: the first application has no args.arms; add one arm to serve the promoted index"
        )
    names = [a.get("name") for a in arms]
    if arm is not None and arm not in names:
        raise ValueError(f"deploy.serve.arm {arm!r} is not an arm of {where} ({names})")
    out = []
    for a in map(dict, arms):
        if a.get("registry"):  # follows its alias: resolved by the app builder at deploy (serving/targets.py)
            out.append(a)
            continue
        if arm is None or a.get("name") == arm:
            a.update(artifacts=artifacts, version=index_version)
            if model:
                a["recommend"] = {**(a.get("recommend") or recommend or {}), "model": model}
        elif not Path(project_path(str(a.get("artifacts", ""))) or "").exists():
            raise ValueError(
                f"{where}: arm {a.get('name')!r} serves {a.get('artifacts')!r}, which does not exist; "
                "build it (recsys run index) or leave deploy.serve.arm unset so every arm serves the promoted index"
            )
        out.append(a)
    return out


def serve_target(
    serve_config: str,
    artifacts: str,
    index_version: str,
    arm: str | None = None,
    port: int | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Deploy ``serve_config`` with the promoted ``artifacts``/``index_version`` (and sequential
    ``model`` for /recommend, when the version has one; see plan_arms) on the connected Ray; an
    already running app is updated in place."""
    cfg = read_serve_config(serve_config)
    args = cfg["applications"][0].get("args") or {}
    arms = plan_arms(
        args.get("arms", []), artifacts, index_version, arm, serve_config, model, args.get("recommend")
    )
    return start(serve_config, port=port, overrides={"arms": arms})


def smoke(url: str, query: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """POST /search once (retrying while replicas start); returns status and the first hit."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = httpx.post(f"{url}/search", json={"query": query, "k": 3}, timeout=30)
            if r.status_code == 200:
                body = r.json()
                hits = body.get("results") or body.get("items") or []
                return {"status": 200, "version": body.get("version"), "first": hits[0] if hits else None}
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1.0)
    raise RuntimeError(f"the service at {url} did not answer /search within {timeout_s:.0f}s: {last}")
