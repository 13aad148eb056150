"""Configs of the data jobs: inventory, clean, features, synth (fields documented; see docs/DATA.md)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, model_validator

from recsys.config.base import InputConfig, JobConfig, ModelConfig, StrictModel
from recsys.config.types import InputPath
from recsys.data.schema import EVENT_TYPES


class RulesConfig(StrictModel):
    """Row validation of the clean job; every rejection is quarantined with its reason."""

    event_types: list[str] = Field(
        list(EVENT_TYPES), description="Allowed event types (others: unknown_event_type)."
    )
    min_timestamp: dt.datetime | None = Field(
        None, description="Earliest valid event time (UTC); None = no bound."
    )
    max_timestamp: dt.datetime | None = Field(
        None, description="Latest valid event time (UTC); None = now + max_future."
    )
    max_future_s: float = Field(
        86400.0, ge=0, description="Clock-skew tolerance: events later than now + this are rejected."
    )
    max_price: float = Field(
        1e6, gt=0, description="Prices above this are absurd_price; negative prices are negative_price."
    )
    max_quantity: int = Field(100_000, gt=0, description="|quantity| above this is absurd_quantity.")
    allow_negative_quantity: bool = Field(
        False, description="Keep negative quantities (else negative_quantity unless a linked return)."
    )
    max_field_chars: int = Field(
        10_000, gt=0, description="Text fields longer than this are oversized_field."
    )
    bot_events_per_minute: int = Field(
        120, ge=0, description="More events than this by one user in one minute = bot_burst (0 = off)."
    )
    near_duplicate_s: float = Field(
        1.0,
        ge=0,
        description="Same user/item/event type within this many seconds = near_duplicate (0 = off).",
    )


class PIIConfig(StrictModel):
    """PII handling: salted keyed hashes (salt from the environment, never from config)."""

    hash_columns: list[str] = Field(
        default_factory=list, description="Id columns replaced by HMAC-SHA256 tokens, e.g. [user_id]."
    )
    scrub_text: bool = Field(
        True, description="Replace emails/phones/cards/names in free text by <kind:hash> tokens."
    )
    salt_env: str = Field("RECSYS_PII_SALT", description="Environment variable holding the salt.")


class ReturnsConfig(StrictModel):
    """Cancellations / returns (UCI 'C' invoices: negative quantities)."""

    order_id_prefix: str | None = Field(
        "C", description="Orders starting with this are cancellations (None = off)."
    )
    mode: Literal["link", "quarantine", "keep"] = Field(
        "link",
        description="link: event_type=return when the user bought the item before (else unmatched_return); "
        "quarantine: reject them; keep: leave as is.",
    )


class ExchangeConfig(StrictModel):
    """How the data jobs' keyed exchanges run."""

    engine: Literal["tasks", "ray_data"] = Field(
        "tasks",
        description="The clean job's exchange by user: tasks = plain Ray tasks that split each block by key "
        "as soon as it is read and one reduce task per partition (recsys.data.shuffle.by_key_streaming); ray_data = "
        "Ray Data's hash shuffle (repartition by key). partition_mb applies to tasks exchanges, the settings after "
        "it to ray_data ones.",
    )
    partition_mb: float = Field(
        128,
        gt=0,
        description="Target in-memory MiB of one reduce partition of a tasks exchange when `partitions` is "
        "not set (Ray Data's block size): rows are hashed into buckets, then consecutive buckets are grouped into "
        "partitions of about this size (at least 2 per CPU). Reduce time grows faster than its input: on 10M events "
        "with 2 CPUs, 4 partitions of ~300 MiB took 36 s of reduce wall time, 32 of ~40 MiB 11 s; but each partition "
        "is a file of the clean output, and 64 small ones made the features part of the ETL benchmark 2-3x slower.",
    )

    input_batch_mb: int = Field(
        64,
        ge=1,
        description="Input MiB one shuffle-map task partitions. Ray Data's default (1 GiB) buffers all "
        "of a 2-core run's input into 1-2 map tasks that run after the read; smaller batches partition while "
        "reading, on every CPU.",
    )
    compression: Literal["none", "lz4", "zstd"] = Field(
        "lz4",
        description="Codec of the shuffle's intermediate shards: none (one node: no network to save), "
        "lz4 (cheap), zstd (Ray's default: smallest, most CPU).",
    )
    reserve_per_operator: bool = Field(
        True,
        description="Ray Data's per-operator resource reservation (its default). On, each operator is held to "
        "its reserved share while others run: it keeps the clean job's read from starving its shuffle (off, "
        "the clean part of the 10M benchmark took 42 s instead of 30-38 s), "
        "but ran the features job's single-operator passes "
        "one task at a time on 2 CPUs, so the features job defaults to off.",
    )


