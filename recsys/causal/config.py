"""Configs of the causal jobs (propensity, ope): the logs they read or the synth study they run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recsys.config import JobConfig, StrictModel
from recsys.config.types import InputPath
from recsys.data.config import ClickLogSection


class StudySection(StrictModel):
    """Validation against a known truth: draw ``seeds`` synthetic click logs in-process and compare."""

    click_log: ClickLogSection = Field(default_factory=ClickLogSection, description="What each seed draws.")
    seeds: int = Field(
        1, ge=1, description="Independent logs (seed, seed+1, ...): coverage is counted over them."
    )


class PropensityConfig(JobConfig):
    """Config of the propensity job."""

    logs: InputPath | None = Field(
        None,
        description="A click-log directory (impressions/, candidates/), an impressions Parquet path, or the Serve "
        "app's feedback_dir (impressions logged with policy_id / propensity).",
    )
    candidates: InputPath | None = Field(
        None,
        description="Candidates with features f0.. (default: <logs>/candidates); regression-EM's features.",
    )
    study: StudySection | None = Field(
        None, description="Instead of `logs`: validate on synthetic logs with known examination."
    )
    estimators: list[Literal["intervention", "regression_em"]] = Field(
        ["intervention", "regression_em"],
        min_length=1,
        description="intervention: from shuffle_topk impressions; regression_em: from all other impressions.",
    )
    default: Literal["intervention", "regression_em"] | None = Field(
        None, description="Whose curve is written as `examination` (default: the first estimator)."
    )
    depth: int = Field(10, ge=2, description="Positions estimated (1..depth).")
    relevance_model: Literal["pair", "regression"] = Field(
        "regression", description="Regression-EM's relevance: per (query, doc), or logistic in the features."
    )
    em_iters: int = Field(300, ge=1, description="EM iterations (bootstrap refits run half, warm-started).")
    n_bootstrap: int = Field(200, ge=0, description="Intervention bootstrap resamples (over sessions).")
    em_bootstrap: int = Field(30, ge=0, description="Regression-EM bootstrap refits (each a full EM).")
    confidence: float = Field(0.95, gt=0, lt=1, description="CI level.")

    @model_validator(mode="after")
    def _source(self) -> PropensityConfig:
        if (self.logs is None) == (self.study is None):
            raise ValueError(
                "propensity needs exactly one of `logs` (a click-log path) or `study` (synthetic)"
            )
        if self.default is not None and self.default not in self.estimators:
            raise ValueError(f"default {self.default!r} is not in estimators {self.estimators}")
        return self


class CandidateSection(StrictModel):
    """The candidate ranker to evaluate: its score per (query_id, item_id)."""

    path: InputPath | None = Field(
        None, description="Parquet with query_id, item_id and the score column (default: <logs>/candidates)."
    )
    score_column: str = Field("candidate_score", description="Column holding the candidate's score.")


class OpeConfig(JobConfig):
    """Config of the ope job."""

    logs: InputPath | None = Field(
        None,
        description="A click-log directory (impressions/ with propensity), an impressions Parquet path, or the "
        "Serve app's feedback_dir (a stochastic arm's impressions carry propensity).",
    )
    candidate: CandidateSection = Field(default_factory=CandidateSection, description="The ranker evaluated.")
    propensities: InputPath | None = Field(
        None,
        description="propensities.json of the propensity job (examination for DM / DR); None = estimate by "
        "regression-EM (pair model) on the same logs.",
    )
    study: StudySection | None = Field(
        None, description="Instead of `logs`: validate on synthetic logs whose candidate CTR is known."
    )
    depth: int = Field(
        10, ge=1, description="Slots evaluated (CTR = expected clicks per slot in the top depth)."
    )
    clip: float | None = Field(
        None, gt=1, description="Clip importance weights at this value (None = no clipping)."
    )
    max_excluded_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Fail when more impressions than this share are unusable (no propensity...).",
    )
    n_bootstrap: int = Field(200, ge=0, description="Bootstrap resamples (over sessions).")
    confidence: float = Field(0.95, gt=0, lt=1, description="CI level.")

    @model_validator(mode="after")
    def _source(self) -> OpeConfig:
        if (self.logs is None) == (self.study is None):
            raise ValueError("ope needs exactly one of `logs` (a click-log path) or `study` (synthetic)")
        if self.study is not None and self.study.click_log.policy == "deterministic":
            raise ValueError("ope study: click_log.policy must be stochastic (plackett_luce or shuffle_topk)")
        return self


class UltrConfig(JobConfig):
    """Config of the ultr job: naive / IPS / DLA / oracle rankers trained on synthetic click logs, NDCG@k
    against the known relevance (recsys.causal.ultr)."""

    click_log: ClickLogSection = Field(
        default_factory=ClickLogSection,
        description="What each seed draws (an ordinary, position-biased log).",
    )
    seeds: int = Field(
        3, ge=1, description="Independent logs (seed, seed+1, ...); queries pooled for the tests."
    )
    methods: list[Literal["naive", "ips", "dla", "oracle"]] = Field(
        ["naive", "ips", "dla", "oracle"],
        min_length=1,
        description="Trainings compared (naive and oracle give the gap).",
    )
    propensities: InputPath | None = Field(
        None,
        description="propensities.json (the propensity job's) for IPS; None = the log's true examination curve.",
    )
    test_share: float = Field(0.5, gt=0, lt=1, description="Share of queries held out for NDCG.")
    k: int = Field(10, ge=1, description="NDCG cut-off.")
    steps: int = Field(300, ge=1, description="Full-batch Adam steps per training.")
    lr: float = Field(0.05, gt=0, description="Adam learning rate.")
    hidden: int = Field(
        0, ge=0, description="Scorer: 0 = linear in the features, else an MLP with this hidden width."
    )
    propensity_clip: float = Field(
        0.01, gt=0, le=1, description="IPS / DLA: propensities below this are clipped."
    )
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads (a shared 2-core machine: 1).")
