"""Raw logs to a promoted, monitored service: stages (the jobs themselves), gates, registry, lineage; resumable."""

from __future__ import annotations

from recsys.pipeline.config import PipelineConfig

CONFIG = PipelineConfig


def run(cfg: PipelineConfig, ctx) -> dict:
    from recsys.pipeline.runner import PipelineRunner

    with ctx.timer("pipeline"):
        summary = PipelineRunner(cfg, ctx.output_dir, ctx.log).run()
    for s in summary["stages"]:
        ctx.timings[f"stage:{s['name']}"] = s["seconds"]
    from recsys.pipeline.summary import print_summary

    print_summary(summary)
    return summary


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
