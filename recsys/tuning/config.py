"""Config of the tune job: a base train config, a search space of dotted train-config keys, the
objective, the search algorithm, the early-stopping scheduler, storage and outputs.

The space is checked against ``TrainConfig`` before any trial starts (``recsys.tuning.space``):
a key the train config does not have, or a candidate value it rejects, is an error naming the key.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from recsys.config.base import JobConfig, StrictModel
from recsys.config.loader import ConfigError
from recsys.tuning.params import ParamSpec
from recsys.tuning.space import load_base, validate_space


class ObjectiveConfig(StrictModel):
    """What the sweep optimizes: a validation metric the train loop reports."""

    metric: str | None = Field(
        None,
        description="Validation metric (e.g. ndcg@10, f1, mrr); "
        "None = the base config's train.metric / its kind's default.",
    )
    mode: Literal["max", "min"] | None = Field(
        None, description="max or min; None = the base config's train.mode."
    )


class SearchConfig(StrictModel):
    """How configurations are proposed."""

    algorithm: Literal["random", "grid", "optuna"] = Field(
        "random",
        description="random sampling, grid (only type: grid keys, every combination once) or Optuna TPE.",
    )
    num_samples: int = Field(
        8,
        ge=1,
        description="Trials (random / optuna); with grid keys, each grid point is repeated num_samples times.",
    )
    max_concurrent_trials: int | None = Field(
        None,
        ge=1,
        description="Trials running at once; None = as many as the cluster's CPUs/GPUs fit (>= 1).",
    )
    seed: int | None = Field(None, description="Seed of the sampler; None = the job's seed.")


class SchedulerConfig(StrictModel):
    """Early stopping / population-based scheduling of trials."""

    name: Literal["asha", "asha_promote", "median", "pbt", "fifo"] = Field(
        "asha",
        description="asha (Ray's async successive halving: stops trials that fall behind at a rung), asha_promote "
        "(the ASHA paper's promotion rule: a trial waits, paused, at a rung until it is in the top 1/reduction_factor; "
        "recsys.tuning.promotion), median (median stopping rule), pbt, or fifo (no stopping).",
    )
    time_attr: str = Field(
        "step", description="Progress measure reported by the train loop (step) or training_iteration."
    )
    max_t: int | None = Field(
        None,
        ge=1,
        description="ASHA (both): longest trial in time_attr units; "
        "None = the base config's train.max_steps (else 100 validations).",
    )
    grace_period: int | None = Field(
        None,
        ge=1,
        description="Progress before a trial may be stopped; None = the base config's train.eval_every (steps).",
    )
    reduction_factor: float = Field(
        3.0, gt=1, description="ASHA: keep the top 1/reduction_factor at each rung."
    )
    min_samples_required: int = Field(
        3, ge=1, description="Median: trials needed at a step before stopping by the median."
    )
    perturbation_interval: int | None = Field(
        None, ge=1, description="PBT: exploit/explore every N time_attr units; None = 2 x train.eval_every."
    )
    quantile_fraction: float = Field(
        0.25, gt=0, le=0.5, description="PBT: bottom fraction that clones the top fraction."
    )

    @model_validator(mode="after")
    def _check(self) -> SchedulerConfig:
        if self.name == "pbt" and self.time_attr not in ("step", "training_iteration"):
            raise ValueError("pbt needs time_attr: step or training_iteration")
        return self


class MlflowConfig(StrictModel):
    """Optional MLflow logging of every trial (params, metric history)."""

    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI (file:/path, http://host:5000); None = MLFLOW_TRACKING_URI if set, else off.",
    )
    experiment: str = Field("recsys-tune", description="MLflow experiment name.")


class TrialResources(StrictModel):
    """Resources of each trial's driver (the Tune function that launches the trial's Ray Train run)."""

    driver_cpus: float = Field(
        0.01,
        ge=0,
        description="CPUs of the trial driver; tiny, its Ray Train workers (scaling.*) hold the real resources.",
    )
    max_failures: int = Field(
        1, ge=0, description="Restart a trial whose driver died this many times (resuming its Train run)."
    )
    worker_start_timeout_s: float = Field(
        900.0,
        gt=0,
        description="How long a trial's Train run waits for its workers (resources held by other trials, autoscaling).",
    )


class TuneJobConfig(JobConfig):
    """Sweep hyperparameters of the train job with Ray Tune (ASHA / median / PBT; random / grid / Optuna), resumable."""

    base: str | dict[str, Any] = Field(
        ...,
        description="Train config every trial starts from: a YAML path (configs/train/local.yaml) "
        "or the config inline.",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted train-config keys set on the base for every trial (e.g. train.max_steps: 150).",
    )
    objective: ObjectiveConfig = Field(
        default_factory=ObjectiveConfig, description="Metric to optimize and its mode."
    )
    space: dict[str, ParamSpec] = Field(
        ...,
        min_length=1,
        description="Dotted train-config key -> distribution, "
        "e.g. optim.lr: {type: loguniform, low: 1e-5, high: 1e-3}.",
    )
    search: SearchConfig = Field(
        default_factory=SearchConfig, description="Search algorithm, trial count, concurrency."
    )
    scheduler: SchedulerConfig = Field(
        default_factory=SchedulerConfig, description="Early stopping scheduler."
    )
    trial: TrialResources = Field(
        default_factory=TrialResources, description="Trial driver resources and retries."
    )
    storage_path: str | None = Field(
        None,
        description="Where Tune and the trials' Train runs persist state (local dir or s3://bucket/prefix); "
        "None = output_dir.",
    )
    name: str = Field(
        "sweep", description="Experiment name under storage_path (resume = same storage_path + name)."
    )
    resume: bool = Field(
        True, description="Continue an interrupted sweep found at storage_path/name (finished trials kept)."
    )
    export_best: bool = Field(
        True, description="Copy the best trial's best checkpoint to output_dir/model (with model card)."
    )
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig, description="Optional MLflow logging.")

    @field_validator("space")
    @classmethod
    def _space_fits_train_config(
        cls, space: dict[str, ParamSpec], info: ValidationInfo
    ) -> dict[str, ParamSpec]:
        """Every space key and candidate value is checked against TrainConfig before any trial starts."""

        if "base" not in info.data:
            return space  # the base itself is invalid: reported on its own
        objective = info.data.get("objective") or ObjectiveConfig()
        try:
            validate_space(
                load_base(info.data["base"], info.data.get("overrides")),
                space,
                objective.metric,
                objective.mode,
                check_paths=(info.context or {}).get("check_paths", True),
            )
        except ConfigError as exc:
            raise ValueError("\n    ".join(["space does not fit the train config:", *exc.errors])) from None
        return space

    @model_validator(mode="after")
    def _check(self) -> TuneJobConfig:
        grid_keys = [k for k, p in self.space.items() if p.type == "grid"]
        if self.search.algorithm == "grid":
            other = [k for k, p in self.space.items() if p.type != "grid"]
            if other:
                raise ValueError(
                    f"search.algorithm grid needs every space key to be type: grid; change {other} "
                    "(or use algorithm: random to mix grid and sampled keys)"
                )
        elif self.search.algorithm == "optuna" and grid_keys:
            raise ValueError(f"Optuna cannot search type: grid keys {grid_keys}; make them type: choice")
        if self.scheduler.name == "pbt":
            bad = [k for k, p in self.space.items() if p.type == "grid"]
            if bad:
                raise ValueError(f"pbt mutates sampled keys; make {bad} type: choice")
        return self
