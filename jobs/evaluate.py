"""Evaluate models and baselines on a protocol: metrics + CIs, paired tests, per-user Parquet, HTML report."""

from __future__ import annotations

from recsys.evaluation.config import EvaluateConfig

CONFIG = EvaluateConfig


def run(cfg: EvaluateConfig, ctx) -> dict:
    from recsys.evaluation.pipeline import run as evaluate

    return evaluate(cfg, ctx)


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
