"""Compress a trained cross-encoder or bi-encoder: ONNX fp32 / int8, pruned and distilled variants; quality, latency."""

from __future__ import annotations

from recsys.compress.config import CompressConfig

CONFIG = CompressConfig
NEEDS_RAY = False  # a prune recovery fine-tune starts its own Ray through the train job


def run(cfg: CompressConfig, ctx) -> dict:
    from recsys.experiments.compression import run as run_compress  # lazy: torch, onnxruntime

    report = run_compress(cfg, ctx)
    for row in report["variants"]:
        ctx.log.info(
            "%-18s %-11s %8.2f MB %9.1f pairs/s  max|diff| %.2e%s",
            row["variant"],
            row["backend"],
            row["size_mb"],
            row["pairs_s"],
            row["max_abs_diff"],
            f"  {row['reason']}" if "reason" in row else "",
        )
    return report


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
