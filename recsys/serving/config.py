"""Typed args of the Serve app builder (``args:`` of an application in configs/serve/*.yaml).

Ray Serve validates ``args`` into ``ServeArgs`` before ``build_app`` runs, so a bad Serve config
fails at deploy time with the field named, never inside a replica.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Literal, overload

from pydantic import Field, field_validator, model_validator

from recsys.config import StrictModel
from recsys.config.base import reject_uri_credentials
from recsys.config.paths import anchor_runs, expand_env, is_uri, project_root
from recsys.online.config import CatalogArgs, OnlineStoreArgs
from recsys.search.rules import RuleSet
from recsys.search.settings import (
    PersonalizeSettings,
    PersonalizeWeights,
    QuerySettings,
    RankSettings,
    RerankSettings,
    ResponseCacheSettings,
    RetrievalSettings,
    RulesSettings,
)
from recsys.serving.policy import ServingPolicy
from recsys.serving.specs import ArmSpec, BatchingSettings, IngressSettings, RecommendSettings, StageThreads


@overload
def project_path(value: str) -> str: ...
@overload
def project_path(value: None) -> None: ...
def project_path(value: str | None) -> str | None:
    """Expand ${VARS}, put ``runs/...`` under RECSYS_RUNS_ROOT like job configs do, and anchor other
    relative paths at the project root (replicas may run in another working directory than the one
    `serve run` was started from)."""
    if value is None:
        return None
    value = anchor_runs(expand_env(value))
    if is_uri(value) or os.path.isabs(value):
        return value
    local = os.path.abspath(value)
    return local if os.path.exists(local) else str(project_root() / value)


Backend = Literal["auto", "torch", "onnx", "onnx-int8", "torch-int8"]


def _check_backend(path: str, backend: str, model_type: str, field: str) -> None:
    """Deploy-time check of a model directory against its backend (when the directory exists here: on a
    cluster the path may live only on the workers, and the replica checks it when it loads)."""
    from recsys.compress.variants import VariantError, check_model_backend

    try:
        check_model_backend(path, backend, model_type)
    except VariantError as e:
        raise ValueError(f"{field}: {e}") from None


DEPLOYMENTS = (
    "Ingress",
    "Retriever",
    "Reranker",
    "Personalizer",
    "Recommender",
    "FeedbackSink",
    "StateServer",
)


class AutoscalingArgs(StrictModel):
    """Ray Serve ``autoscaling_config`` of one deployment."""

    min_replicas: int = Field(1, ge=0, description="Replicas kept when idle.")
    initial_replicas: int | None = Field(
        None, ge=0, description="Replicas at deploy time (default min_replicas)."
    )
    max_replicas: int = Field(2, ge=1, description="Upper bound under load.")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Requests in flight per replica that autoscaling aims at."
    )
    upscale_delay_s: float = Field(
        5.0, ge=0, description="Load must stay high this long before adding replicas."
    )
    downscale_delay_s: float = Field(
        30.0, ge=0, description="Load must stay low this long before removing replicas."
    )
    metrics_interval_s: float = Field(2.0, gt=0, description="How often replicas report load.")
    look_back_period_s: float = Field(10.0, gt=0, description="Window averaged for decisions.")

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingArgs:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must be <= max_replicas")
        return self


class DeploymentArgs(StrictModel):
    """Resources and scaling of one deployment (every arm's copy of it)."""

    num_cpus: float = Field(0.25, ge=0, description="CPUs per replica (fractions share cores).")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (the reranker on a GPU cluster).")
    threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="torch intra-op threads per replica; None = the replica's CPU share rounded "
        "(at least 1). Above num_cpus trades throughput under load for latency at low load: a 0.2-CPU reranker on "
        "an idle 2-core node scores a request ~2x faster with threads: 2, while several busy replicas with 2 "
        "threads each oversubscribe the cores.",
    )
    max_ongoing_requests: int = Field(32, ge=1, description="Requests one replica takes at once.")
    autoscaling: AutoscalingArgs = Field(default_factory=AutoscalingArgs, description="autoscaling_config.")
    health_check_period_s: float = Field(10.0, gt=0, description="Seconds between health checks.")
    health_check_timeout_s: float = Field(
        60.0, gt=0, description="A check slower than this fails (model loads are not checks)."
    )
    graceful_shutdown_timeout_s: float = Field(
        20.0, ge=0, description="Time to drain requests when a replica stops."
    )
    max_surge_percent: int = Field(
        50,
        ge=0,
        le=100,
        description="Extra replicas (% of the current count, at least 1) started during a redeploy so "
        "old replicas serve until their replacements are ready; 0 = Ray's default, stop first (a window with no "
        "replica: requests wait, and those in a stopping replica past graceful_shutdown_timeout_s fail). Use 0 only "
        "where the resources cannot double, e.g. a GPU pool at its limit.",
    )

    def options(self) -> dict[str, Any]:
        auto = self.autoscaling.model_dump(exclude_none=True)
        return {
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "max_ongoing_requests": self.max_ongoing_requests,
            "autoscaling_config": auto,
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
            "max_surge_percent": self.max_surge_percent,
        }


