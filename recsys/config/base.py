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
        description="Installed alias (all-MiniLM-L6-v2), a local HF directory, or a hub id (needs a hub); "
        "training also takes a saved recsys model directory (recsys_model.json) and continues from its weights.",
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
            if not any(os.path.isfile(os.path.join(path, f)) for f in ("config.json", "recsys_model.json")):
                raise ValueError(
                    f"model directory {value!r} not found (or has no config.json / recsys_model.json); point it "
                    "at a directory written by save_pretrained(), or use the packaged alias 'all-MiniLM-L6-v2'"
                )
        return value


NULL_TOKENS = ("", "NA", "N/A", "null", "NULL", "None", "-")


class TimestampParts(StrictModel):
    """A timestamp assembled from several source columns (``input.timestamp``): a date (or date-time)
    column, optionally joined with a time-of-day column, plus an optional offset column, e.g. a click
    log whose order within a day is a millisecond offset: ``{date: eventdate, offset_ms: timeframe}``."""

    date: str = Field(..., description="Source column holding the date (or the date and time).")
    time: str | None = Field(
        None, description="Source column holding the time of day, joined to the date with a space."
    )
    offset_ms: str | None = Field(
        None, description="Source column of milliseconds added to date (+ time), e.g. an offset in a session."
    )
    offset_s: str | None = Field(None, description="Source column of seconds added to date (+ time).")
    format: str | None = Field(
        None,
        description="strptime format of date (+ ' ' + time), e.g. '%Y-%m-%d %H:%M'; None = ISO 8601 / epochs.",
    )

    @model_validator(mode="after")
    def _one_offset(self) -> TimestampParts:
        if self.offset_ms and self.offset_s:
            raise ValueError("input.timestamp: give offset_ms or offset_s, not both")
        return self

    def source_columns(self) -> list[str]:
        return [c for c in (self.date, self.time, self.offset_ms, self.offset_s) if c]


