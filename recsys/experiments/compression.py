"""The compress job's report: quality of every compressed variant on a shared evaluation protocol, paired
against the uncompressed model, the promotion gate, and ``report.html`` (table + quality-vs-latency plot).

The protocol is an evaluate config (``quality.protocol``) read with the evaluate job's own code:

- task ``matching`` (cross-encoders; a bi-encoder scores the cosine of its towers): the valid / test
  pairs of ``data.pairs`` (``recsys.evaluation.data.pair_split``), F1 at the threshold that maximises
  F1 on valid (``PairClassificationEvaluator``), its bootstrap CI, and the paired tests of per-pair
  correctness against the ``torch`` row (``recsys.evaluation.stats.paired_tests``), as ``evaluate`` does;
- task ``retrieval`` (bi-encoders): ``prepare`` + ``RankingEvaluator`` (MRR, Recall@10, ...), metric CIs
  and paired tests of the per-query primary metric.

Gate: a variant whose primary metric is more than ``quality.max_relative_drop`` (relative) below the
``torch`` row's is ``promotable: false`` with the ``reason``; ``promoted`` names the fastest promotable
variant (pairs/s at the throughput batch).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from recsys import kinds
from recsys.compress.config import CompressConfig, QualityConfig
from recsys.compress.report import apply_gate, run_compress
from recsys.evaluation.classification import PairClassificationEvaluator, f1_bootstrap_ci, per_pair_correct
from recsys.evaluation.config import EvaluateConfig
from recsys.evaluation.data import load_pairs, pair_split
from recsys.evaluation.model_scorers import scorer_for_model
from recsys.evaluation.prepare import make_evaluator, prepare
from recsys.evaluation.stats import paired_tests

if TYPE_CHECKING:
    from recsys.runtime import JobContext

REFERENCE = "torch"
TASKS = ("matching", "retrieval")


def load_protocol(q: QualityConfig) -> EvaluateConfig:
    """The evaluate config named by ``quality.protocol`` (+ overrides); its models are not needed."""
    from recsys.config.loader import load_config

    cfg = load_config(EvaluateConfig, q.protocol, q.overrides, check_paths=False)
    if cfg.protocol.task not in TASKS:
        raise ValueError(
            f"quality.protocol {q.protocol!r} has protocol.task {cfg.protocol.task!r}; the compress report "
            f"scores pair models on task {' or '.join(TASKS)} (e.g. configs/evaluate/abt-buy-matching-ft.yaml)"
        )
    return cfg


def _open(row: dict[str, Any], threads: int) -> Any:
    from recsys.compress.scorers import load_scorer  # lazy: onnxruntime / torch

    return load_scorer(row["path"], threads=threads)


def matching_quality(
    cfg: EvaluateConfig, rows: list[dict[str, Any]], threads: int, batch_size: int
) -> tuple[str, dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """(primary metric, row name -> metrics, paired tests vs torch) on the matching protocol."""
    assert cfg.data.pairs is not None  # EvaluateConfig: task matching needs data.pairs
    df = load_pairs(cfg.data.pairs)
    valid = pair_split(df, "valid", cfg.protocol.max_valid_queries)
    test = pair_split(df, "test", cfg.protocol.max_queries)
    ev = PairClassificationEvaluator(valid, test)
    out, correct = {}, {}
    for row in rows:
        model = _open(row, threads)
        score = kinds.get(model.model_type).pair_scorer
        assert score is not None  # cross_encoder and bi_encoder both register one
        res = ev.evaluate(score(model, batch_size=batch_size))
        test_scores = res.pop("_test_scores")
        res.pop("_valid_scores"), res.pop("primary_metric")
        correct[row["variant"]] = per_pair_correct(test_scores, test[2], res["threshold"])
        if cfg.bootstrap:
            res["ci95"] = {
                "f1": f1_bootstrap_ci(test_scores, test[2], res["threshold"], cfg.bootstrap, cfg.seed)
            }
        out[row["variant"]] = res
    sig = paired_tests(correct, REFERENCE, "accuracy", n_resamples=cfg.significance_resamples, seed=cfg.seed)
    return "f1", out, sig


def retrieval_quality(
    cfg: EvaluateConfig, rows: list[dict[str, Any]], threads: int, batch_size: int
) -> tuple[str, dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """(primary metric, row name -> metrics, paired tests vs torch) on the retrieval protocol."""
    prep = prepare(cfg)
    evaluator = make_evaluator(cfg, prep.test)
    texts = prep.train.item_texts(["title"])
    primary = evaluator.primary_metric
    out, per_query = {}, {}
    for row in rows:
        scorer = scorer_for_model(_open(row, threads), item_texts=texts, catalog=prep.train.catalog)
        res = evaluator.evaluate(scorer)
        metrics = res.to_dict(ci=cfg.bootstrap > 0, n_resamples=max(cfg.bootstrap, 1), seed=cfg.seed)
        metrics.pop("primary_metric", None)
        out[row["variant"]] = metrics
        per_query[row["variant"]] = res.per_query[primary].to_numpy()
    sig = paired_tests(per_query, REFERENCE, primary, n_resamples=cfg.significance_resamples, seed=cfg.seed)
    return primary, out, sig


QUALITY: dict[str, Callable[..., tuple[str, dict[str, dict[str, Any]], list[dict[str, Any]]]]] = {
    "matching": matching_quality,
    "retrieval": retrieval_quality,
}


def add_quality(
    report: dict[str, Any], q: QualityConfig, protocol: EvaluateConfig, threads: int
) -> dict[str, Any]:
    """Score every row of ``report`` on ``protocol``, add its metrics, CI, paired test and gate verdict."""
    rows = report["variants"]
    primary, metrics, sig = QUALITY[protocol.protocol.task](protocol, rows, threads, q.batch_size)
    tests = {s["model"]: s for s in sig}
    for row in rows:
        m = metrics[row["variant"]]
        row["quality"] = {k: v for k, v in m.items() if k != "ci95"}
        row[primary] = m[primary]
        if "ci95" in m and primary in m["ci95"]:
            row[f"{primary}_ci95"] = [round(float(x), 4) for x in m["ci95"][primary]]
        if row["variant"] in tests:
            t = tests[row["variant"]]
            row["paired"] = {
                k: t[k] for k in ("metric", "diff", "diff_ci_low", "diff_ci_high", "p_ttest", "p_permutation")
            }
    apply_gate(rows, primary, q.max_relative_drop)
    report["quality"] = {
        "protocol": q.protocol,
        "overrides": q.overrides,
        "task": protocol.protocol.task,
        "primary_metric": primary,
        "reference": REFERENCE,
        "max_relative_drop": q.max_relative_drop,
        "significance": sig,
    }
    report["primary_metric"] = primary
    report["metrics"] = {r["variant"]: {primary: r[primary]} for r in rows}
    promotable = [r for r in rows[1:] if r.get("promotable")]
    best = max(promotable, key=lambda r: r["pairs_s"]) if promotable else None
    report["promoted"] = (
        {"variant": best["variant"], "path": best["path"], "speedup_vs_torch": best["speedup_vs_torch"]}
        if best
        else None
    )
    return report


def _plot(rows: list[dict[str, Any]], primary: str, batch: int) -> str:
    """Quality vs p50 latency at the throughput batch (95% CI bars; red = not promotable), a PNG <img>."""
    import matplotlib  # lazy: matplotlib costs ~1 s; only the HTML page needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in rows:
        x, y = r[f"p50_ms_b{batch}"], r[primary]
        ci = r.get(f"{primary}_ci95")
        err = [[y - ci[0]], [ci[1] - y]] if ci else None
        color = "#4c72b0" if r.get("promotable", True) else "#c44e52"
        ax.errorbar([x], [y], yerr=err, fmt="o", color=color, capsize=3)
        ax.annotate(r["variant"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")  # variants span an order of magnitude of latency
    ax.set_xlabel(f"p50 latency, batch {batch} (ms, log scale)")
    ax.set_ylabel(f"{primary} (95% bootstrap CI)")
    ax.set_title("quality vs latency (red: not promotable)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return f'<img alt="quality vs latency" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


TABLE_COLUMNS = (
    "variant",
    "backend",
    "size_mb",
    "pairs_s",
    "speedup_vs_torch",
    "rss_delta_mb",
    "peak_rss_mb",
)


def write_html(path: Any, report: dict[str, Any], batch: int, batch_sizes: list[int]) -> None:
    """``report.html``: the table (quality, CI, paired test, gate, latency p50/p99 per batch size, size,
    memory) and, with a quality protocol, the quality-vs-latency plot."""
    rows = report["variants"]
    primary = report.get("primary_metric")
    table = []
    for r in rows:
        t = {c: r.get(c) for c in TABLE_COLUMNS}
        if primary:
            ci = r.get(f"{primary}_ci95")
            t[primary] = r.get(primary)
            t[f"{primary} 95% CI"] = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
            p = r.get("paired")
            t["paired diff (p_perm)"] = f"{p['diff']:+.4f} (p={p['p_permutation']:.3g})" if p else "reference"
            t["promotable"] = r.get("promotable")
            t["reason"] = r.get("reason", "")
        for bs in batch_sizes:
            t[f"p50/p99 ms b{bs}"] = f"{r[f'p50_ms_b{bs}']:.1f} / {r[f'p99_ms_b{bs}']:.1f}"
        t["max |diff|"] = r.get("max_abs_diff")
        table.append(t)
    q = report.get("quality")
    head = (
        f"<p>model: {html.escape(str(report['source_model']))} ({html.escape(report['model_type'])}); "
        f"{report['threads']} threads; pairs/s at batch {batch}.</p>"
    )
    if q:
        head += (
            f"<p>quality: {html.escape(q['task'])} protocol {html.escape(str(q['protocol']))} "
            f"{html.escape(' '.join(q['overrides']))}; gate: relative {html.escape(primary or '')} drop "
            f"&le; {q['max_relative_drop']:.1%} vs torch; promoted: "
            f"{html.escape(str((report.get('promoted') or {}).get('variant')))}</p>"
        )
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
    )
    body = pd.DataFrame(table).to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="")
    plot = _plot(rows, primary, batch) if primary else ""
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>recsys compress</title><style>{style}</style>"
        f"</head><body><h1>recsys compress</h1>{head}{body}{plot}</body></html>",
        encoding="utf-8",
    )


def run(cfg: CompressConfig, ctx: JobContext) -> dict[str, Any]:
    """The compress job: variants + benchmark (``recsys.compress``), quality + gate, report.html."""
    from recsys.runtime import init_ray

    protocol = load_protocol(cfg.quality) if cfg.quality else None  # a bad protocol fails before any work
    # the protocol's data readers (Ray Data) and a recovery fine-tune (Ray Train) need Ray: start it the
    # runtime's way (known ports, State API reachable), never implicitly
    started = init_ray(cfg) if protocol or (cfg.prune and cfg.prune.recovery) else False
    try:
        with ctx.timer("compress"):
            report = run_compress(cfg, ctx.output_dir)
        if cfg.quality is not None and protocol is not None:
            with ctx.timer("quality"):
                add_quality(report, cfg.quality, protocol, cfg.bench.threads)
    finally:
        if started:
            import ray  # started above: the job leaves no Ray behind

            ray.shutdown()
    write_html(ctx.path("report.html"), report, cfg.bench.throughput_batch, cfg.bench.batch_sizes)
    report["artifacts"]["html"] = str(ctx.output_dir / "report.html")
    return report


__all__ = ["add_quality", "load_protocol", "matching_quality", "retrieval_quality", "run", "write_html"]
