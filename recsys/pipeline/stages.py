"""Resolve and run one pipeline stage with the job's own code (``CONFIG`` + ``run`` via the runtime).

A stage's config is its job's YAML + the stage overrides (``@{stage}`` -> that stage's output dir);
its output directory is ``<pipeline>/stages/<name>/<key[:12]>`` where the key hashes the job, the
resolved config and its external inputs. A directory whose report.json says succeeded is reused.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.config.loader import ConfigError, dump_config, load_config, read_yaml, set_dotted
from recsys.jobs_registry import get_job, resolve_config_path
from recsys.pipeline.config import REF
from recsys.pipeline.hashing import external_inputs, stage_key
from recsys.runtime import run_job

STAGE_MARKER = ".recsys-stage.json"


@dataclass
class ResolvedStage:
    name: str
    job: str
    cfg: Any  # the job's validated config object
    config: dict[str, Any]  # its resolved dump (what is hashed and recorded in the lineage)
    inputs: dict[str, Any]
    key: str
    output_dir: Path
    upstream: list[str] = field(default_factory=list)

    def cached_report(self) -> dict[str, Any] | None:
        """The stage's report.json when a previous run with the same key succeeded."""
        report, marker = self.output_dir / "report.json", self.output_dir / STAGE_MARKER
        if not (report.is_file() and marker.is_file()):
            return None
        try:
            rep = json.loads(report.read_text(encoding="utf-8"))
            same = json.loads(marker.read_text(encoding="utf-8")).get("key") == self.key
        except (OSError, json.JSONDecodeError):
            return None
        return rep if same and rep.get("status") == "succeeded" else None


def substitute(value: Any, outputs: dict[str, str]) -> Any:
    """Replace ``@{stage}`` in strings (recursively) by the stage's output directory."""
    if isinstance(value, str):
        return REF.sub(lambda m: outputs[m.group(1)], value)
    if isinstance(value, dict):
        return {k: substitute(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, outputs) for v in value]
    return value


def stage_data(job: str, config: str, overrides: dict[str, Any], outputs: dict[str, str]) -> dict[str, Any]:
    """The job's YAML with the stage's overrides applied (not yet validated)."""
    errors: list[str] = []
    data = read_yaml(resolve_config_path(job, config), errors)
    if errors:
        raise ConfigError(errors, source=f"stage config {config!r} of job {job!r}")
    data = copy.deepcopy(data)
    for key, value in overrides.items():
        try:
            set_dotted(data, key, substitute(value, outputs))
        except ConfigError as exc:
            raise ConfigError(
                exc.errors, source=f"overrides of stage config {config!r} (job {job!r})"
            ) from None
    return data


def resolve(name: str, job: str, data: dict[str, Any], root: Path, upstream: list[str]) -> ResolvedStage:
    """Validate ``data`` as the job's config and key it."""
    spec = get_job(job)
    try:
        cfg = load_config(spec.config_cls, None, data=data)
    except ConfigError as exc:
        raise ConfigError(exc.errors, source=f"stage {name!r} (job {job})") from None
    resolved = dump_config(cfg)
    inputs = external_inputs(resolved, root)
    key = stage_key(spec.name, resolved, inputs)
    out = root / "stages" / name / key[:12]
    cfg.output_dir = str(out)
    return ResolvedStage(name, spec.name, cfg, resolved, inputs, key, out, upstream)


def execute(stage: ResolvedStage) -> dict[str, Any]:
    """Run the job's ``run`` through the runtime (report.json even on failure); never raises for a
    failing job: the returned report has status failed and the error."""
    spec = get_job(stage.job)
    if stage.output_dir.exists():  # a failed or interrupted attempt: start clean, never mix outputs
        shutil.rmtree(stage.output_dir)
    stage.output_dir.mkdir(parents=True)
    try:
        # track=False: the runner logs each stage itself, tagged with the pipeline and stage key
        report = run_job(spec.name, stage.cfg, spec.module.run, needs_ray=spec.needs_ray)
    except Exception:  # noqa: BLE001 - run_job wrote report.json with the error
        report = json.loads((stage.output_dir / "report.json").read_text(encoding="utf-8"))
    if report.get("status") == "succeeded":
        (stage.output_dir / STAGE_MARKER).write_text(
            json.dumps({"key": stage.key, "job": stage.job, "inputs": stage.inputs}, indent=2),
            encoding="utf-8",
        )
    return report
