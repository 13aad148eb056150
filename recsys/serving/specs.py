"""Typed values the app builder hands the Ingress and the per-arm deployments (frozen, picklable:
they cross into Serve replicas). Built from the validated ``ServeArgs`` by ``ServeArgs.arm_spec``
/ ``ServeArgs.ingress_settings``; the pydantic config keeps every default."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from recsys.search.settings import (
    PersonalizeSettings,
    RerankSettings,
    ResponseCacheSettings,
    RetrievalSettings,
    RulesSettings,
)
from recsys.serving.policy import ServingPolicy


@dataclass(frozen=True)
class BatchingSettings:
    """The Reranker's @serve.batch settings (sent as user_config: changing them reloads nothing)."""

    batching: bool
    max_batch_size: int
    batch_wait_timeout_s: float
    eager_when_idle: bool


@dataclass(frozen=True)
class RecommendSettings:
    model: str | None  # SequentialRecommender directory; None = similarity to recent items' embeddings
    candidates: int
    diversity: float
    max_per_category: int | None
    history_items: int


@dataclass(frozen=True)
class StageThreads:
    """torch intra-op threads of each stage's replica (None = the replica's CPU share)."""

    retriever: int | None
    reranker: int | None
    personalizer: int | None
    recommender: int | None


@dataclass(frozen=True)
class ArmSpec:
    """One A/B arm, resolved: the index it serves and every stage's settings."""

    name: str
    artifacts: str
    version: str
    registry: dict[str, Any] | None  # {model_name, alias, version} of an arm served from the registry
    retrieval: RetrievalSettings
    rerank: RerankSettings
    batching: BatchingSettings
    personalize: PersonalizeSettings
    recommend: RecommendSettings
    threads: StageThreads
    response_cache: ResponseCacheSettings
    rules: RulesSettings | None = None  # merchandising rules; None = none
    policy: ServingPolicy = ServingPolicy()  # the order served (deterministic unless configured)
    catalog: dict[str, Any] | None = None  # the live catalog's log to follow (CatalogArgs.follow_config)

    def user_config(self) -> dict[str, Any]:
        """What a deployment's reconfigure loads (the index version) and /healthz reports (registry)."""
        out = {"version": self.version, **({"registry": self.registry} if self.registry else {})}
        return {**out, "catalog": self.catalog} if self.catalog else out

    def reranker_user_config(self) -> dict[str, Any]:
        return {**self.user_config(), **asdict(self.batching)}


@dataclass(frozen=True)
class IngressSettings:
    weights: dict[str, float]  # arm -> share of users
    salt: str
    api_key_env: str | None
    api_key_sha256: str | None
    max_body_bytes: int
    catalog_token_env: str | None = None  # /catalog/*: None = the live catalog is off
    catalog_token_sha256: str | None = None
    catalog_max_items: int = 1000
