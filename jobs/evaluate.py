"""Evaluate models and baselines on a protocol: metrics + CIs, paired tests, per-user Parquet, HTML report."""

from __future__ import annotations

from recsys.evaluation.config import EvaluateConfig

CONFIG = EvaluateConfig


def run(cfg: EvaluateConfig, ctx) -> dict:
    from recsys import experiments  # lazy: job modules import only their config (listing jobs stays light)

    return experiments.run(cfg, ctx)


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
