"""Config of the pipeline job: stages (each an existing job + its config), gates, deploy, registry."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from recsys.config import JobConfig, StrictModel
from recsys.registry.config import RegistryConfig

REF = re.compile(r"@\{([A-Za-z0-9_\-]+)\}")
"""``@{stage}`` in a stage override is replaced by that stage's output directory."""


class StageConfig(StrictModel):
    """One stage: the same code as ``recsys run <job> --config <config> <overrides>``."""

    name: str = Field(..., description="Stage name (unique; used by --from, gates and @{name} references).")
    job: str = Field(
        ...,
        description="Job module in jobs/ (inventory, clean, features, train, tune, evaluate, index, ...).",
    )
    config: str = Field(
        ...,
        description="The job's config: a scale (tiny/local/cluster) of its shipped configs, or a YAML path.",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted key -> value applied on top of the config; "
        "strings may hold @{stage} (that stage's output dir), "
        "e.g. {data: '@{clean}'} or {data.events.path: '@{clean}/events'}.",
    )
    after: list[str] = Field(
        default_factory=list, description="Extra stages that must run first (refs add theirs)."
    )
    enabled: bool = Field(True, description="False skips the stage (and references to it are errors).")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,40}", v):
            raise ValueError(f"stage name {v!r}: use 1-40 letters, digits, _ or - (it names directories)")
        return v

    def refs(self) -> set[str]:
        """Stages this one reads (``@{name}`` in overrides) plus ``after``."""
        found: set[str] = set(self.after)

        def walk(v: Any) -> None:
            if isinstance(v, str):
                found.update(REF.findall(v))
            elif isinstance(v, dict):
                for x in v.values():
                    walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)

        walk(self.overrides)
        return found


class GateConfig(StrictModel):
    """A check on a stage's report.json; a failed gate stops the pipeline with the reason."""

    name: str = Field(..., description="Gate name in the report.")
    kind: Literal[
        "data_contract",
        "reconciliation",
        "data_loss",
        "metric_min",
        "champion_challenger",
        "compression",
        "ope_no_drop",
    ] = Field(
        ...,
        description="data_contract: the stage succeeded and `key` (violations) is empty; reconciliation: `key` is "
        "true (rows in = clean + quarantined + duplicates); data_loss: the clean stage's data-loss verdict "
        "(`key`, default data_gate: quarantined and null shares within the clean config's max_quarantine_fraction "
        "and max_null_fraction, judged by the same function); metric_min: a metric >= min; "
        "champion_challenger: the challenger "
        "beats production with a significant paired difference; compression (advisory: never stops the "
        "pipeline): a compress stage's variant (`model`, default its fastest promotable one) kept its quality "
        "within the compress config's quality.max_relative_drop, else it is not promoted, with the reason; "
        "ope_no_drop: an `ope` stage predicts no "
        "significant CTR drop of the challenger vs the logged policy (CI upper end >= logged CTR x (1 - max_drop)).",
    )
    stage: str = Field(..., description="Stage whose report the gate reads (checked right after it runs).")
    key: str | None = Field(
        None,
        description="Dotted key in the report (default: contract_violations / reconciled / data_gate / "
        "metrics.<model>.<metric>).",
    )
    model: str | None = Field(
        None,
        description="metric_min / champion_challenger: the model name in an evaluate report; compression: the "
        "variant (e.g. onnx-int8; default: the fastest promotable one).",
    )
    metric: str | None = Field(None, description="Metric name (default: the report's primary_metric).")
    min: float | None = Field(None, description="metric_min: the lowest acceptable value.")
    alpha: float = Field(
        0.05, gt=0, lt=1, description="champion_challenger: significance level of the paired test."
    )
    test: Literal["p_permutation", "p_ttest", "p_bootstrap"] = Field(
        "p_permutation",
        description="champion_challenger: which paired p-value of the evaluate report decides.",
    )
    min_improvement: float = Field(
        0.0, ge=0, description="champion_challenger: the mean difference must also exceed this."
    )

    estimator: Literal["ips", "snips", "dm", "dr"] = Field(
        "snips", description="ope_no_drop: which off-policy estimate of the ope report decides."
    )
    max_drop: float = Field(
        0.0, ge=0, lt=1, description="ope_no_drop: tolerated relative CTR drop before the CI must clear it."
    )

    @model_validator(mode="after")
    def _check(self) -> GateConfig:
        if self.kind == "metric_min" and self.min is None:
            raise ValueError(f"gate {self.name!r}: kind metric_min needs min: <lowest acceptable value>")
        if self.kind == "champion_challenger" and not self.model:
            raise ValueError(
                f"gate {self.name!r}: champion_challenger needs model: <challenger name in the evaluate config>"
            )
        return self


