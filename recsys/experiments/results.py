"""The leaderboard file of an evaluate run: ``results.json`` in the run directory, always; a copy at
``results_json`` only when the config asks (e.g. ``docs/results/<name>.json`` to refresh the tracked
results), so no run writes into tracked files by default."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.evaluation.config import EvaluateConfig
from recsys.evaluation.report import write_results_json

if TYPE_CHECKING:
    from recsys.runtime import JobContext

RESULTS_FILE = "results.json"


def save_results(cfg: EvaluateConfig, ctx: JobContext, payload: dict[str, Any]) -> dict[str, str]:
    """Write ``payload`` plus the resolved config; returns the artifact paths (``results``, and
    ``results_json`` when set)."""
    doc = {**payload, "config": cfg.model_dump(mode="json")}
    run_copy = ctx.path(RESULTS_FILE)
    write_results_json(run_copy, doc)
    out = {"results": str(run_copy)}
    if cfg.results_json:
        write_results_json(cfg.results_json, doc)
        out["results_json"] = str(Path(cfg.results_json))
    return out
