"""Sweep outputs: the trials table (Parquet + CSV), best.yaml (a train config that
``recsys run train --config best.yaml`` accepts unchanged) and the best checkpoint's model."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import ray.train
import yaml

from recsys.config.loader import expand_values
from recsys.training.trainer import write_model_card
from recsys.tuning.space import train_config, trial_data
from recsys.tuning.trial import CHECKPOINT_KEY, TOTAL_STEPS_KEY

_SKIP = {
    "config",
    CHECKPOINT_KEY,
    "trial_id",
    "experiment_tag",
    "date",
    "hostname",
    "node_ip",
    "pid",
    "timestamp",
    "done",
    "should_checkpoint",
    "time_since_restore",
    "iterations_since_restore",
    "time_this_iter_s",
}


@dataclass
class TrialRecord:
    """One trial: its sampled params, history of validation reports, outcome."""

    trial_id: str
    params: dict[str, Any]
    history: pd.DataFrame
    status: str
    error: str | None
    path: str | None


def _is_better(a: float, b: float, mode: str) -> bool:
    return a > b if mode == "max" else a < b


def collect(grid, space_keys: list[str], statuses: dict[str, str] | None = None) -> list[TrialRecord]:
    """Trial records from a ``ResultGrid`` (finished, stopped, failed and -- after an interruption --
    unfinished trials); ``statuses`` are the Tune statuses by trial id."""
    statuses = statuses or {}
    records = []
    for result in grid:
        hist = result.metrics_dataframe if result.metrics_dataframe is not None else pd.DataFrame()
        last = result.metrics or {}
        trial_id = str(
            last.get("trial_id")
            or (
                hist["trial_id"].iloc[-1]
                if "trial_id" in hist and len(hist)
                else _trial_id_from_path(result.path, statuses)
            )
        )
        config = result.config or {}  # None for a trial interrupted before its first report
        params = {k: config.get(k) for k in space_keys if k in config}
        if result.error is not None:
            status = "error"
        elif statuses.get(trial_id, "TERMINATED") not in ("TERMINATED", "ERROR"):
            status = "unfinished"
        elif not last or "step" not in last:
            status = "no_report"
        elif last.get(TOTAL_STEPS_KEY) and last["step"] < last[TOTAL_STEPS_KEY]:
            status = "stopped_early"
        else:
            status = "completed"
        records.append(
            TrialRecord(
                trial_id,
                params,
                hist,
                status,
                f"{type(result.error).__name__}: {result.error}" if result.error else None,
                result.path,
            )
        )
    return sorted(records, key=lambda r: r.trial_id)


def _trial_id_from_path(path: str | None, known: dict[str, str]) -> str:
    """Tune names a trial's directory ``<trainable>_<trial id>_<index>_<params>_<date>``: the id of a trial
    that left no report comes from there (matched against the ids Tune knows), else the directory name."""
    name = Path(path or "unknown").name
    return next((tid for tid in known if f"_{tid}_" in f"_{name}_"), name)


def best_value(rec: TrialRecord, metric: str, mode: str) -> float | None:
    if metric not in rec.history or rec.history[metric].dropna().empty:
        return None
    col = rec.history[metric].dropna()
    return float(col.max() if mode == "max" else col.min())


def trials_table(records: list[TrialRecord], metric: str, mode: str) -> pd.DataFrame:
    """One row per trial: id, status, best / last objective, steps, time, every param, final metrics."""
    rows = []
    for rec in records:
        h = rec.history
        last = h.iloc[-1].to_dict() if len(h) else {}
        row: dict[str, Any] = {
            "trial_id": rec.trial_id,
            "status": rec.status,
            f"best_{metric}": best_value(rec, metric, mode),
            f"last_{metric}": last.get(metric),
            "steps": last.get("step"),
            "total_steps": last.get(TOTAL_STEPS_KEY),
            "validations": len(h),
            "time_s": last.get("time_total_s"),
            "error": rec.error,
        }
        row.update({f"config/{k}": v for k, v in rec.params.items()})
        for k, v in last.items():
            if k not in _SKIP and k not in row and isinstance(v, (int, float)) and not isinstance(v, bool):
                row[f"final/{k}"] = v
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in df.columns:  # parquet needs one type per column; mixed choice values become strings
        if df[col].dtype == object and df[col].map(type).nunique() > 1:
            df[col] = df[col].map(lambda v: None if v is None else str(v))
    return df


def best_record(records: list[TrialRecord], metric: str, mode: str) -> TrialRecord | None:
    best, best_v = None, None
    for rec in records:
        v = best_value(rec, metric, mode)
        if v is not None and not math.isnan(v) and (best_v is None or _is_better(v, best_v, mode)):
            best, best_v = rec, v
    return best


def best_train_data(base_raw: dict[str, Any], params: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """The best trial's train config: the base exactly as written (``${VAR}`` refs kept; keys left
    unset stay unset, so preset defaults still apply) + the tuned values, writing to its own
    ``output_dir`` (never resuming someone else's run). Validated before it is returned."""
    data = trial_data(base_raw, params)
    data["output_dir"] = output_dir
    train_config(expand_values(data), check_paths=False)
    return data


def write_best_yaml(path: Path, data: dict[str, Any], command_hint: str, comment: str) -> None:
    header = f"# {command_hint}\n# {comment}\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def export_best_model(
    rec: TrialRecord, metric: str, mode: str, dest: Path, train_cfg, counts: dict[str, Any]
):
    """Copy the best kept checkpoint's ``model/`` of ``rec`` to ``dest`` and write its model card.
    Returns (dest, metrics at that checkpoint) or (None, {}) when no checkpoint is left."""
    from recsys.training.loop import MODEL_DIR  # lazy: training.loop imports torch (seconds)

    h = rec.history
    if CHECKPOINT_KEY not in h or metric not in h:
        return None, {}
    rows = h[h[CHECKPOINT_KEY].notna() & h[metric].notna()].sort_values(metric, ascending=(mode == "min"))
    for _, row in rows.iterrows():
        ckpt = ray.train.Checkpoint(row[CHECKPOINT_KEY])
        try:
            with ckpt.as_directory() as d:
                src = Path(d) / MODEL_DIR
                if not src.is_dir():
                    continue
                if dest.exists():
                    shutil.rmtree(dest)
                shutil.copytree(src, dest)
        except FileNotFoundError:  # pruned by num_to_keep: try the next best
            continue
        metrics = {
            k: v
            for k, v in row.items()
            if isinstance(v, (int, float)) and k not in _SKIP and not (isinstance(v, float) and math.isnan(v))
        }
        write_model_card(dest, train_cfg, metrics, counts)
        return dest, metrics
    return None, {}
