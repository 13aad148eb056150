"""Model registry and run tracking (MLflow): versions, staging / production aliases, promote, rollback."""

from recsys.registry.config import RegistryConfig
from recsys.registry.mlflow_registry import (
    PREVIOUS,
    PRODUCTION,
    STAGING,
    ModelRegistry,
    RegistryError,
    mlflow_key,
)

__all__ = [
    "PREVIOUS",
    "PRODUCTION",
    "STAGING",
    "ModelRegistry",
    "RegistryConfig",
    "RegistryError",
    "mlflow_key",
]
