"""The matching protocol (pair classification): every model scores the valid and test pairs of
``data.pairs``; F1 at the threshold chosen on valid, PR-AUC, bootstrap CI of F1, learned (stacked)
ensembles, paired tests on per-pair correctness, HTML report and results JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.ensemble.stacking import StackedMatcher
from recsys.evaluation.classification import (
    PairClassificationEvaluator,
    classification_metrics,
    f1_bootstrap_ci,
    per_pair_correct,
)
from recsys.evaluation.config import EnsembleSpec, EvaluateConfig
from recsys.evaluation.data import load_pairs, pair_split
from recsys.evaluation.report import write_html
from recsys.evaluation.stats import paired_tests
from recsys.experiments.results import save_results
from recsys.experiments.scorers import pair_scorer

if TYPE_CHECKING:
    from recsys.runtime import JobContext


def run_matching(cfg: EvaluateConfig, ctx: JobContext) -> dict[str, Any]:
    if cfg.data.pairs is None:
        raise ValueError("protocol.task matching needs data.pairs")
    df = load_pairs(cfg.data.pairs)
    valid = pair_split(df, "valid", cfg.protocol.max_valid_queries)
    test, train = pair_split(df, "test", cfg.protocol.max_queries), pair_split(df, "train")
    if len(test[2]) == 0 or len(valid[2]) == 0:
        raise ValueError(
            "data.pairs needs rows with split 'valid' and 'test' (the threshold is chosen on valid)"
        )
    ev = PairClassificationEvaluator(valid, test)
    rows, scores = [], {}  # scores: name -> (valid, test)
    for spec in cfg.models:
        with ctx.timer(f"evaluate:{spec.name}"):
            out = ev.evaluate(pair_scorer(spec, cfg.seed, train))
        scores[spec.name] = (out.pop("_valid_scores"), out.pop("_test_scores"))
        if spec.standalone:
            rows.append((spec.name, out))
    for ens in cfg.ensembles:
        with ctx.timer(f"evaluate:{ens.name}"):
            out = _stacked_matcher(ens, scores, valid[2], test[2], cfg.seed)
        scores[ens.name] = (out.pop("_valid_scores"), out.pop("_test_scores"))
        rows.append((ens.name, out))
    leaderboard, correct = [], {}
    for name, out in rows:
        test_scores = scores[name][1]
        correct[name] = per_pair_correct(test_scores, test[2], out["threshold"])
        if cfg.bootstrap:
            out["ci95"] = {
                "f1": f1_bootstrap_ci(test_scores, test[2], out["threshold"], cfg.bootstrap, cfg.seed)
            }
        out.pop("primary_metric", None)
        row = {"model": name, **out}
        if name in cfg.published:
            row["published"] = cfg.published[name]
        leaderboard.append(row)
        ctx.log.info("%s: F1 %.4f (threshold %.4f chosen on valid)", name, out["f1"], out["threshold"])
    leaderboard.sort(key=lambda r: -r["f1"])
    reference = cfg.reference or leaderboard[0]["model"]
    sig = paired_tests(correct, reference, "accuracy", n_resamples=cfg.significance_resamples, seed=cfg.seed)
    summary = {
        "task": "matching",
        "test_pairs": len(test[2]),
        "valid_pairs": len(valid[2]),
        "primary_metric": "f1",
        "threshold": "max F1 on valid, applied once to test",
        "reference": reference,
    }
    write_html(
        ctx.path("report.html"), "recsys evaluate: pair matching", summary, leaderboard, sig, None, "f1"
    )
    payload = {"summary": summary, "leaderboard": leaderboard, "significance": sig}
    saved = save_results(cfg, ctx, payload)
    return {
        "counts": {"test_pairs": len(test[2]), "valid_pairs": len(valid[2])},
        "primary_metric": "f1",
        "metrics": {r["model"]: {k: v for k, v in r.items() if isinstance(v, float)} for r in leaderboard},
        **payload,
        "artifacts": {"html": str(ctx.output_dir / "report.html"), **saved},
    }


def _stacked_matcher(
    ens: EnsembleSpec,
    scores: dict[str, tuple[np.ndarray, np.ndarray]],
    valid_labels: np.ndarray,
    test_labels: np.ndarray,
    seed: int,
) -> dict[str, Any]:
    """A learned fusion of matchers: logistic regression over member scores, fit on validation."""
    valid = np.column_stack([scores[m][0] for m in ens.members])  # (N valid, members)
    stack = StackedMatcher(folds=ens.folds, seed=seed).fit(valid, valid_labels)
    test_scores = stack.score(np.column_stack([scores[m][1] for m in ens.members]))
    out = classification_metrics(test_scores, test_labels, stack.threshold)
    out.update(
        {
            "valid_f1": stack.valid_f1,
            "_test_scores": test_scores,
            "_valid_scores": stack.score(valid),
            "info": {
                "method": "learned",
                "folds": ens.folds,
                "weights": dict(zip(ens.members, stack.coefficients)),
                "threshold": "max F1 on out-of-fold validation scores",
            },
        }
    )
    return out
