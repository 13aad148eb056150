"""Sweep hyperparameters of the train job with Ray Tune (ASHA / median / PBT; random / grid / Optuna), resumable."""

from __future__ import annotations

from recsys.tuning.config import TuneJobConfig

CONFIG = TuneJobConfig


def run(cfg: TuneJobConfig, ctx) -> dict:
    from recsys.tuning.run import run_tuning

    return run_tuning(cfg, ctx.output_dir, timer=ctx.timer)


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
