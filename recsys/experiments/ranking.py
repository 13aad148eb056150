"""The ranking protocols (task recommendation and retrieval): fit / load every model, rank the test
set, fuse ensembles, then leaderboard with CIs and beyond-accuracy metrics, paired tests against
the reference, optional k-fold, per-query Parquet, HTML report and results JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys.evaluation.beyond import beyond_accuracy
from recsys.evaluation.config import EvaluateConfig
from recsys.evaluation.prepare import make_evaluator, prepare
from recsys.evaluation.report import segment_table, write_html
from recsys.evaluation.stats import paired_tests
from recsys.experiments.kfold import kfold_baselines
from recsys.experiments.results import save_results
from recsys.experiments.scorers import build_ensemble, build_scorer

if TYPE_CHECKING:
    from recsys.runtime import JobContext


def _item_vectors(scorers: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(item ids, vectors) of the first scorer that embeds items (for intra-list diversity)."""
    for s in scorers.values():
        vec, index = getattr(s, "item_vectors", None), getattr(s, "_index", None)
        if vec is not None and index is not None:
            return index.item_ids, vec
    return None


def run_ranking(cfg: EvaluateConfig, ctx: JobContext) -> dict[str, Any]:
    with ctx.timer("prepare"):
        prep = prepare(cfg)
    valid_eval = make_evaluator(cfg, prep.valid) if len(prep.valid) else None
    test_eval = make_evaluator(cfg, prep.test, keep_topk=cfg.beyond_k)
    primary = test_eval.primary_metric
    scorers, info, results = {}, {}, {}
    for spec in cfg.models:
        with ctx.timer(f"fit:{spec.name}"):
            scorers[spec.name], info[spec.name] = build_scorer(spec, prep.train, valid_eval, cfg.seed)
        if not spec.standalone:
            continue  # an ensemble member only (a re-ranker)
        with ctx.timer(f"evaluate:{spec.name}"):
            results[spec.name] = test_eval.evaluate(scorers[spec.name])
        ctx.log.info("%s: %s", spec.name, {k: round(v, 4) for k, v in results[spec.name].means().items()})
    for ens in cfg.ensembles:
        with ctx.timer(f"fit:{ens.name}"):
            scorers[ens.name], info[ens.name] = build_ensemble(ens, scorers, cfg, prep, valid_eval)
        with ctx.timer(f"evaluate:{ens.name}"):
            results[ens.name] = test_eval.evaluate(scorers[ens.name])
        ctx.log.info("%s: %s", ens.name, {k: round(v, 4) for k, v in results[ens.name].means().items()})

    vectors = _item_vectors(scorers) if cfg.beyond_k else None
    leaderboard = []
    for name, res in results.items():
        row = {
            "model": name,
            **res.to_dict(ci=cfg.bootstrap > 0, n_resamples=max(cfg.bootstrap, 1), seed=cfg.seed),
        }
        row.update(beyond_accuracy(res.topk, prep.train, vectors) if cfg.beyond_k else {})
        row.pop("primary_metric")
        row["info"] = info[name]
        if name in cfg.published:
            row["published"] = cfg.published[name]
        leaderboard.append(row)
    leaderboard.sort(key=lambda r: -r[primary])
    reference = cfg.reference or leaderboard[0]["model"]
    per_query = pd.concat([r.per_query.assign(model=n) for n, r in results.items()], ignore_index=True)
    with ctx.timer("significance"):
        sig = paired_tests(
            {n: r.per_query[primary].to_numpy() for n, r in results.items()},
            reference,
            primary,
            n_resamples=cfg.significance_resamples,
            seed=cfg.seed,
        )
    kfold = {}
    if cfg.protocol.kfold > 1 and cfg.protocol.task == "recommendation":
        with ctx.timer("kfold"):
            kfold = kfold_baselines(cfg, prep)
    per_query.to_parquet(ctx.path("per_query.parquet"), index=False)
    summary = {
        "task": cfg.protocol.task,
        "protocol": prep.test.protocol,
        "split": cfg.protocol.split if cfg.protocol.task == "recommendation" else "pairs file splits",
        "eval_set": prep.test.name,
        "primary_metric": primary,
        "reference": reference,
        "ties": cfg.evaluator.ties,
        **prep.counts,
    }
    seg_tables = [segment_table(per_query, primary, seg) for seg in prep.test.segments]
    segments = (
        pd.concat([t.set_index("model") for t in seg_tables if len(t)], axis=1).reset_index()
        if any(len(t) for t in seg_tables)
        else None
    )
    write_html(
        ctx.path("report.html"),
        f"recsys evaluate: {prep.test.name}",
        summary,
        leaderboard,
        sig,
        segments,
        primary,
    )
    payload = {"summary": summary, "leaderboard": leaderboard, "significance": sig, "kfold": kfold}
    saved = save_results(cfg, ctx, payload)
    return {
        "counts": prep.counts,
        "primary_metric": primary,
        "metrics": {r["model"]: {k: v for k, v in r.items() if isinstance(v, float)} for r in leaderboard},
        **payload,
        "artifacts": {
            "per_query": str(ctx.output_dir / "per_query.parquet"),
            "html": str(ctx.output_dir / "report.html"),
            **saved,
        },
    }
