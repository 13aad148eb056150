"""Resolve arms that name a registry alias (``registry: {alias: production}``) to the index they serve.

Runs in the app builder, i.e. whenever the Serve config is deployed or redeployed: after
`recsys models promote N` / `rollback`, redeploying the same config moves those arms to the new
production version in place (a rolling update, replacements ready before old replicas stop).
Arms with ``artifacts`` are returned unchanged.
"""

from __future__ import annotations

from typing import Any

from recsys.registry.mlflow_registry import ModelRegistry, RegistryError
from recsys.serving.config import ArmArgs, RecommendArgs, ServeArgs, project_path


def resolve_arm(
    arm: ArmArgs, recommend: RecommendArgs | None = None
) -> tuple[ArmArgs, dict[str, Any] | None]:
    """``(arm with artifacts/version set, {"model_name", "alias", "version"})``; the info is None for
    an arm without ``registry``. A version registered with a trained model (a pipeline with a train
    stage) also sets the arm's ``recommend.model``, keeping the arm's (else ``recommend``, the app's)
    other recommend settings. A missing alias or an untagged version is a ValueError naming the arm."""
    if arm.registry is None:
        return arm, None
    ref = arm.registry
    try:
        target = ModelRegistry(tracking_uri=ref.tracking_uri, model_name=ref.model_name).serving_target(
            ref.alias
        )
    except RegistryError as exc:
        raise ValueError(
            f"arm {arm.name!r} (registry {ref.model_name}@{ref.alias}): {exc}; register and promote a "
            "version first (recsys run pipeline, or recsys models promote N)"
        ) from None
    update: dict[str, Any] = {
        "artifacts": project_path(target["artifacts"]),
        "version": target["index_version"],
        "registry": None,
    }
    if target.get("model"):
        base = arm.recommend or recommend or RecommendArgs()
        update["recommend"] = base.model_copy(update={"model": project_path(target["model"])})
    resolved = arm.model_copy(update=update)
    return resolved, {"model_name": ref.model_name, "alias": ref.alias, "version": target["version"]}


def resolve_arms(args: ServeArgs) -> tuple[ServeArgs, dict[str, dict[str, Any]]]:
    """Every arm resolved (see resolve_arm); returns the args to build and ``{arm: registry info}``."""
    arms, info = [], {}
    for arm in args.arms:
        resolved, ref = resolve_arm(arm, args.recommend)
        arms.append(resolved)
        if ref is not None:
            info[arm.name] = ref
    return args.model_copy(update={"arms": arms}), info
