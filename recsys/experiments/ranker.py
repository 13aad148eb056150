"""The train_ranker job: mined synonyms, then LambdaMART (LightGBM lambdarank) on judged train
queries, with the features the served
retriever computes (``RetrieverCore.candidates``), early-stopped on the valid queries.

Training runs as ONE Ray task, not Ray Train's LightGBM trainer: lambdarank's gradients need each query's
whole candidate list in one worker, Ray Train's trainer shards rows (not query groups) across workers,
and the set (a few hundred thousand rows x 11 features) fits one process on this project's 2 cores.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys.evaluation.judged import JudgedQuery, JudgmentsSpec, load_judged_queries, query_split
from recsys.retrieval.artifacts import resolve_version
from recsys.search import ltr
from recsys.search.ltr_config import TrainRankerConfig
from recsys.search.stages import RetrieverCore, load_retriever
from recsys.search.synonyms import mine_synonyms, save_synonyms
from recsys.serving.arms import arm_specs
from recsys.serving.launch import read_serve_config, validate_args
from recsys.serving.specs import ArmSpec

if TYPE_CHECKING:
    from recsys.runtime import JobContext


def arm_spec(serve_config: str, arm: str | None) -> ArmSpec:
    """The arm's typed spec exactly as Serve builds it."""
    app = read_serve_config(serve_config)["applications"][0]
    specs = arm_specs(validate_args(app, serve_config))
    name = arm or next(iter(specs))
    if name not in specs:
        raise ValueError(f"arm {name!r} is not an arm of {serve_config} ({list(specs)})")
    return specs[name]


def feature_retriever(spec: ArmSpec, synonyms_path: str | None) -> RetrieverCore:
    """The arm's retriever as Serve loads it, second phase off (features only); when the arm expands
    synonyms, with the ones just mined (the served path may not exist before the first training)."""
    s = spec.retrieval
    query = s.query
    if query is not None and query.synonyms and synonyms_path is not None:
        query = dataclasses.replace(query, synonyms_path=synonyms_path)
    return load_retriever(spec.artifacts, spec.version, dataclasses.replace(s, rank=None, query=query))


def _subset(queries: list[JudgedQuery], n: int | None, seed: int) -> list[JudgedQuery]:
    if n is None or n >= len(queries):
        return queries
    idx = np.sort(np.random.default_rng(seed).choice(len(queries), size=n, replace=False))
    return [queries[i] for i in idx]


def run(cfg: TrainRankerConfig, ctx: JobContext) -> dict[str, Any]:
    import ray  # lazy: the fit is one Ray task

    with ctx.timer("load"):
        spec = arm_spec(str(cfg.serve_config), cfg.arm)
        items = pd.read_parquet(
            resolve_version(spec.artifacts, spec.version) / "items.parquet", columns=["item_id", "title"]
        )
        titles = dict(zip(items["item_id"].astype(str), items["title"].astype(str)))
        jspec = JudgmentsSpec(
            columns=dict(cfg.columns),
            split="all",
            fractions=cfg.split_fractions,
            salt=cfg.split_salt,
            min_relevance=cfg.relevance_range[0] if cfg.relevance_range else None,
            max_relevance=cfg.relevance_range[1] if cfg.relevance_range else None,
        )
        judged, report = load_judged_queries(cfg.judgments, jspec, set(titles))
    by_split = {
        s: [q for q in judged if query_split(q.query_id, cfg.split_fractions, cfg.split_salt) == s]
        for s in ("train", "valid")
    }
    artifacts: dict[str, str] = {}
    n_synonyms = None
    if cfg.synonyms.enabled:  # from every train query (not the subset): pairs are cheap
        m = cfg.synonyms
        pairs = [
            (q.query, titles[i])
            for q in by_split["train"]
            for i, g in q.relevance.items()
            if g >= m.relevant_min
        ]
        syn = mine_synonyms(
            pairs, min_support=m.min_support, min_share=m.min_share, max_per_word=m.max_per_word
        )
        save_synonyms(ctx.path("synonyms.json"), syn)
        artifacts["synonyms"], n_synonyms = str(ctx.output_dir / "synonyms.json"), len(syn)
    with ctx.timer("load_retriever"):
        core = feature_retriever(spec, artifacts.get("synonyms"))
    train_q = _subset(by_split["train"], cfg.max_train_queries, cfg.seed)
    valid_q = _subset(by_split["valid"], cfg.max_valid_queries, cfg.seed)
    with ctx.timer("features"):
        train = ltr.collect(core, [(q.query_id, q.query, q.relevance) for q in train_q], cfg.candidates)
        valid = ltr.collect(core, [(q.query_id, q.query, q.relevance) for q in valid_q], cfg.candidates)
    with ctx.timer("fit"):
        fit = ray.remote(num_cpus=1)(ltr.fit_to_text)
        model_text, info = ray.get(fit.remote(train, valid, dict(cfg.params), cfg.rounds, cfg.seed))
    model_dir = ltr.save_ranker(model_text, ctx.path("model"), {**info, "arm": spec.name})
    ctx.log.info("ranker: valid ndcg@10 %s, best iteration %s", info["valid_ndcg@10"], info["best_iteration"])
    return {
        "counts": {
            "train_queries": len(train.groups),
            "valid_queries": len(valid.groups),
            "train_rows": int(len(train.labels)),
            "valid_rows": int(len(valid.labels)),
            "train_positive_rows": int((train.labels > 0).sum()),
            "synonym_words": n_synonyms,
        },
        "metrics": {"valid_ndcg@10": info["valid_ndcg@10"], "best_iteration": info["best_iteration"]},
        "importance_gain": info["importance_gain"],
        "adapter": report.to_dict(),
        "artifacts": {"model": str(model_dir), **artifacts},
    }
