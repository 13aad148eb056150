"""Where the model registry lives: embedded (sqlite + artifact dir under runs/) or a tracking server."""

from __future__ import annotations

from pydantic import Field, field_validator

from recsys.config import StrictModel
from recsys.config.base import reject_uri_credentials


class RegistryConfig(StrictModel):
    """MLflow tracking + model registry. Credentials never go here: MLflow reads
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD / MLFLOW_TRACKING_TOKEN from the environment
    (a Kubernetes secret on a cluster)."""

    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI (http(s)://server, sqlite:///path.db, databricks); None = MLFLOW_TRACKING_URI "
        "if set, else an embedded sqlite:///${RECSYS_RUNS_ROOT}/mlflow/mlflow.db (no server).",
    )
    artifact_location: str | None = Field(
        None,
        description="Artifact root of a new experiment (s3://..., a dir); None = ${RECSYS_RUNS_ROOT}/mlflow/artifacts "
        "when embedded, the server's default otherwise.",
    )
    experiment: str = Field(
        "recsys", min_length=1, description="MLflow experiment that stage runs are logged to."
    )
    model_name: str = Field(
        "recsys", min_length=1, description="Registered model name (versions + staging/production aliases)."
    )
    copy_artifacts: bool = Field(
        False,
        description="Upload the registered directory into the artifact store (needed when the tracking server "
        "does not share a filesystem with the cluster); False registers its path by reference.",
    )

    @field_validator("tracking_uri")
    @classmethod
    def _no_credentials(cls, v: str | None) -> str | None:
        return reject_uri_credentials(v, "registry.tracking_uri")