class RetrievalArgs(StrictModel):
    """Hybrid retrieval: bi-encoder ANN top-N and BM25 top-N fused by weighted RRF."""

    ann_top_n: int = Field(100, ge=1, le=5000, description="Candidates from the ANN index.")
    bm25_top_n: int = Field(100, ge=0, le=5000, description="Candidates from BM25 (0 = dense only).")
    ann_weight: float = Field(
        1.0, ge=0, description="RRF weight of the dense ranking (0 = lexical only: the ANN is not searched)."
    )
    bm25_weight: float = Field(1.0, ge=0, description="RRF weight of the BM25 ranking.")
    rrf_k: float = Field(60.0, gt=0, description="RRF damping constant.")
    nprobe: int | None = Field(None, ge=1, description="IVF clusters visited (default: the index's).")
    ef_search: int | None = Field(None, ge=8, description="HNSW search list (default: the index's).")
    encoder: str | None = Field(None, description="Query encoder; default the index manifest's model.")
    encoder_backend: Backend = Field(
        "auto",
        description="How the query encoder runs: auto = what the directory holds (the index manifest's backend when "
        "`encoder` is unset); onnx / onnx-int8 / torch-int8 need a compressed bi-encoder variant "
        "(runs/compress/<scale>/variants/<kind>).",
    )
    max_length: int = Field(64, ge=8, le=512, description="Query token limit.")

    @model_validator(mode="after")
    def _encoder_backend(self) -> RetrievalArgs:
        if self.encoder is not None:
            _check_backend(
                self.encoder, self.encoder_backend, "bi_encoder", "retrieval.encoder / encoder_backend"
            )
        return self

    def settings(self, query_cache: int = 0) -> RetrievalSettings:
        return RetrievalSettings(
            ann_top_n=self.ann_top_n,
            bm25_top_n=self.bm25_top_n,
            ann_weight=self.ann_weight,
            bm25_weight=self.bm25_weight,
            rrf_k=self.rrf_k,
            nprobe=self.nprobe,
            ef_search=self.ef_search,
            encoder=self.encoder,
            encoder_backend=self.encoder_backend,
            max_length=self.max_length,
            query_cache=query_cache,
        )


