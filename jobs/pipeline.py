"""Raw logs to a promoted, monitored service: stages (the jobs themselves), gates, registry, lineage; resumable."""

from __future__ import annotations

from recsys.pipeline.config import PipelineConfig

CONFIG = PipelineConfig


def run(cfg: PipelineConfig, ctx) -> dict:
    import time

    from recsys.pipeline.runner import PipelineRunner
    from recsys.pipeline.summary import service_url, summary_lines

    start = time.perf_counter()  # not ctx.timer: each stage is its own progress display
    summary = PipelineRunner(cfg, ctx.output_dir, ctx.log).run()
    ctx.timings["pipeline"] = round(time.perf_counter() - start, 3)
    for s in summary["stages"]:
        ctx.timings[f"stage:{s['name']}"] = s["seconds"]
    for line in summary_lines(summary):
        ctx.note(line)
    if service_url(summary):
        ctx.service(service_url(summary))
    return summary


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