class CleanConfig(JobConfig):
    """Validate, quarantine, deduplicate, normalize, hash PII and sessionize raw logs into canonical Parquet."""

    input: InputConfig = Field(..., description="What to clean (a preset gives all its tables).")
    more_inputs: list[InputConfig] = Field(
        default_factory=list, description="Other tables of a generic set (each with input.table)."
    )
    rules: RulesConfig = Field(default_factory=RulesConfig, description="Row validation.")
    pii: PIIConfig = Field(default_factory=PIIConfig, description="PII hashing.")
    returns: ReturnsConfig = Field(default_factory=ReturnsConfig, description="Cancellation handling.")
    session_gap_minutes: float = Field(30.0, gt=0, description="Inactivity gap that starts a new session.")
    lowercase_queries: bool = Field(True, description="Lower-case query text (titles keep their case).")
    partitions: int | None = Field(
        None,
        ge=1,
        description="Fixed partition count of the per-user exchange (None = sized "
        "from the data: exchange.partition_mb; with exchange.engine ray_data, 2 x cluster CPUs).",
    )
    exchange: ExchangeConfig = Field(
        default_factory=ExchangeConfig, description="Shuffle settings of the exchanges."
    )
    limit: int | None = Field(
        None,
        ge=1,
        description="Read only the first this many rows per table (smoke runs; the same rows every run).",
    )
    max_quarantine_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Data-loss gate: the job fails (after writing its outputs) when a table quarantines more "
        "than this share of its input rows (duplicates are not counted); the error names the top reasons.",
    )
    max_null_fraction: dict[str, float] = Field(
        default_factory=lambda: {"user_id": 0.05, "item_id": 0.05},
        description="Data-loss gate: canonical column -> the largest share of a table's input rows where it "
        "may be null (null tokens such as NA included; checked in the tables that have the column).",
    )

    @model_validator(mode="after")
    def _null_bounds(self) -> CleanConfig:
        bad = {c: v for c, v in self.max_null_fraction.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"max_null_fraction: shares must be in [0, 1], got {bad}")
        return self