class QueryArgs(StrictModel):
    """Query understanding before retrieval (docs/SEARCH_QUALITY.md); a request with ``exact: true`` skips it."""

    spelling: bool = Field(
        False, description="Correct words the catalog lacks (SymSpell over the index's title vocabulary)."
    )
    units: bool = Field(
        False, description="Sizes in the catalog's form: 0.5 inch / 1/2\" / 1/2 in -> 1/2 in."
    )
    synonyms: bool = Field(False, description="Append the mined expansions of synonyms_path to the query.")
    synonyms_path: str | None = Field(
        None, description="JSON {word: [expansion, ...]} mined from judged pairs (recsys.search.synonyms)."
    )
    max_edit_distance: int = Field(2, ge=1, le=3, description="Largest spelling correction (edits).")
    min_word_length: int = Field(4, ge=2, le=20, description="Shorter words are never corrected.")

    @field_validator("synonyms_path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return project_path(v)

    @model_validator(mode="after")
    def _synonyms(self) -> QueryArgs:
        if self.synonyms and not self.synonyms_path:
            raise ValueError("query.synonyms: true needs query.synonyms_path (a mined synonyms JSON)")
        return self

    def settings(self) -> QuerySettings:
        return QuerySettings(
            spelling=self.spelling,
            units=self.units,
            synonyms=self.synonyms,
            max_edit_distance=self.max_edit_distance,
            min_word_length=self.min_word_length,
            synonyms_path=self.synonyms_path,
        )


class RankArgs(StrictModel):
    """The retriever's second phase (docs/SEARCH_QUALITY.md): ``blend`` keeps the RRF order and the hand-set
    rerank / personalize blend (catalogs without judgments); ``lambdarank`` re-orders every dense + BM25
    candidate with a LightGBM LambdaMART model trained on judged queries (``recsys run train_ranker``)."""

    kind: Literal["blend", "lambdarank"] = Field("blend", description="blend | lambdarank.")
    model: str | None = Field(None, description="lambdarank: the train_ranker job's model directory.")

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        return project_path(v)

    @model_validator(mode="after")
    def _needs_model(self) -> RankArgs:
        if self.kind == "lambdarank" and not self.model:
            raise ValueError("rank.kind lambdarank needs rank.model: runs/train_ranker/<name>/model")
        return self

    def settings(self) -> RankSettings:
        return RankSettings(kind=self.kind, model=self.model)


class RulesArgs(StrictModel):
    """Merchandising rules (docs/MERCHANDISING.md): boost / bury / pin / filter by query or category, from a
    YAML / JSON file that the Serve app re-reads when it changes (a broken new file keeps the old rules)."""

    path: str = Field(..., description="Rules file, e.g. configs/serve/rules/tiny.yaml.")
    poll_s: float = Field(1.0, ge=0, le=3600, description="Check the file's mtime at most this often.")

    @field_validator("path")
    @classmethod
    def _valid(cls, v: str) -> str:
        path = project_path(v)
        if not os.path.exists(path):
            raise ValueError(f"rules.path: {path} does not exist; create it (docs/MERCHANDISING.md)")
        RuleSet.load(path)  # checked at deploy time: a bad file names the rule and the field
        return path

    def settings(self) -> RulesSettings:
        return RulesSettings(path=self.path, poll_s=self.poll_s)


class CacheArgs(StrictModel):
    """LRU caches of /search (every arm has its own; 0 = off). Entries are keyed by the index version (and
    the reranker settings), so a hot reload never serves a stale answer; they are also dropped on reload."""

    responses: int = Field(
        1024,
        ge=0,
        le=1_000_000,
        description="Whole /search answers kept per arm in each Ingress replica, keyed by the normalized "
        "request (query, k, page, filters, user, country), the index version and the reranker; 0 = off.",
    )
    response_ttl_s: float = Field(
        0.0,
        ge=0,
        description="Seconds a cached answer lives (0 = until evicted or the index version changes).",
    )
    query_embeddings: int = Field(
        4096,
        ge=0,
        le=10_000_000,
        description="Query embeddings kept per Retriever replica, keyed by (encoder, query text); 0 = off.",
    )

    @model_validator(mode="after")
    def _ttl_needs_cache(self) -> CacheArgs:
        if self.response_ttl_s > 0 and self.responses == 0:
            raise ValueError(
                "cache.response_ttl_s is set but cache.responses is 0 (response cache off): "
                "set cache.responses > 0 or drop response_ttl_s"
            )
        return self

    def response_settings(self) -> ResponseCacheSettings:
        return ResponseCacheSettings(entries=self.responses, ttl_s=self.response_ttl_s)


class RerankArgs(StrictModel):
    """The reranker over the top fused candidates."""

    model: str | None = Field(
        None,
        description="A trained CrossEncoder directory (runs/train/.../model) or a compressed variant of one "
        "(runs/compress/<scale>/variants/<kind>, see `backend`); null = rescore the candidates with the retrieval "
        "bi-encoder's cosine.",
    )
    backend: Backend = Field(
        "auto",
        description="How `model` runs: torch (a train-job directory), onnx (ONNX Runtime fp32, graph-optimized), "
        "onnx-int8 (ONNX Runtime dynamic int8: the fastest on CPU), torch-int8 (torch.ao dynamic int8); auto = what "
        "the directory holds. A backend that does not match the directory fails at deploy time naming the fix. "
        "ONNX Runtime uses the Reranker's `threads` as its intra-op threads.",
    )
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto",
        description="torch backend on a GPU replica: auto = fp16; fp32 | fp16 | bf16. CPU replicas need fp32/auto.",
    )
    pad_to_multiple_of: int = Field(
        0,
        ge=0,
        le=512,
        description="Static-shape buckets: each scoring pass pads its token length up to a multiple of this "
        "(e.g. 16 with torch_compile or CUDA graphs: few shapes to compile); 0 = pad to the pass's longest pair "
        "only. Passes always group pairs of similar token length.",
    )
    torch_compile: bool = Field(
        False,
        description="torch.compile the cross-encoder's encoder (GPU path; pair with pad_to_multiple_of so shapes "
        "repeat; the first requests of each shape pay the compile).",
    )
    top_n: int = Field(50, ge=1, le=1000, description="Candidates reranked per request.")
    batching: bool = Field(
        True, description="@serve.batch dynamic batching (false: one request per forward pass)."
    )
    max_batch_size: int = Field(16, ge=1, le=1024, description="Requests per batched forward pass.")
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=5, description="Longest wait for a batch to fill.")
    eager_when_idle: bool = Field(
        True,
        description="A request that finds the replica idle is scored at once "
        "instead of waiting batch_wait_timeout_s for company; requests that arrive "
        "while others are in flight are batched.",
    )
    max_length: int = Field(96, ge=8, le=512, description="Token limit of query + item text.")
    weight: float = Field(
        1.0, ge=0, le=1, description="Share of the reranker score in relevance (rest: fused retrieval score)."
    )

    def settings(self) -> RerankSettings:
        return RerankSettings(
            model=self.model,
            max_length=self.max_length,
            top_n=self.top_n,
            weight=self.weight,
            backend=self.backend,
            precision=self.precision,
            pad_to_multiple_of=self.pad_to_multiple_of,
            torch_compile=self.torch_compile,
        )

    def batching_settings(self) -> BatchingSettings:
        return BatchingSettings(
            batching=self.batching,
            max_batch_size=self.max_batch_size,
            batch_wait_timeout_s=self.batch_wait_timeout_s,
            eager_when_idle=self.eager_when_idle,
        )

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        return project_path(v)

    @model_validator(mode="after")
    def _model_backend(self) -> RerankArgs:
        if self.model is None:
            if self.backend not in ("auto", "torch"):
                raise ValueError(
                    f"rerank.backend={self.backend!r} but rerank.model is unset (the bi-encoder fallback): set "
                    "rerank.model to a cross-encoder variant directory, or drop backend"
                )
            return self
        _check_backend(self.model, self.backend, "cross_encoder", "rerank.model / rerank.backend")
        return self