class ServeDeployConfig(StrictModel):
    """Bring the promoted version live (Ray Serve, in-place update: no downtime)."""

    config: str = Field(
        ..., description="Serve config (configs/serve/*.yaml) whose arms serve the promoted index."
    )
    arm: str | None = Field(
        None,
        description="Only this arm gets the promoted index; the others keep their artifacts (default: every arm).",
    )
    port: int | None = Field(None, ge=1, le=65535, description="HTTP port (default: the serve config's).")
    smoke_query: str | None = Field(
        "game", description="A /search query sent after deploying (None = no check)."
    )


class DeployConfig(StrictModel):
    """Register the index (+ model) as a registry version; promote it when every gate passed; serve it."""

    index_stage: str = Field(..., description="Stage whose output is the serving index (the index job).")
    model_stage: str | None = Field(
        None, description="Stage that trained the model (its `artifacts.model`), if any."
    )
    compress_gate: str | None = Field(
        None,
        description="compression gate whose compress stage's variants (one report row each) are recorded with the "
        "version; when it passed, its variant is the version's serving variant (recsys.serving_variant).",
    )
    champion_gate: str | None = Field(
        None,
        description="champion_challenger gate whose challenger spec is recorded with the version "
        "(next run's champion).",
    )
    promote: bool = Field(
        True, description="Promote to production when every gate passed (False: staging only)."
    )
    serve: ServeDeployConfig | None = Field(
        None, description="Deploy to Ray Serve after promotion (None = registry only)."
    )


class PipelineConfig(JobConfig):
    """Raw logs to a promoted, monitored service: stages, quality gates, registry, lineage; resumable."""

    stages: list[StageConfig] = Field(
        ..., min_length=1, description="Stages in run order (each an existing job)."
    )
    gates: list[GateConfig] = Field(
        default_factory=list, description="Quality gates checked after their stage."
    )
    deploy: DeployConfig | None = Field(
        None, description="Registry + serving step after the last stage (None = stop there)."
    )
    registry: RegistryConfig = Field(
        default_factory=RegistryConfig, description="MLflow tracking and model registry."
    )
    track: bool = Field(True, description="Log every stage's params, metrics and report to MLflow.")
    from_stage: str | None = Field(
        None,
        description="Resume: rerun this stage and everything after it; earlier stages come from their cached outputs.",
    )
    force: bool = Field(False, description="Rerun every stage even when its inputs and config are unchanged.")
    pushgateway: str | None = Field(
        None, description="Pushgateway (host:9091) for the pipeline gauges (None = textfile only)."
    )

    @model_validator(mode="after")
    def _graph(self) -> PipelineConfig:
        names = [s.name for s in self.stages]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"stages: names {dup} are used twice; give each stage a unique name")
        enabled = {s.name for s in self.stages if s.enabled}
        for i, s in enumerate(self.stages):
            if not s.enabled:
                continue
            for ref in sorted(s.refs()):
                if ref not in names[:i]:
                    raise ValueError(
                        f"stage {s.name!r} reads @{{{ref}}} but no earlier stage is named {ref!r} "
                        f"(earlier: {names[:i]}); reorder the stages or fix the name"
                    )
                if ref not in enabled:
                    raise ValueError(f"stage {s.name!r} reads @{{{ref}}} but stage {ref!r} is disabled")
        for g in self.gates:
            if g.stage not in enabled and not (g.kind == "compression" and g.stage in names):
                # an opt-in compress stage (enabled: false) keeps its advisory gate: skipped while disabled
                raise ValueError(
                    f"gate {g.name!r}: stage {g.stage!r} is not an enabled stage ({sorted(enabled)})"
                )
        if self.from_stage and self.from_stage not in enabled:
            raise ValueError(f"from_stage {self.from_stage!r} is not an enabled stage; use one of {names}")
        if self.deploy:
            for key in ("index_stage", "model_stage"):
                v = getattr(self.deploy, key)
                if v and v not in enabled:
                    raise ValueError(f"deploy.{key} {v!r} is not an enabled stage ({sorted(enabled)})")
            gates = {g.name: g for g in self.gates}
            cg = self.deploy.champion_gate
            if cg and (cg not in gates or gates[cg].kind != "champion_challenger"):
                raise ValueError(f"deploy.champion_gate {cg!r} must name a champion_challenger gate")
            comp = self.deploy.compress_gate
            if comp and (comp not in gates or gates[comp].kind != "compression"):
                raise ValueError(f"deploy.compress_gate {comp!r} must name a gate of kind compression")
        return self
