"""Evaluate protocol ``search``: the served /search pipeline, end to end, on judged queries.

Builds the :class:`~recsys.search.SearchPipeline` of one arm of a serve config in this process,
exactly as the fused Serve topology builds it (``recsys.serving.arms.local_pipelines``), sends every
judged query through it (``k = search.depth``, page 0, over the arm's full index), and scores the
served order with ``recsys.evaluation.metrics`` (graded NDCG; bootstrap CIs from
``recsys.evaluation.stats``). So a ranker that wins here is the one Serve answers with.

Judged queries (``cfg.search``): ``judgments``, a Parquet / CSV table with columns ``query, item_id,
relevance`` (optional ``query_id`` (default: the query text), ``user_id``, ``country``: who asks,
for the personalised blend); or ``queries`` (TSV ``query_id <tab> query [<tab> user_id]``) +
``qrels`` (TREC ``query_id 0 item_id relevance``). Relevance <= 0 is not relevant; a query without a
relevant item is skipped (counted).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys.evaluation import metrics as M
from recsys.evaluation import stats
from recsys.evaluation.config import EvaluateConfig, SearchProtocolConfig, SearchVariant
from recsys.evaluation.evaluators import RankingResult
from recsys.evaluation.judged import JudgedQuery, JudgmentsSpec, load_judged_queries
from recsys.evaluation.trec import read_qrels
from recsys.experiments.results import save_results
from recsys.experiments.search_report import (
    query_segments,
    served_catalog,
    slice_table,
    worst_queries,
    write_search_report,
)
from recsys.search.pipeline import SearchPipeline, SearchRejected, SearchRequest, SearchResult
from recsys.serving.arms import local_pipelines
from recsys.serving.launch import read_serve_config, validate_args

if TYPE_CHECKING:
    from recsys.runtime import JobContext


def _read_table(path: str) -> pd.DataFrame:
    return (
        pd.read_csv(path, dtype=str)
        if Path(path).suffix.lower() in (".csv", ".tsv")
        else pd.read_parquet(path)
    )


def _opt(value: Any) -> str | None:
    return (
        None if value is None or (isinstance(value, float) and np.isnan(value)) or value == "" else str(value)
    )


def load_judgments(path: str) -> list[JudgedQuery]:
    """Queries of a judgments table (columns ``query, item_id, relevance`` [, query_id, user_id, country])."""
    df = _read_table(path)
    missing = sorted({"query", "item_id", "relevance"} - set(df.columns))
    if missing:
        raise ValueError(f"{path}: judgments need columns query, item_id, relevance; missing {missing}")
    df = df.assign(
        query_id=df["query_id"].astype(str) if "query_id" in df else df["query"].astype(str),
        item_id=df["item_id"].astype(str),
        relevance=df["relevance"].astype(float),
    )
    out = []
    for qid, g in df.groupby("query_id", sort=False):
        first = g.iloc[0]
        out.append(
            JudgedQuery(
                str(qid),
                str(first["query"]),
                _opt(first.get("user_id")),
                _opt(first.get("country")),
                dict(zip(g["item_id"], g["relevance"])),
            )
        )
    return out


def load_trec(queries_path: str, qrels_path: str) -> list[JudgedQuery]:
    """Queries of a TSV (``query_id <tab> query [<tab> user_id]``) judged by TREC qrels."""
    qrels = read_qrels(qrels_path)
    out = []
    for no, line in enumerate(Path(queries_path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[1].strip():
            raise ValueError(
                f"{queries_path}:{no}: a queries line is query_id <tab> query [<tab> user_id], got {line!r}"
            )
        qid = parts[0].strip()
        out.append(
            JudgedQuery(
                qid,
                parts[1].strip(),
                _opt(parts[2].strip()) if len(parts) > 2 else None,
                None,
                qrels.get(qid, {}),
            )
        )
    return out


def load_judged(
    sc: SearchProtocolConfig, catalog: set[str] | None = None
) -> tuple[list[JudgedQuery], dict[str, Any] | None]:
    """The judged queries of ``sc.split`` and, for a judgments table, the adapter's report (every row
    accounted for: kept or skipped for a counted reason)."""
    if sc.judgments:
        spec = JudgmentsSpec(
            columns=dict(sc.columns),
            split=sc.split,
            fractions=sc.split_fractions,
            salt=sc.split_salt,
            min_relevance=sc.relevance_range[0] if sc.relevance_range else None,
            max_relevance=sc.relevance_range[1] if sc.relevance_range else None,
            max_query_chars=sc.max_query_chars,
        )
        judged, report = load_judged_queries(sc.judgments, spec, catalog)
        return judged, report.to_dict()
    assert sc.queries is not None and sc.qrels is not None  # SearchProtocolConfig._source: they go together
    return load_trec(sc.queries, sc.qrels), None


def _merged(section: str, app_args: dict[str, Any], arm: dict[str, Any], over: dict[str, Any] | None) -> Any:
    """The arm's ``section`` (its own, else the app's) with the variant's keys on top; None: untouched."""
    if over is None:
        return arm.get(section)
    return {**(app_args.get(section) or {}), **(arm.get(section) or {}), **over}