class QualityRule(StrictModel):
    """One rule of the quality contract, e.g. {metric: null_rate, column: user_id, max: 0.01}.

    null_rate counts null tokens left as values (input.null_values, e.g. 'NA') as null; parse_rate is
    the share of a column's non-null source values that convert to its canonical type (both over the
    full pass, see recsys.data.inventory)."""

    metric: Literal[
        "null_rate",
        "duplicate_rate",
        "freshness_days",
        "min_rows",
        "distinct",
        "orphan_rate",
        "pii_rate",
        "parse_rate",
    ] = Field(..., description="What to check.")
    table: str = Field("events", description="Table the rule applies to.")
    column: str | None = Field(None, description="Column (null_rate, distinct, pii_rate, parse_rate).")
    max: float | None = Field(None, description="Upper bound (inclusive).")
    min: float | None = Field(None, description="Lower bound (inclusive).")
    severity: Literal["error", "warn"] = Field(
        "error",
        description="error: a violation fails the job; warn: it is reported and makes the verdict 'review needed'.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> QualityRule:
        if self.max is None and self.min is None:
            raise ValueError(
                "a quality rule needs max or min, e.g. {metric: null_rate, column: user_id, max: 0.01}"
            )
        if self.metric in ("null_rate", "distinct", "pii_rate", "parse_rate") and not self.column:
            raise ValueError(f"metric {self.metric} needs column: NAME")
        return self

    def label(self) -> str:
        col = f"({self.table}.{self.column})" if self.column else f"({self.table})"
        bounds = " and ".join(
            b
            for b in (
                f">= {self.min}" if self.min is not None else "",
                f"<= {self.max}" if self.max is not None else "",
            )
            if b
        )
        return f"{self.metric}{col} {bounds}" + (" (warn)" if self.severity == "warn" else "")


# Checked when `contract` is empty, as warnings: key ids at most 5 % null (tokens included), times 98 % parsed.
DEFAULT_CONTRACT = (
    QualityRule(metric="null_rate", table="events", column="user_id", max=0.05, severity="warn"),
    QualityRule(metric="null_rate", table="events", column="item_id", max=0.05, severity="warn"),
    QualityRule(metric="parse_rate", table="events", column="timestamp", min=0.98, severity="warn"),
)


class InventoryConfig(JobConfig):
    """Profile a data set (schema, roles, stats, PII, integrity), check a quality contract, write JSON + HTML."""

    input: InputConfig = Field(
        ..., description="What to profile; without a preset/columns, roles are inferred."
    )
    more_inputs: list[InputConfig] = Field(default_factory=list, description="Other tables to profile.")
    contract: list[QualityRule] = Field(
        default_factory=list,
        description="Quality rules; the job fails naming each violated error rule. Empty = the default "
        "contract (DEFAULT_CONTRACT, warnings only, on the columns present): null_rate of events.user_id and "
        "events.item_id <= 0.05, parse_rate of events.timestamp >= 0.98.",
    )
    top_k: int = Field(10, ge=1, le=100, description="Top values per column.")
    bins: int = Field(30, ge=5, le=200, description="Histogram bins.")
    sample_rows: int = Field(
        20_000, ge=100, description="Rows sampled for role inference and text statistics."
    )
    now: dt.datetime | None = Field(None, description="Reference time for freshness (None = now).")
    limit: int | None = Field(None, ge=1, description="Profile only the first this many rows per table.")


class SplitConfig(StrictModel):
    """Train/valid/test splits (protocols of ../shared/data/README.md)."""

    protocol: Literal["loo", "time"] = Field(
        "loo", description="Split whose training part the features are computed from."
    )
    time_valid: float = Field(0.8, gt=0, lt=1, description="Time quantile where validation starts.")
    time_test: float = Field(0.9, gt=0, lt=1, description="Time quantile where test starts.")
    sequence_events: list[str] | None = Field(
        None, description="Event types in sequences (None = all but impression/search)."
    )
    min_sequence: int = Field(
        3, ge=3, description="Users with fewer items are kept in sequences but not in LOO splits."
    )

    @model_validator(mode="after")
    def _order(self) -> SplitConfig:
        if self.time_valid >= self.time_test:
            raise ValueError(
                f"split.time_valid ({self.time_valid}) must be < split.time_test ({self.time_test})"
            )
        return self


class EmbeddingConfig(StrictModel):
    """Transformer item-text embeddings through a Ray Data actor pool."""

    enabled: bool = Field(True, description="Compute item embeddings.")
    model: ModelConfig = Field(
        default_factory=ModelConfig, description="Encoder (packaged MiniLM by default)."
    )
    batch_size: int = Field(256, ge=1, description="Titles per encoder batch.")
    concurrency: int = Field(1, ge=1, description="Encoder actors.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor (0 = CPU).")
    max_items: int | None = Field(None, ge=1, description="Encode only this many items (smoke runs).")


class FeaturesConfig(JobConfig):
    """Splits (LOO + time), sequences, user/item/query/text features, segments, PCA, selection report."""

    data: InputPath = Field(..., description="Output dir of the clean job (runs/clean/<scale>).")
    split: SplitConfig = Field(default_factory=SplitConfig, description="Splits.")
    embeddings: EmbeddingConfig = Field(default_factory=EmbeddingConfig, description="Item text embeddings.")
    last_n: int = Field(20, ge=1, description="Length of last_items in user features.")
    prior_strength: float = Field(
        20.0, gt=0, description="Beta prior weight (pseudo-events) of smoothed rates."
    )
    recency_half_life_days: float = Field(
        14.0, gt=0, description="Half-life of recency-weighted category interest."
    )
    tfidf_terms: int = Field(8, ge=1, description="Top TF-IDF terms kept per item.")
    tfidf_max_features: int = Field(50_000, ge=100, description="TF-IDF vocabulary size.")
    segments: int = Field(8, ge=2, description="K-means user segments.")
    pca_components: int = Field(4, ge=1, description="PCA components of dense user features.")
    max_pairs_per_user: int = Field(
        20, ge=1, description="Item-to-item training pairs per user (sets without queries)."
    )
    partitions: int | None = Field(
        None,
        ge=1,
        description="Fixed partition count of the per-key exchanges (None = 2 x "
        "cluster CPUs for Ray Data's shuffles; the item exchange sized by exchange.partition_mb).",
    )
    exchange: ExchangeConfig = Field(
        default_factory=lambda: ExchangeConfig(reserve_per_operator=False),
        description="Shuffle settings of the exchanges (reserve_per_operator off by default).",
    )


class ClickLogSection(StrictModel):
    """Synthetic click logs with known examination and relevance (``recsys.causal.clicklog``): the
    position-based click model over feature-described query/candidate lists, logged by a chosen policy."""

    sessions: int = Field(100_000, ge=10, description="Logged sessions (each shows `depth` impressions).")
    queries: int = Field(1000, ge=1, description="Distinct queries (each with `candidates` documents).")
    candidates: int = Field(20, ge=2, description="Candidate documents per query.")
    depth: int = Field(10, ge=1, description="Positions shown per session (<= candidates).")
    features: int = Field(
        8, ge=1, description="Features per (query, document); relevance is logistic in them."
    )
    users: int = Field(10_000, ge=1, description="Users the sessions are spread over.")
    examination_decay: float = Field(
        1.0, gt=0, description="Examination at 0-based position p = 1/(p+1)^decay."
    )
    logger_quality: float = Field(
        0.5, ge=0, le=1, description="Share of the true relevance direction in the logging ranker's weights."
    )
    candidate_quality: float = Field(
        0.85, ge=0, le=1, description="Same, for the candidate ranker (`candidate_score` column)."
    )
    session_noise: float = Field(
        0.5,
        ge=0,
        description="Std of per-session noise on the logger's scores (must be 0 for plackett_luce).",
    )
    policy: Literal["deterministic", "shuffle_topk", "plackett_luce"] = Field(
        "deterministic", description="Logging policy (recsys.causal.policies)."
    )
    temperature: float = Field(1.0, gt=0, description="plackett_luce: softmax temperature over the scores.")
    shuffle_k: int = Field(10, ge=2, description="shuffle_topk: how many top positions are shuffled.")
    n_samples: int = Field(
        2000, ge=1, description="plackett_luce: Monte Carlo draws per query for the logged propensities."
    )

    @model_validator(mode="after")
    def _check(self) -> ClickLogSection:
        if self.depth > self.candidates:
            raise ValueError(
                f"click_log.depth ({self.depth}) must be <= click_log.candidates ({self.candidates})"
            )
        if self.policy == "plackett_luce" and self.session_noise > 0:
            raise ValueError(
                "click_log.policy plackett_luce needs click_log.session_noise: 0 (propensities per query)"
            )
        return self


class SynthConfig(JobConfig):
    """Write N synthetic events over a real catalog: Zipf popularity, sessions, queries, position-biased
    clicks, dirt."""

    catalog: InputConfig | None = Field(
        None, description="Item catalog to draw from (e.g. the Games-6k preset's items); events mode only."
    )
    click_log: ClickLogSection | None = Field(
        None,
        description="Click-log mode: write impressions with positions, policy id and propensities plus the "
        "known truth (examination, relevance) instead of events (catalog unused).",
    )
    events: int = Field(1_000_000, ge=100, description="Approximate number of events to write.")
    users: int = Field(100_000, ge=10, description="Number of users.")
    zipf_a: float = Field(1.1, gt=1.0, description="Zipf exponent of item popularity.")
    session_events: float = Field(12.0, gt=1, description="Mean events per session.")
    page_size: int = Field(
        10, ge=2, le=100, description="Results shown per search (positions 0..page_size-1)."
    )
    examination_decay: float = Field(
        1.0, gt=0, description="Examination probability at position p = 1 / (p+1)^decay."
    )
    cart_rate: float = Field(0.15, ge=0, le=1, description="P(cart | click).")
    buy_rate: float = Field(0.4, ge=0, le=1, description="P(buy | cart).")
    dirty_share: float = Field(
        0.02, ge=0, le=0.5, description="Share of dirty rows (nulls, bad types, duplicates, bots, PII, skew)."
    )
    start: dt.datetime = Field(
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), description="First event time."
    )
    days: float = Field(30.0, gt=0, description="Time span of the log.")
    shards: int | None = Field(
        None, ge=1, description="Parquet shards / generator tasks (None = 4 x cluster CPUs)."
    )

    @property
    def needs_ray(self) -> bool:
        """Click-log mode is numpy in the driver: no Ray (``recsys.runtime.run_job`` reads this)."""
        return self.click_log is None

    @model_validator(mode="after")
    def _mode(self) -> SynthConfig:
        if self.catalog is None and self.click_log is None:
            raise ValueError("synth needs `catalog` (events mode) or a `click_log` section (click-log mode)")
        return self
