"""One hyperparameter's distribution in a tune config's ``space`` (Ray Tune search-space primitives)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from recsys.config.base import StrictModel


class ParamSpec(StrictModel):
    """One hyperparameter's distribution (Ray Tune search-space primitives)."""

    type: Literal["choice", "uniform", "loguniform", "randint", "grid"] = Field(
        ...,
        description="choice / grid: pick from values; uniform / loguniform: float in [low, high]; "
        "randint: int in [low, high).",
    )
    values: list[Any] | None = Field(None, description="Candidates of choice / grid (any YAML values).")
    low: float | None = Field(None, description="Lower bound of uniform / loguniform / randint.")
    high: float | None = Field(
        None, description="Upper bound of uniform / loguniform (inclusive) and randint (exclusive)."
    )

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type in ("choice", "grid"):
            if not self.values:
                raise ValueError(
                    f"type {self.type} needs a non-empty 'values' list, e.g. values: [1e-4, 3e-4]"
                )
            if self.low is not None or self.high is not None:
                raise ValueError(f"type {self.type} takes 'values', not low/high")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"type {self.type} needs 'low' and 'high'")
        if self.values is not None:
            raise ValueError(f"type {self.type} takes low/high, not 'values' (use type: choice for a list)")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be smaller than high ({self.high})")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(
                f"loguniform needs low > 0 (got {self.low}); use uniform for ranges that include 0"
            )
        if self.type == "randint" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("randint needs integer low and high (high is exclusive)")
        return self

    def bounds(self) -> tuple[float, float]:
        """(low, high) of a uniform / loguniform / randint spec (set: checked by the validator)."""
        if self.low is None or self.high is None:
            raise ValueError(f"type {self.type} has no low/high")
        return self.low, self.high

    def probe_values(self) -> list[Any]:
        """Values checked against the train config before the sweep: every candidate, or the bounds."""
        if self.values is not None:
            return list(self.values)
        low, high = self.bounds()
        if self.type == "randint":
            return [int(low), int(high) - 1]
        return [low, high]
