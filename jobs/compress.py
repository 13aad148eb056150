"""Compress a trained cross-encoder or bi-encoder: ONNX fp32 / int8 variants, score diffs, latency."""

from __future__ import annotations

from recsys.compress.config import CompressConfig

CONFIG = CompressConfig
NEEDS_RAY = False


def run(cfg: CompressConfig, ctx) -> dict:
    from recsys.compress.report import run_compress

    with ctx.timer("compress"):
        report = run_compress(cfg, ctx.output_dir)
    for row in report["variants"]:
        ctx.log.info(
            "%-10s %-11s %8.2f MB %9.1f pairs/s  max|diff| %.2e",
            row["variant"],
            row["backend"],
            row["size_mb"],
            row["pairs_s"],
            row["max_abs_diff"],
        )
    return report


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
