"""Typed job configs: shared sections, YAML loading, dotted overrides, all-errors-at-once reporting."""

from recsys.config.base import (
    InputConfig,
    JobConfig,
    ModelConfig,
    RayConfig,
    ScalingConfig,
    StrictModel,
    TrackingConfig,
)
from recsys.config.loader import ConfigError, load_config, parse_overrides

__all__ = [
    "ConfigError",
    "InputConfig",
    "JobConfig",
    "ModelConfig",
    "RayConfig",
    "ScalingConfig",
    "StrictModel",
    "TrackingConfig",
    "load_config",
    "parse_overrides",
]