class PersonalizeArgs(StrictModel):
    """Weights of the personalised score: relevance blended with the user's features."""

    relevance: float = Field(1.0, ge=0, description="Weight of the (min-max normalised) relevance score.")
    category_affinity: float = Field(
        0.2, ge=0, description="Weight of the user's share of interactions in the item's category."
    )
    price_band: float = Field(
        0.1, ge=0, description="Weight of closeness of the item's price to the user's mean price."
    )
    recent_items: float = Field(
        0.15,
        ge=0,
        description="Weight of similarity to the user's recent items (sequential model or embeddings).",
    )
    country_popularity: float = Field(
        0.1, ge=0, description="Weight of the item's rank in the user's country's popular list."
    )
    popularity: float = Field(0.05, ge=0, description="Weight of global popularity (log-scaled).")
    sequential_model: str | None = Field(
        None, description="SequentialRecommender directory for recent-item scores; null = embeddings."
    )

    @field_validator("sequential_model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        return project_path(v)

    def settings(self) -> PersonalizeSettings:
        weights = PersonalizeWeights(
            relevance=self.relevance,
            category_affinity=self.category_affinity,
            price_band=self.price_band,
            recent_items=self.recent_items,
            country_popularity=self.country_popularity,
            popularity=self.popularity,
        )
        return PersonalizeSettings(weights=weights, sequential_model=self.sequential_model)


class RecommendArgs(StrictModel):
    """The recommender over a user's recent items."""

    model: str | None = Field(
        None, description="SequentialRecommender directory; null = similarity to recent items' embeddings."
    )
    candidates: int = Field(200, ge=1, le=10_000, description="Candidates scored before post-processing.")
    diversity: float = Field(
        0.0, ge=0, le=1, description="MMR trade-off: 0 = pure relevance, 1 = pure novelty."
    )
    max_per_category: int | None = Field(None, ge=1, description="At most this many items per category.")
    history_items: int = Field(50, ge=1, le=1000, description="Most recent history items used.")

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        return project_path(v)

    def settings(self) -> RecommendSettings:
        return RecommendSettings(
            model=self.model,
            candidates=self.candidates,
            diversity=self.diversity,
            max_per_category=self.max_per_category,
            history_items=self.history_items,
        )


class RegistryRef(StrictModel):
    """An arm served from the model registry: the index of the version holding ``alias``, resolved
    when the app is built (deploy, redeploy after `recsys models promote|rollback`)."""

    alias: str = Field(
        "production", min_length=1, description="Alias (production, staging, previous) or a version number."
    )
    model_name: str = Field(
        "recsys", min_length=1, description="Registered model name (the pipeline's registry.model_name)."
    )
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; None = MLFLOW_TRACKING_URI if set, else the embedded "
        "sqlite:///${RECSYS_RUNS_ROOT}/mlflow/mlflow.db that the pipeline registers into.",
    )

    @field_validator("tracking_uri")
    @classmethod
    def _no_credentials(cls, v: str | None) -> str | None:
        return reject_uri_credentials(v, "registry.tracking_uri", "in the app's runtime_env")