def serve_pipeline(
    sc: SearchProtocolConfig, variant: SearchVariant | None = None
) -> tuple[str, SearchPipeline, dict[str, Any]]:
    """``(arm, its pipeline, {artifacts, version})`` from the serve config, with the config's overrides and
    the ``variant``'s sections merged over the arm's (an ablation row is the served arm, changed only there)."""
    app = read_serve_config(sc.serve_config)["applications"][0]
    raw_arms = (app.get("args") or {}).get("arms") or []
    arm = sc.arm or (raw_arms[0].get("name") if raw_arms else None)
    if arm not in [a.get("name") for a in raw_arms]:
        raise ValueError(
            f"search.arm {arm!r} is not an arm of {sc.serve_config} ({[a.get('name') for a in raw_arms]})"
        )
    override = {k: v for k, v in (("artifacts", sc.artifacts), ("version", sc.version)) if v is not None}
    app_args = app.get("args") or {}

    def changed(a: dict[str, Any]) -> dict[str, Any]:
        out = {**{k: v for k, v in a.items() if not (override and k == "registry")}, **override}
        for section in ("retrieval", "rerank", "personalize", "query", "rank"):
            merged = _merged(section, app_args, a, getattr(variant, section) if variant else None)
            if merged is not None:
                out[section] = merged
        return out

    arms = [changed(a) if a.get("name") == arm else a for a in raw_arms]
    args = validate_args({**app, "args": {**app_args, "arms": arms}}, str(sc.serve_config))
    served = next(a for a in args.arms if a.name == arm)
    arm = served.name  # the same name, as the validated str
    return (
        arm,
        local_pipelines(args, [arm])[arm],
        {"artifacts": str(served.artifacts), "version": served.version},
    )


async def rank_all(pipeline: SearchPipeline, queries: list[JudgedQuery], depth: int) -> list[SearchResult]:
    """Each query's answer: page 0 with ``k = depth``, as /search would answer it."""
    out = []
    for q in queries:
        res = await pipeline.search(
            SearchRequest(query=q.query, user_id=q.user_id, country=q.country, k=depth)
        )
        if isinstance(res, SearchRejected):
            raise ValueError(f"query {q.query_id!r}: the pipeline rejected it ({res.field}: {res.message})")
        out.append(res)
    return out


def ranking(res: SearchResult) -> list[tuple[str, float]]:
    """``[(item_id, score)]`` best first: the served order."""
    return [(str(i["item_id"]), float(i["score"])) for i in res.items]


def target_ranks(
    queries: list[JudgedQuery],
    rankings: list[list[tuple[str, float]]],
    *,
    min_relevance: float | None = None,
    gain_offset: float = 0.0,
) -> M.TargetRanks:
    """Where each query's relevant items landed in its served order (NOT_RANKED: not retrieved).

    An item counts when ``relevance - gain_offset > 0`` (and ``relevance >= min_relevance`` when given);
    its gain is ``relevance - gain_offset``. Unjudged items gain 0."""

    def counted(g: float) -> bool:
        return g - gain_offset > 0 and (min_relevance is None or g >= min_relevance)

    width = max((sum(counted(g) for g in q.relevance.values()) for q in queries), default=1) or 1
    ranks = np.full((len(queries), width), M.NOT_RANKED, dtype=np.int64)
    gains = np.zeros((len(queries), width))
    for i, (q, ranked) in enumerate(zip(queries, rankings)):
        pos = {item: r for r, (item, _) in enumerate(ranked)}
        for j, (item, g) in enumerate((d, g) for d, g in q.relevance.items() if counted(g)):
            ranks[i, j], gains[i, j] = pos.get(item, M.NOT_RANKED), g - gain_offset
    return M.TargetRanks(ranks=ranks, gains=gains, n_candidates=np.asarray([len(r) for r in rankings]))


def score_rankings(
    queries: list[JudgedQuery],
    rankings: list[list[tuple[str, float]]],
    metrics: list[str],
    sc: SearchProtocolConfig,
) -> dict[str, np.ndarray]:
    """Per-query values of ``metrics``: graded NDCG (gain = relevance - gain_offset), every other metric
    on binary relevance (relevance >= relevant_min, or > 0)."""
    graded = target_ranks(queries, rankings, gain_offset=sc.gain_offset)
    binary = target_ranks(queries, rankings, min_relevance=sc.relevant_min)
    out = {}
    for m in metrics:
        tr = graded if M.parse_metric(m)[0] in ("ndcg", "ndcg_burges") else binary
        out[m] = M.per_query(tr, m)
    return out


def is_relevant(q: JudgedQuery, sc: SearchProtocolConfig) -> bool:
    return any(g >= sc.relevant_min if sc.relevant_min is not None else g > 0 for g in q.relevance.values())


