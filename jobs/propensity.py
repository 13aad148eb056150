"""Estimate per-position examination propensities (intervention + regression-EM) with bootstrap CIs."""

from __future__ import annotations

from recsys.causal.config import PropensityConfig

CONFIG = PropensityConfig
NEEDS_RAY = False


def run(cfg: PropensityConfig, ctx) -> dict:
    from pathlib import Path

    from recsys.causal import clicklog, runs
    from recsys.runtime import write_json

    if cfg.study is not None:
        with ctx.timer("study"):
            study = runs.propensity_study(cfg)
        write_json(ctx.path("study.json"), study)
        ctx.log.info("[propensity] study vs truth: %s", study["summary"])
        return {
            "metrics": {f"{e}.{k}": v for e, s in study["summary"].items() for k, v in s.items()},
            "study": study["summary"],
            "artifacts": {"study": str(ctx.output_dir / "study.json")},
        }
    assert cfg.logs is not None
    with ctx.timer("read"):
        imp, log_counts = clicklog.read_impressions(cfg.logs)
        cand_path = cfg.candidates or (Path(cfg.logs) / "candidates")
        cands = clicklog.read_table(cand_path, "candidates") if Path(cand_path).exists() else None
    with ctx.timer("estimate"):
        est = runs.estimate_propensities(cfg, imp, cands, cfg.seed)
    doc = runs.propensity_document(cfg, est)
    write_json(ctx.path("propensities.json"), doc)
    ctx.log.info(
        "[propensity] examination (%s): %s", doc["default"], [round(v, 4) for v in doc["examination"]]
    )
    return {
        "counts": {**log_counts, **{f"{k}.{c}": n for k, e in est.items() for c, n in e.counts.items()}},
        "metrics": {f"{k}.p{i + 1}": v for k, e in est.items() for i, v in enumerate(e.propensity)},
        "artifacts": {"propensities": str(ctx.output_dir / "propensities.json")},
    }


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
