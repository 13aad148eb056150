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
from recsys.config.loader import (
    ConfigError,
    dump_config,
    expand_values,
    field_types,
    load_config,
    parse_overrides,
    read_yaml,
    set_dotted,
)

__all__ = [
    "ConfigError",
    "InputConfig",
    "JobConfig",
    "ModelConfig",
    "RayConfig",
    "ScalingConfig",
    "StrictModel",
    "TrackingConfig",
    "dump_config",
    "expand_values",
    "field_types",
    "load_config",
    "parse_overrides",
    "read_yaml",
    "set_dotted",
]
