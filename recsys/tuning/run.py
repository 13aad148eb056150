"""The tune job end to end: validate -> sweep (or resume) -> table, report, best.yaml, best model."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import ray
from ray._private.worker import get_dashboard_url

from recsys.config.loader import expand_values
from recsys.tuning.config import TuneJobConfig
from recsys.tuning.report import write_report
from recsys.tuning.results import (
    best_record,
    best_train_data,
    collect,
    export_best_model,
    trials_table,
    write_best_yaml,
)
from recsys.tuning.space import grid_size, load_base, train_config, validate_space, with_objective
from recsys.tuning.sweep import experiment_path, run_sweep
from recsys.utils.log import get_logger

log = get_logger("recsys.tune")


def mlflow_callbacks(cfg: TuneJobConfig) -> list:
    """Tune's MLflow logger (params + metric history per trial) when a tracking URI is configured."""
    uri = cfg.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return []
    # lazy: imports mlflow (~2 s), only with tracking on
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return [
        MLflowLoggerCallback(tracking_uri=uri, experiment_name=cfg.mlflow.experiment, save_artifact=False)
    ]


def require_dashboard() -> None:
    """Each trial runs a Ray Train controller; when a scheduler stops a trial, Ray Train's
    PlacementGroupCleaner frees the trial's worker placement group, but it finds out that the
    controller died through the State API, which the dashboard serves. Without it the resources of
    every stopped trial stay reserved and the sweep starves (seen: 1.5 of 2 CPUs held)."""
    if ray.is_initialized() and not get_dashboard_url():
        raise RuntimeError(
            "tune needs the Ray dashboard (Ray Train frees a stopped trial's placement group through the "
            "State API it serves): set ray.include_dashboard=true for a local Ray, or start the cluster "
            "with its dashboard (ray start --head without --include-dashboard=false)"
        )


def run_tuning(
    cfg: TuneJobConfig, output_dir: Path, timer=None, callbacks: list | None = None, prepared=None
) -> dict[str, Any]:
    """Returns the report dict of the tune job (counts, metrics, best params, artifacts).
    ``callbacks``: extra Ray Tune callbacks (progress hooks, custom loggers); ``prepared``: the base
    config's ``recsys.training.trainer.prepare`` result, reused when the space leaves data unchanged."""
    timer = timer or (lambda name: contextlib.nullcontext())
    require_dashboard()
    out = Path(output_dir)
    raw = load_base(cfg.base, cfg.overrides)
    base = validate_space(raw, cfg.space, cfg.objective.metric, cfg.objective.mode)
    base_raw = with_objective(raw, base.metric_name, base.train.mode)
    metric, mode = base.metric_name, base.train.mode
    with timer("sweep"):
        grid, resumed, statuses = run_sweep(
            cfg,
            base_raw,
            base,
            out,
            callbacks=[*mlflow_callbacks(cfg), *(callbacks or [])],
            prepared=prepared,
        )
    with timer("outputs"):
        records = collect(grid, list(cfg.space), statuses)
        # a stop between two trials leaves none unfinished, only grid points / samples never started
        expected = cfg.search.num_samples * grid_size(cfg.space)
        interrupted = any(r.status == "unfinished" for r in records) or len(records) < expected
        table = trials_table(records, metric, mode)
        table.to_parquet(out / "trials.parquet", index=False)
        table.to_csv(out / "trials.csv", index=False)
        best = best_record(records, metric, mode)
        artifacts = {
            "trials_parquet": str(out / "trials.parquet"),
            "trials_csv": str(out / "trials.csv"),
            "experiment": experiment_path(cfg, out),
        }
        result: dict[str, Any] = {}
        if best is not None:
            best_out = str(out / "best_train")
            data = best_train_data(base_raw, best.params, best_out)
            write_best_yaml(
                out / "best.yaml",
                data,
                f"recsys run train --config {out / 'best.yaml'}",
                f"best of {len(records)} trials ({metric} {mode}) of {experiment_path(cfg, out)}: "
                f"trial {best.trial_id}",
            )
            artifacts["best_config"] = str(out / "best.yaml")
            if cfg.export_best:
                best_cfg = train_config(expand_values(data), check_paths=False)
                model_dir, ckpt_metrics = export_best_model(
                    best, metric, mode, out / "model", best_cfg, {"trial_id": best.trial_id}
                )
                if model_dir is not None:
                    artifacts["model"] = str(model_dir)
                    result["best_checkpoint_metrics"] = ckpt_metrics
                else:
                    log.warning("the best trial left no checkpoint with a model/ directory; nothing exported")
            result["best"] = {
                "trial_id": best.trial_id,
                "params": best.params,
                metric: float(table.loc[table.trial_id == best.trial_id, f"best_{metric}"].iloc[0]),
            }
        statuses = table["status"].value_counts().to_dict() if len(table) else {}
        summary = {
            "trials": len(records),
            "interrupted": interrupted,
            **{f"trials_{k}": v for k, v in statuses.items()},
            "resumed": resumed,
            "trial_time_s": round(float(table["time_s"].fillna(0).sum()), 1) if len(table) else 0.0,
            "search": cfg.search.algorithm,
            "scheduler": cfg.scheduler.name,
        }
        log_keys = {k for k, p in cfg.space.items() if p.type == "loguniform"}
        write_report(
            out / "report.html",
            title=f"recsys tune: {cfg.name}",
            table=table,
            records=records,
            metric=metric,
            mode=mode,
            time_attr=cfg.scheduler.time_attr,
            log_keys=log_keys,
            best=result.get("best"),
            summary=summary,
        )
        artifacts["report_html"] = str(out / "report.html")
    best_v = result.get("best", {}).get(metric)
    log.info("sweep done: %s; best %s = %s", summary, metric, best_v)
    if interrupted:
        log.warning(
            "the sweep was interrupted: run the same command again to resume it (finished trials are kept)"
        )
    return {
        "counts": {k: v for k, v in summary.items() if isinstance(v, int) and not isinstance(v, bool)},
        "metrics": {f"best_{metric}": best_v} if best_v is not None else {},
        "objective": {"metric": metric, "mode": mode},
        "resumed": resumed,
        "interrupted": interrupted,
        "trial_time_s": summary["trial_time_s"],
        **result,
        "artifacts": artifacts,
    }
