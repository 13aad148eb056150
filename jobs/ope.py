"""Off-policy evaluation of a candidate ranker on logged clicks: IPS, SNIPS, DM, DR (+ naive) with bootstrap CIs."""

from __future__ import annotations

from recsys.causal.config import OpeConfig

CONFIG = OpeConfig
NEEDS_RAY = False


def run(cfg: OpeConfig, ctx) -> dict:
    from pathlib import Path

    from recsys.causal import clicklog, runs
    from recsys.runtime import write_json

    if cfg.study is not None:
        with ctx.timer("study"):
            study = runs.ope_study(cfg)
        write_json(ctx.path("study.json"), study)
        ctx.log.info("[ope] study vs truth: %s", study["summary"])
        return {
            "metrics": {f"{e}.{k}": v for e, s in study["summary"].items() for k, v in s.items()},
            "study": {
                "summary": study["summary"],
                "candidate_vs_logger_rel_gap": study["candidate_vs_logger_rel_gap"],
            },
            "counts": study["per_seed"][0]["counts"],
            "artifacts": {"study": str(ctx.output_dir / "study.json")},
        }
    assert cfg.logs is not None
    with ctx.timer("read"):
        imp, log_counts = clicklog.read_impressions(cfg.logs)
        cand_path = cfg.candidate.path or Path(cfg.logs) / "candidates"
        if not Path(cand_path).exists():
            raise ValueError(
                f"candidate scores not found at {cand_path}; set candidate.path to a Parquet of query_id, "
                f"item_id, {cfg.candidate.score_column} (served feedback logs have no candidates/ of their own)"
            )
        cands = clicklog.read_table(cand_path, "candidates")
    with ctx.timer("estimate"):
        rep = runs.ope_on(cfg, imp, cands, cfg.seed)
        rep["counts"] = {**log_counts, **rep["counts"]}
    write_json(ctx.path("ope.json"), rep)
    ctx.log.info("[ope] %s", {e: round(v["value"], 5) for e, v in rep["estimates"].items()})
    return {
        "counts": rep["counts"],
        "metrics": {f"{e}.{k}": v for e, s in rep["estimates"].items() for k, v in s.items()},
        "primary_metric": "snips.value",
        "ope": rep,
        "artifacts": {"ope": str(ctx.output_dir / "ope.json")},
    }


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
