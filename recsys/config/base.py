"""Shared config sections. Every job config is a ``JobConfig`` subclass built from these.

The typed config *is* the schema: ``extra="forbid"`` everywhere, every field documented, checks
in validators whose message names the fix.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from recsys.config.types import InputPath


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class RayConfig(StrictModel):
    """How the job reaches Ray."""

    address: str | None = Field(
        None,
        description="Ray address ('auto', 'ray://host:10001'); None = RAY_ADDRESS if set, else start a local Ray.",
    )
    num_cpus: float | None = Field(
        None, gt=0, description="CPUs of a local Ray started by the job (None = all)."
    )
    num_gpus: int | None = Field(
        None, ge=0, description="GPUs of a local Ray started by the job (None = detect)."
    )
    include_dashboard: bool = Field(
        True,
        description="Start the dashboard with a local Ray (port 8265, or the next free one). Ray Train's "
        "cleanup of stopped runs and `ray list` use the State API it serves; tune requires it.",
    )
    object_store_memory: int | None = Field(
        None, gt=0, description="Object store bytes of a local Ray (None = Ray's default)."
    )
    retain_worker_memory: bool = Field(
        True,
        description="The job's Ray workers keep freed heap memory for their next tasks instead of returning it "
        "to the OS (recsys.runtime.WORKER_MEMORY_ENV: Arrow's mimalloc never purges, glibc malloc neither trims nor "
        "maps large blocks separately). Data tasks allocate and free GBs per task, and faulting freed pages in "
        "again made the ETL benchmark 7-11 % slower (20-30 % on a VM that hands freed pages back to its host); "
        "the cost is ~1 GB more peak RSS there. false: the allocators' defaults (a worker's RSS falls back after "
        "its peak).",
    )


class ScalingConfig(StrictModel):
    """Resources of a distributed stage (Ray Train workers, actor pools)."""

    num_workers: int = Field(1, ge=1, description="Number of workers (Ray Train ranks / pool actors).")
    use_gpu: bool = Field(False, description="Give each worker GPUs.")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per worker (fractions allowed).")
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs per worker when use_gpu (default 1).")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="Placement group strategy of the workers."
    )

    @model_validator(mode="after")
    def _gpus(self) -> ScalingConfig:
        if self.gpus_per_worker > 0 and not self.use_gpu:
            raise ValueError("gpus_per_worker > 0 needs use_gpu: true (or set gpus_per_worker: 0)")
        return self

    def resources_per_worker(self) -> dict[str, float]:
        res = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            res["GPU"] = self.gpus_per_worker or 1.0
        return res


class ModelConfig(StrictModel):
    """A pretrained Hugging Face model, resolved without a model hub (see recsys.models.hub)."""

    name_or_path: str = Field(
        "all-MiniLM-L6-v2",
        description="Installed alias (all-MiniLM-L6-v2), a local HF directory, or a hub id (needs a hub).",
    )
    max_length: int = Field(128, ge=8, le=8192, description="Tokenizer truncation length.")

    @field_validator("name_or_path")
    @classmethod
    def _local_path_exists(cls, value: str, info: ValidationInfo) -> str:
        """A value that looks like a local path (./, /, ~) must be a directory with config.json.

        Skipped with validation context ``check_paths=False`` (a pipeline validates the evaluate
        stage before the train stage has written the model)."""
        if (info.context or {}).get("check_paths", True) is False:
            return value
        if value.startswith((".", "/", "~")):
            path = os.path.expanduser(value)
            if not os.path.isfile(os.path.join(path, "config.json")):
                raise ValueError(
                    f"model directory {value!r} not found (or has no config.json); point it at a directory "
                    "written by save_pretrained(), or use the packaged alias 'all-MiniLM-L6-v2'"
                )
        return value


class InputConfig(StrictModel):
    """Where a job reads a table and how its columns map to the canonical schema (see docs/DATA.md).

    Either a named ``preset`` (``recsys.data.presets``: every set in ../shared/data) or a generic
    reader (``format``) with a ``columns`` mapping; preset values are defaults that any key given
    here overrides. ``recsys.data.adapters.read_input(cfg)`` turns it into a Ray Dataset.
    """

    path: InputPath = Field(..., description="File, directory, glob or s3:// / gs:// URI.")
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet", "excel", "text"] = Field(
        "auto", description="Reader; auto = from the file extension."
    )
    preset: str | None = Field(None, description="Named adapter for a known data set (recsys.data.presets).")
    columns: dict[str, str] = Field(default_factory=dict, description="Source column name -> canonical name.")
    table: Literal["events", "items", "users", "pairs", "candidates", "sequences"] = Field(
        "events", description="Canonical table the file holds (generic readers; presets know their tables)."
    )
    delimiter: str | None = Field(
        None, description="Field separator of csv/tsv/text (default ',' / tab / space)."
    )
    header: bool = Field(True, description="Delimited files start with a header line.")
    column_names: list[str] | None = Field(
        None, description="Names of the source columns of a header-less file (or to replace its header)."
    )
    encoding: str = Field(
        "utf-8",
        description="Text encoding of delimited / JSONL files (rows that do not decode are quarantined).",
    )
    sheet: str | int | None = Field(None, description="Excel sheet name or index (default: the first).")
    timestamp_format: str | None = Field(
        None,
        description="strptime format of the timestamp column, e.g. '%d/%m/%Y %H:%M'; None = ISO 8601 / epoch numbers.",
    )
    timestamp_unit: Literal["s", "ms", "us", "ns"] | None = Field(
        None, description="Unit of numeric epoch timestamps; None = inferred from their magnitude."
    )
    timezone: str = Field(
        "UTC", description="Time zone of timestamps that carry no offset (converted to UTC)."
    )
    event_map: dict[str, str] = Field(
        default_factory=dict, description="Source event name -> canonical event type, e.g. {pv: view}."
    )
    defaults: dict[str, str | int | float] = Field(
        default_factory=dict,
        description="Constant for a canonical column the source lacks, e.g. {event_type: buy}.",
    )
    keep_extra: bool = Field(
        False, description="Keep unmapped source columns (as strings) next to the canonical ones."
    )

    @model_validator(mode="after")
    def _check(self) -> InputConfig:
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError(
                f"input.delimiter must be one character, got {self.delimiter!r}; use '\\t' for tabs"
            )
        if self.timezone != "UTC":
            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"input.timezone {self.timezone!r} is not an IANA zone; use e.g. 'Europe/London'"
                ) from None
        return self


def reject_uri_credentials(uri: str | None, field: str, where: str = "or a Kubernetes secret") -> str | None:
    """Validator body for MLflow URIs: credentials come from the environment, never from a config."""
    if uri and re.match(r"^[a-z+]+://[^/@]+:[^/@]+@", uri):
        raise ValueError(
            f"{field} must not embed credentials; export MLFLOW_TRACKING_USERNAME / "
            f"MLFLOW_TRACKING_PASSWORD ({where}) and give the bare URI"
        )
    return uri


class TrackingConfig(StrictModel):
    """MLflow run tracking of a standalone job (``recsys.registry.tracking``): the flattened config as
    params, the final metrics, report.json and the job's artifacts. A pipeline tracks its stages
    itself (``registry`` / ``track`` of the pipeline config). Credentials come from the environment
    (MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN), never from here."""

    enabled: bool = Field(True, description="Log the run when a tracking URI is known (false = never).")
    uri: str | None = Field(
        None,
        description="MLflow tracking URI (http(s)://server, sqlite:///path.db, file:///dir); None = "
        "MLFLOW_TRACKING_URI when set, else no tracking.",
    )
    experiment: str = Field("recsys", min_length=1, description="MLflow experiment the run is logged to.")
    max_artifact_mb: float = Field(
        100.0,
        ge=0,
        description="Upload each of the job's artifacts up to this size (a larger one is recorded as a "
        "path tag only); report.json is always uploaded.",
    )
    timeout_s: float = Field(
        10.0,
        gt=0,
        description="A tracking server that does not answer within this is skipped "
        "with a warning (the job's status is never changed by tracking).",
    )

    @field_validator("uri")
    @classmethod
    def _no_credentials(cls, v: str | None) -> str | None:
        return reject_uri_credentials(v, "tracking.uri")


class JobConfig(StrictModel):
    """Fields every job has."""

    seed: int = Field(0, description="Seeds Python, NumPy, torch and Ray Data shuffles everywhere.")
    output_dir: str | None = Field(
        None, description="Where outputs go; default ${RECSYS_RUNS_ROOT}/<job>/<timestamp>."
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="How to reach Ray.")
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, description="MLflow run tracking (off without a URI)."
    )
