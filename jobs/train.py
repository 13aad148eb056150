"""Fine-tune a bi-encoder, cross-encoder or sequential recommender with Ray Train (DDP / DeepSpeed)."""

from __future__ import annotations

from recsys.training.config import TrainConfig

CONFIG = TrainConfig


def run(cfg: TrainConfig, ctx) -> dict:
    from recsys.training.trainer import run_training

    with ctx.progress("train", unit="steps") as stage:  # the bar and ETA follow rank 0's optimizer steps
        result = run_training(cfg, ctx.output_dir, on_progress=stage.update)
    ctx.log.info(
        "best %s = %s; model: %s",
        cfg.metric_name,
        result["metrics"].get(cfg.metric_name),
        result["artifacts"]["model"],
    )
    return result


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
