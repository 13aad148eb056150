"""Train the second-phase LambdaMART ranker (LightGBM lambdarank) on judged train queries (Serve: rank.model)."""

from __future__ import annotations

from recsys.search.ltr_config import TrainRankerConfig

CONFIG = TrainRankerConfig


def run(cfg: TrainRankerConfig, ctx) -> dict:
    from recsys.experiments.ranker import run as run_ranker  # lazy: jobs import only their config

    return run_ranker(cfg, ctx)


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