def run(cfg: EvaluateConfig, ctx: JobContext) -> dict[str, Any]:
    sc = cfg.search
    if sc is None:
        raise ValueError("protocol.task search needs the search section")
    metrics = [M.metric_key(m) for m in cfg.metrics]
    primary = M.metric_key(cfg.primary_metric) if cfg.primary_metric else metrics[0]
    variants = sc.variants or [SearchVariant(name=sc.arm or "served")]
    reference = sc.reference or variants[0].name
    rows: list[dict[str, Any]] = []
    per_variant: dict[str, pd.DataFrame] = {}
    rankings_of: dict[str, list[list[tuple[str, float]]]] = {}
    rewritten_of: dict[str, list[str | None]] = {}
    index: dict[str, Any] = {}
    judged: list[JudgedQuery] = []
    queries: list[JudgedQuery] = []
    adapter: dict[str, Any] | None = None
    catalog: pd.DataFrame | None = None
    for v in variants:
        with ctx.timer(f"build:{v.name}"):
            arm, pipeline, index = serve_pipeline(sc, v if sc.variants else None)
        if catalog is None:  # the served catalog: judged products are checked against it
            catalog = served_catalog(index)
            judged, adapter = load_judged(sc, set(catalog["item_id"]) if len(catalog) else None)
            queries = [q for q in judged if is_relevant(q, sc)]
            if not queries:
                raise ValueError("search: no judged query has a relevant item (see search.relevant_min)")
        with ctx.timer(f"search:{v.name}"):
            answers = asyncio.run(rank_all(pipeline, queries, sc.depth))
        del pipeline
        rankings = [ranking(a) for a in answers]
        rankings_of[v.name] = rankings
        rewritten_of[v.name] = [getattr(a, "rewritten_query", None) for a in answers]
        index["served_versions"] = sorted({a.version for a in answers})  # the version `latest` named
        per = pd.DataFrame({"query_id": [q.query_id for q in queries], "query": [q.query for q in queries]})
        for name, values in score_rankings(queries, rankings, metrics, sc).items():
            per[name] = values
        per_variant[v.name] = per
        result = RankingResult(
            eval_set="search",
            protocol=f"search:{arm}:{v.name}",
            metrics=metrics,
            primary_metric=primary,
            per_query=per,
        ).to_dict(ci=cfg.bootstrap > 0, n_resamples=max(cfg.bootstrap, 1), seed=cfg.seed)
        rows.append({"variant": v.name, **{m: result[m] for m in metrics}, "ci95": result.get("ci95", {})})
        ctx.log.info("search %s/%s: %s", arm, v.name, {m: round(result[m], 4) for m in metrics})
    assert catalog is not None
    segments = query_segments(queries, catalog)
    last = variants[-1].name
    per = per_variant[last].assign(**segments)
    per.to_parquet(ctx.path("per_query.parquet"), index=False)
    pd.concat([p.assign(variant=n, **segments) for n, p in per_variant.items()]).to_parquet(
        ctx.path("per_query_variants.parquet"), index=False
    )
    pd.DataFrame(
        [
            (q.query_id, r, item, s)
            for q, ranked in zip(queries, rankings_of[last])
            for r, (item, s) in enumerate(ranked)
        ],
        columns=["query_id", "position", "item_id", "score"],
    ).to_parquet(ctx.path("rankings.parquet"), index=False)
    tests = (
        [
            t
            for m in metrics
            for t in stats.paired_tests(
                {n: p[m].to_numpy() for n, p in per_variant.items()},
                reference,
                m,
                n_resamples=cfg.significance_resamples,
                seed=cfg.seed,
            )
        ]
        if len(per_variant) > 1
        else []
    )
    slices = slice_table(per_variant, segments, metrics)
    payload = {
        "metrics": {m: rows[-1][m] for m in metrics},
        "ci95": rows[-1]["ci95"],
        "ablation": rows,
        "paired_tests": tests,
        "slices": slices,
        "adapter": adapter,
        "summary": {
            "task": "search",
            "serve_config": str(sc.serve_config),
            "arm": arm,
            **index,
            "depth": sc.depth,
            "split": sc.split,
            "reference": reference,
            "served_variant": last,
            "relevant_min": sc.relevant_min,
            "gain_offset": sc.gain_offset,
        },
    }
    saved = save_results(cfg, ctx, payload)
    worst = worst_queries(queries, rankings_of[last], rewritten_of[last], per, catalog, primary, sc)
    html_paths = write_search_report(ctx.output_dir, payload, worst)
    return {
        "counts": {"queries": len(queries), "skipped_no_relevant": len(judged) - len(queries)},
        "primary_metric": primary,
        **payload,
        "artifacts": {
            "per_query": str(ctx.output_dir / "per_query.parquet"),
            "per_query_variants": str(ctx.output_dir / "per_query_variants.parquet"),
            "rankings": str(ctx.output_dir / "rankings.parquet"),
            **html_paths,
            **saved,
        },
    }