class PolicyArgs(StrictModel):
    """The arm's serving policy (docs/CAUSAL.md): deterministic, or a stochastic first page whose items carry
    the propensities that counterfactual evaluation and unbiased learning to rank need."""

    kind: Literal["deterministic", "shuffle_topk", "plackett_luce"] = Field(
        "deterministic",
        description="deterministic: the ranking as is; shuffle_topk: the top top_k in random order; "
        "plackett_luce: the page sampled from softmax(score / temperature) over the top top_k.",
    )
    temperature: float = Field(1.0, gt=0, description="plackett_luce: in the units of the response's score.")
    top_k: int = Field(10, ge=2, le=1000, description="Ranked items the page is sampled from (>= k used).")
    n_samples: int = Field(
        2000, ge=100, description="plackett_luce: Monte Carlo draws per request for the logged propensities."
    )
    seed: int = Field(0, description="With the request_id, seeds each request's sampling (replayable).")

    def settings(self) -> ServingPolicy:
        return ServingPolicy(self.kind, self.temperature, self.top_k, self.n_samples, self.seed)


class ArmArgs(StrictModel):
    """One A/B arm: a full index version (and models) served side by side with the others; either
    ``artifacts`` (+ ``version``) or ``registry``."""

    name: str = Field(..., description="Arm label (letters, digits, _ ; returned in responses and metrics).")
    weight: float = Field(1.0, ge=0, description="Share of users (normalised over arms).")
    artifacts: str | None = Field(
        None, description="Index output directory (holds `latest` and version dirs)."
    )
    version: str = Field(
        "latest",
        description="Index version (a directory under artifacts, or latest). Changing it in args redeploys "
        "the arm (rolling, with surge); an in-place reload without restarts is a Serve-config user_config "
        "override (docs/OPERATIONS.md).",
    )
    registry: RegistryRef | None = Field(
        None,
        description="Serve the registry version holding an alias instead of artifacts/version, e.g. "
        "{alias: production}.",
    )
    retrieval: RetrievalArgs | None = Field(None, description="Overrides the app's retrieval args.")
    rerank: RerankArgs | None = Field(None, description="Overrides the app's rerank args.")
    personalize: PersonalizeArgs | None = Field(None, description="Overrides the app's personalize args.")
    query: QueryArgs | None = Field(None, description="Overrides the app's query-understanding args.")
    rank: RankArgs | None = Field(None, description="Overrides the app's second-phase ranker.")
    recommend: RecommendArgs | None = Field(None, description="Overrides the app's recommend args.")
    rules: RulesArgs | None = Field(None, description="Overrides the app's merchandising rules.")
    policy: PolicyArgs | None = Field(None, description="Overrides the app's serving policy.")

    @field_validator("artifacts")
    @classmethod
    def _artifacts(cls, v: str | None) -> str | None:
        return project_path(v)

    @model_validator(mode="after")
    def _source(self) -> ArmArgs:
        if self.registry is not None and ({"artifacts", "version"} & self.model_fields_set):
            raise ValueError(
                f"arm {self.name!r}: give either registry (the alias names the index) or "
                "artifacts/version, not both"
            )
        if self.registry is None and self.artifacts is None:
            raise ValueError(
                f"arm {self.name!r}: needs artifacts (an index output directory such as runs/index/tiny) "
                "or registry: {alias: production}"
            )
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_]{1,32}", v):
            raise ValueError(
                "arm name must be 1-32 letters, digits or _ (it names deployments and metric labels)"
            )
        return v