class InputConfig(StrictModel):
    """Where a job reads a table and how its columns map to the canonical schema (see docs/DATA.md).

    Either a named ``preset`` (``recsys.data.presets``: every set in ../shared/data) or a generic
    reader (``format``) with a ``columns`` mapping; preset values are defaults that any key given
    here overrides. ``recsys.data.adapters.read_input(cfg)`` turns it into a Ray Dataset.
    Delimited text is split by exactly one of ``delimiter`` (sniffed when none is given),
    ``delimiter_regex`` or ``fixed_width``.
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
        None,
        description="Field separator of csv/tsv/text: one character, or 'whitespace' (runs of spaces / tabs, "
        "as in space-aligned reports); None = sniffed from the first lines (csv.Sniffer), else ',' / tab / space.",
    )
    delimiter_regex: str | None = Field(
        None, description="Split fields on this regular expression instead, e.g. '\\s*\\|\\s*'."
    )
    fixed_width: list[int] | Literal["infer"] | None = Field(
        None,
        description="Fixed-width columns: their widths in characters, or 'infer' (from the alignment of the "
        "first lines); fields are stripped of the padding.",
    )
    max_fields: int | None = Field(
        None,
        ge=1,
        description="Split each line of csv/tsv/text into at most this many fields; the last keeps the rest of "
        "the line (e.g. 2 for 'user item1 item2 ...' lines). With a one-character delimiter quotes are then not "
        "special. None = every delimiter splits.",
    )
    comment: str | None = Field(None, description="Lines starting with this prefix are skipped, e.g. '#'.")
    header: bool | Literal["auto"] = Field(
        "auto",
        description="Delimited files start with a header line: true / false, or auto (detected: a first line "
        "whose fields are all names while the lines below hold numbers or dates).",
    )
    column_names: list[str] | None = Field(
        None, description="Names of the source columns of a header-less file (or to replace its header)."
    )
    encoding: str = Field(
        "utf-8",
        description="Text encoding of delimited / JSONL files (rows that do not decode are quarantined); "
        "'auto' = detected (charset-normalizer).",
    )
    sheet: str | int | None = Field(None, description="Excel sheet name or index (default: the first).")
    null_values: list[str] = Field(
        list(NULL_TOKENS),
        description="Source values read as missing (after trimming spaces); inventory reports each token's "
        "share per column. [] keeps every value.",
    )
    timestamp_format: str | None = Field(
        None,
        description="strptime format of the timestamp column, e.g. '%d/%m/%Y %H:%M'; None = ISO 8601 / epoch numbers.",
    )
    formats: dict[str, str] = Field(
        default_factory=dict,
        description="Parse format per canonical column: a strptime format for a timestamp column, "
        "'decimal_comma' for numbers written 1.234,50; e.g. {timestamp: '%d.%m.%Y', price: decimal_comma}.",
    )
    timestamp: TimestampParts | None = Field(
        None,
        description="Build the canonical timestamp from several source columns (a date + a time and / or an "
        "offset column) instead of one mapped column.",
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
    anonymous_key: Literal["session_id", "order_id"] | None = Field(
        None,
        description="Events without a user id (missing or a null token) but with this canonical column are "
        "kept as the events of a pseudo-user '<column>:<value>' (an anonymous session, a guest order) instead of "
        "being quarantined as missing_key:user_id; the inventory proposes it when a user column is mostly null.",
    )
    ordinal_timestamps: bool = Field(
        False,
        description="The log has no time column but lists each user's events in time order (e.g. 'user item' "
        "lines): timestamps become 1970-01-01T00:00:00Z + k s, k = the event's position among its user's rows "
        "of the same file. The order is kept; dates and durations are meaningless.",
    )
    item_list: str | None = Field(
        None,
        description="Source column holding a whitespace-separated list of item ids in time order (the "
        "'user item1 item2 ...' sequence format, with max_fields: 2): each item becomes one event (item_id) "
        "whose line is the row's source_row; timestamps are ordinal per user (1970-01-01T00:00:00Z + k s, "
        "k = position in the user's history) when no timestamp column is mapped.",
    )

    @model_validator(mode="after")
    def _check(self) -> InputConfig:
        if self.delimiter is not None and len(self.delimiter) != 1 and self.delimiter != "whitespace":
            raise ValueError(
                f"input.delimiter must be one character or 'whitespace', got {self.delimiter!r}; use '\\t' for "
                "tabs, or input.delimiter_regex for a longer separator"
            )
        splitters = [
            n for n in ("delimiter", "delimiter_regex", "fixed_width") if getattr(self, n) is not None
        ]
        if len(splitters) > 1:
            raise ValueError(f"input: give one of {' / '.join(splitters)}, not several")
        if self.delimiter_regex is not None:
            try:
                re.compile(self.delimiter_regex)
            except re.error as exc:
                raise ValueError(
                    f"input.delimiter_regex {self.delimiter_regex!r} is not a regex: {exc}"
                ) from None
        if self.max_fields is not None and self.fixed_width is not None:
            raise ValueError("input.max_fields splits delimited lines; remove it with fixed_width")
        if self.item_list is not None:
            mapped = [s for s, c in self.columns.items() if s == self.item_list or c == "item_id"]
            if mapped:
                raise ValueError(
                    f"input.item_list {self.item_list!r} becomes item_id (one event per item); remove "
                    f"{', '.join(repr(m) for m in mapped)} from input.columns"
                )
        if isinstance(self.fixed_width, list) and (not self.fixed_width or min(self.fixed_width) < 1):
            raise ValueError("input.fixed_width: give positive column widths, e.g. [10, 12, 8], or 'infer'")
        if self.timestamp is not None and "timestamp" in self.columns.values():
            raise ValueError(
                "input.timestamp builds the timestamp from its parts; remove the column mapped to "
                "'timestamp' from input.columns"
            )
        for col, fmt in self.formats.items():
            if col != "timestamp" and fmt not in ("decimal_comma", "plain"):
                raise ValueError(
                    f"input.formats.{col}: {fmt!r} is not a number format; use decimal_comma or plain "
                    "(strptime formats apply to timestamp)"
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
