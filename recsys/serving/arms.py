"""One arm's stages and its :class:`~recsys.search.SearchPipeline`, in every topology.

- split: the Ingress holds DeploymentHandles of the arm's Retriever / Reranker / Personalizer /
  Recommender replicas;
- fused: :func:`in_process_stages` builds the same deployment classes inside the Ingress replica;
- offline (``benchmarks/serve.py``, the ``search`` evaluate protocol): :func:`local_pipelines`
  builds them in the calling process, exactly as the fused topology does.
"""

from __future__ import annotations

from typing import Any

from recsys.search.cache import maybe_cache
from recsys.search.pipeline import InProcess, Invoke, SearchPipeline, direct
from recsys.search.rules import CatalogInfo, RulesSource
from recsys.serving.config import ServeArgs
from recsys.serving.specs import ArmSpec
from recsys.serving.targets import resolve_arms


def stage_args(spec: ArmSpec) -> dict[str, tuple[tuple[Any, ...], dict[str, Any]]]:
    """``{stage: (constructor args, user_config)}`` of one arm, as both topologies build its deployments."""
    uc, t = spec.user_config(), spec.threads
    return {
        "retriever": ((spec.artifacts, spec.retrieval, t.retriever), uc),
        "reranker": ((spec.artifacts, spec.rerank, t.reranker), spec.reranker_user_config()),
        "personalizer": ((spec.artifacts, spec.personalize, t.personalizer), uc),
        "recommender": ((spec.artifacts, spec.recommend, spec.personalize.weights, t.recommender), uc),
    }


def in_process_stages(spec: ArmSpec) -> dict[str, InProcess]:
    """The arm's four stage objects built and loaded in this process (no Serve replica)."""
    from recsys.serving.deployments import ARM_DEPLOYMENTS  # imports ray.serve: only where stages are built

    out = {}
    for name, (init_args, user_config) in stage_args(spec).items():
        obj = ARM_DEPLOYMENTS[name].func_or_class(*init_args)
        if name == "reranker":
            obj.set_batching(spec.batching)
        obj.load_now(user_config)
        out[name] = InProcess(obj)
    return out


def search_pipeline(spec: ArmSpec, stages: dict[str, Any], invoke: Invoke = direct) -> SearchPipeline:
    """The arm's search pipeline over ``stages`` (handles or :class:`InProcess`), with its response cache."""
    c = spec.response_cache
    return SearchPipeline(
        stages["retriever"],
        stages["reranker"],
        stages["personalizer"],
        spec.rerank,
        invoke,
        cache=maybe_cache(c.entries, c.ttl_s),
        rules=rules_source(spec),
    )


def rules_source(spec: ArmSpec) -> RulesSource | None:
    """The arm's hot-reloaded merchandising rules, checked against the catalog of its index version."""
    if spec.rules is None:
        return None
    return RulesSource(spec.rules.path, spec.rules.poll_s, lambda: catalog_info(spec.artifacts, spec.version))


def catalog_info(root: str, version: str) -> CatalogInfo | None:
    """Item ids and columns of an index version's catalog (None when it cannot be read here)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from recsys.retrieval.artifacts import resolve_version

    try:
        path = resolve_version(root, version) / "items.parquet"
        ids = pd.read_parquet(path, columns=["item_id"])["item_id"].astype(str)
        return CatalogInfo(frozenset(ids), frozenset(pq.read_schema(path).names))
    except (OSError, ValueError, KeyError):
        return None


def arm_specs(args: ServeArgs) -> dict[str, ArmSpec]:
    """Every arm resolved (registry aliases -> the index they name now) and typed, in config order."""
    resolved, registry = resolve_arms(args)
    return {arm.name: resolved.arm_spec(arm, registry.get(arm.name)) for arm in resolved.arms}


def local_pipelines(args: ServeArgs, arms: list[str] | None = None) -> dict[str, SearchPipeline]:
    """``{arm: SearchPipeline}`` with in-process stages, for the named arms (default all): what the fused
    topology serves, built here (benchmarks, the ``search`` evaluate protocol)."""
    unknown = sorted(set(arms or []) - {a.name for a in args.arms})
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; the serve config has {[a.name for a in args.arms]}")
    if arms is not None:  # resolve (registry look-ups) and load only the arms asked for
        args = args.model_copy(update={"arms": [a for a in args.arms if a.name in arms]})
    return {name: search_pipeline(s, in_process_stages(s)) for name, s in arm_specs(args).items()}