class ServeArgs(StrictModel):
    """Everything the app builder needs; shared sections apply to every arm unless the arm overrides."""

    arms: list[ArmArgs] = Field(..., min_length=1, description="A/B arms (one arm = no experiment).")
    ab_salt: str = Field(
        "recsys-ab",
        min_length=1,
        description="Salt of the sticky user -> arm hash; change it to re-randomise.",
    )
    api_key_env: str | None = Field(
        None, description="Env var holding the API key (read in the replica; never put keys in configs)."
    )
    api_key_sha256: str | None = Field(
        None, description="Alternatively the key's sha256 hex digest (safe to commit)."
    )
    feedback_dir: str = Field(
        "runs/feedback", description="Where feedback events are written (Parquet, partitioned by hour)."
    )
    feedback_flush_events: int = Field(
        500, ge=1, description="Flush the feedback buffer at this many events."
    )
    feedback_flush_s: float = Field(5.0, gt=0, description="... or after this many seconds.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Larger request bodies get 413.")
    retrieval: RetrievalArgs = Field(default_factory=RetrievalArgs, description="Hybrid retrieval.")
    rerank: RerankArgs = Field(default_factory=RerankArgs, description="Reranker.")
    personalize: PersonalizeArgs = Field(default_factory=PersonalizeArgs, description="Personalizer.")
    query: QueryArgs = Field(
        default_factory=QueryArgs,
        description="Query understanding (spelling, units, synonyms); off by default.",
    )
    rank: RankArgs = Field(
        default_factory=RankArgs, description="Second phase: blend (RRF + hand-set weights) or lambdarank."
    )
    recommend: RecommendArgs = Field(default_factory=RecommendArgs, description="Recommender.")
    rules: RulesArgs | None = Field(
        None, description="Merchandising rules file (hot-reloaded); none by default (docs/MERCHANDISING.md)."
    )
    policy: PolicyArgs = Field(
        default_factory=PolicyArgs,
        description="Serving policy of /search and /recommend first pages (default deterministic; docs/CAUSAL.md).",
    )
    cache: CacheArgs = Field(
        default_factory=CacheArgs, description="/search response and query-embedding caches."
    )
    online: OnlineStoreArgs = Field(
        default_factory=OnlineStoreArgs,
        description="The online user-state store that /feedback writes and every endpoint reads (docs/ONLINE.md).",
    )
    catalog: CatalogArgs = Field(
        default_factory=CatalogArgs,
        description="The live catalog: authenticated upserts / deletes applied without a rebuild (docs/ONLINE.md).",
    )
    deployments: dict[str, DeploymentArgs] = Field(
        default_factory=dict, description=f"Per-deployment resources: {', '.join(DEPLOYMENTS)}."
    )
    topology: Literal["split", "fused"] = Field(
        "split",
        description="split: every arm's Retriever, Reranker, Personalizer and Recommender are deployments "
        "of their own, each autoscaled (and the reranker batched) independently; a /search crosses four replicas. "
        "fused: the Ingress replica holds every arm's models and answers in-process (no hops between replicas: the "
        "lowest latency; scale and size `deployments.Ingress`, the other deployments' settings are unused).",
    )

    @field_validator("feedback_dir")
    @classmethod
    def _feedback(cls, v: str) -> str:
        return project_path(v)

    @field_validator("deployments")
    @classmethod
    def _known(cls, v: dict[str, DeploymentArgs]) -> dict[str, DeploymentArgs]:
        unknown = sorted(set(v) - set(DEPLOYMENTS))
        if unknown:
            raise ValueError(f"unknown deployment(s) {unknown}; use {list(DEPLOYMENTS)}")
        return v

    @model_validator(mode="after")
    def _arms(self) -> ServeArgs:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        if sum(a.weight for a in self.arms) <= 0:
            raise ValueError("at least one arm needs weight > 0")
        if self.catalog.enabled and self.online.backend == "off":
            raise ValueError("catalog.enabled needs the online store (its change log): set online.backend")
        return self

    def deployment(self, name: str) -> DeploymentArgs:
        return self.deployments.get(name, DeploymentArgs())

    def for_arm(self, arm: ArmArgs, section: str) -> Any:
        return getattr(arm, section) or getattr(self, section)

    def arm_spec(self, arm: ArmArgs, registry: dict[str, Any] | None = None) -> ArmSpec:
        """The typed spec of a resolved arm (``artifacts`` set: see ``targets.resolve_arms``). Fused, every
        stage runs in the Ingress replica and uses its threads setting (torch threads are per process)."""
        if arm.artifacts is None:
            raise ValueError(
                f"arm {arm.name!r} names no artifacts; resolve registry arms first (targets.resolve_arms)"
            )
        fused = self.topology == "fused"
        threads = StageThreads(
            *(
                self.deployment("Ingress" if fused else d).threads
                for d in ("Retriever", "Reranker", "Personalizer", "Recommender")
            )
        )
        rerank = self.for_arm(arm, "rerank")
        return ArmSpec(
            name=arm.name,
            artifacts=arm.artifacts,
            version=arm.version,
            registry=registry,
            retrieval=dataclasses.replace(
                self.for_arm(arm, "retrieval").settings(self.cache.query_embeddings),
                query=self.for_arm(arm, "query").settings(),
                rank=self.for_arm(arm, "rank").settings(),
            ),
            rerank=rerank.settings(),
            batching=rerank.batching_settings(),
            personalize=self.for_arm(arm, "personalize").settings(),
            recommend=self.for_arm(arm, "recommend").settings(),
            threads=threads,
            response_cache=self.cache.response_settings(),
            rules=None if (r := self.for_arm(arm, "rules")) is None else r.settings(),
            policy=self.for_arm(arm, "policy").settings(),
            catalog=self.catalog.follow_config(self.online),
        )

    def ingress_settings(self) -> IngressSettings:
        return IngressSettings(
            weights={a.name: a.weight for a in self.arms},
            salt=self.ab_salt,
            api_key_env=self.api_key_env,
            api_key_sha256=self.api_key_sha256,
            max_body_bytes=self.max_body_bytes,
            catalog_token_env=self.catalog.token_env if self.catalog.enabled else None,
            catalog_token_sha256=self.catalog.token_sha256 if self.catalog.enabled else None,
            catalog_max_items=self.catalog.max_items,
        )
