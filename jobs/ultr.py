"""Unbiased learning to rank study: naive / IPS / DLA / oracle rankers on synthetic click logs, NDCG vs the truth."""

from __future__ import annotations

from recsys.causal.config import UltrConfig

CONFIG = UltrConfig
NEEDS_RAY = False


def run(cfg: UltrConfig, ctx) -> dict:
    from recsys.causal import ultr
    from recsys.runtime import write_json

    with ctx.timer("study"):
        study = ultr.study(cfg)
    write_json(ctx.path("study.json"), study)
    s = study["summary"]
    ctx.log.info("[ultr] ndcg@%d %s gap closed %s", cfg.k, s["ndcg"], s.get("gap_closed"))
    return {
        "metrics": {
            **{f"{m}.ndcg@{cfg.k}": v for m, v in s["ndcg"].items()},
            **{f"{m}.gap_closed": v for m, v in (s.get("gap_closed") or {}).items() if v is not None},
        },
        "study": s,
        "counts": {
            "seeds": cfg.seeds,
            "test_queries": s["queries"],
            "train_sessions": study["per_seed"][0]["train_sessions"],
        },
        "artifacts": {"study": str(ctx.output_dir / "study.json")},
    }


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
