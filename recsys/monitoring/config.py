"""Config of the drift job (``recsys run drift``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recsys.config import InputConfig, JobConfig, StrictModel


class DriftFeature(StrictModel):
    """One monitored column of the events tables (canonical names, docs/DATA.md)."""

    column: str = Field(
        ..., min_length=1, description="Column, e.g. price, event_type, query, category, score."
    )
    kind: Literal["numeric", "categorical"] = Field(
        ..., description="numeric: quantile-bin PSI + KS; categorical: top-k PSI."
    )
    psi_max: float = Field(0.25, gt=0, description="Drift above this PSI (0.1 moderate, 0.25 major).")
    ks_max: float | None = Field(
        None, gt=0, le=1, description="Numeric only: drift above this KS statistic D (None = PSI only)."
    )
    bins: int = Field(10, ge=2, le=100, description="Numeric: reference quantile bins.")
    top_k: int = Field(
        50, ge=1, description="Categorical: the reference's most frequent values kept (rest = other)."
    )
    normalize: bool = Field(False, description="Categorical: lower-case and strip values first (query mix).")

    @model_validator(mode="after")
    def _ks(self) -> DriftFeature:
        if self.kind == "categorical" and self.ks_max is not None:
            raise ValueError(
                f"feature {self.column!r}: ks_max is for numeric features; remove it or set kind: numeric"
            )
        return self


def _default_features() -> list[DriftFeature]:
    return [
        DriftFeature(column="price", kind="numeric", psi_max=0.25, ks_max=0.2),
        DriftFeature(column="event_type", kind="categorical", psi_max=0.25),
        DriftFeature(column="query", kind="categorical", psi_max=0.25, normalize=True),
        DriftFeature(column="item_id", kind="categorical", psi_max=0.5, top_k=100),
        DriftFeature(column="score", kind="numeric", psi_max=0.25, ks_max=0.2),
    ]


class DriftConfig(JobConfig):
    """Drift between the training snapshot and recent feedback (PSI, KS): report, gauges, exit 1 above thresholds."""

    reference: InputConfig = Field(
        ..., description="Training snapshot: canonical events (e.g. the clean job's events)."
    )
    current: InputConfig = Field(
        ..., description="Recent events, e.g. the service's feedback dir (runs/feedback/...)."
    )
    window_days: float | None = Field(
        None,
        gt=0,
        description="Keep only current events within this many days of the newest one (None = all).",
    )
    reference_end: str | None = Field(
        None,
        description="Keep reference events before this ISO timestamp (one source split in time; None = all).",
    )
    current_start: str | None = Field(
        None, description="Keep current events at or after this ISO timestamp (None = all)."
    )
    max_rows: int | None = Field(
        1_000_000, ge=100, description="Seeded sample of each side above this many rows (None = all)."
    )
    min_rows: int = Field(
        50, ge=1, description="A feature with fewer non-null rows on either side is skipped (reported)."
    )
    features: list[DriftFeature] = Field(
        default_factory=_default_features,
        min_length=1,
        description="Monitored columns; absent columns are reported as skipped, never silently ignored.",
    )
    fail_on_drift: bool = Field(
        True, description="Exit non-zero when a feature drifts (a CronJob then triggers retraining)."
    )
    max_stale_hours: float | None = Field(
        None, gt=0, description="Also fail when the newest current event is older than this (stale data)."
    )
    textfile: str | None = Field(
        "drift.prom", description="Gauges in Prometheus text format, relative to output_dir (None = off)."
    )
    pushgateway: str | None = Field(
        None, description="Pushgateway address (host:9091) to push the gauges to (None = off)."
    )

    @model_validator(mode="after")
    def _unique(self) -> DriftConfig:
        import pandas as pd  # lazy: jobs/drift.py imports this config at listing time; pandas costs ~0.5 s

        for key in ("reference_end", "current_start"):
            value = getattr(self, key)
            if value is not None:
                try:
                    pd.Timestamp(value)
                except ValueError:
                    raise ValueError(
                        f"{key}: {value!r} is not an ISO timestamp; write e.g. '2017-12-01' or "
                        "'2017-12-01T00:00:00Z'"
                    ) from None
        cols = [f.column for f in self.features]
        dup = sorted({c for c in cols if cols.count(c) > 1})
        if dup:
            raise ValueError(f"features: columns {dup} are listed twice; keep one entry per column")
        return self
