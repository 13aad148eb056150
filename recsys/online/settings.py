"""Typed settings of the online store (frozen: they cross into Serve replicas). Defaults live in
the pydantic config (``recsys.online.config.OnlineStoreArgs``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from recsys.search.live import LivePolicy

Backend = Literal["embedded", "external", "off"]


@dataclass(frozen=True)
class StoreSettings:
    backend: Backend
    url: str | None  # external: redis://host:port/db (None = read url_env in the replica)
    url_env: str | None  # env var holding the URL (with a password): read where the client runs
    data_dir: str  # embedded: the server's working dir (AOF files)
    appendfsync: Literal["always", "everysec"]
    key_prefix: str
    max_events: int  # recent interactions kept per user / session
    max_queries: int
    max_purchases: int  # purchases and carts kept (each)
    max_profile: int  # categories and brands kept in the interest profile (each)
    ttl_s: int  # a user's / session's state expires this long after their last event
    session_ttl_s: int
    half_life_s: float  # interest profile decay
    timeout_s: float  # socket read/write timeout of every store call
    connect_timeout_s: float
    recent_for_ranking: int  # most recent items handed to the stages
    policy: LivePolicy
    event_weights: dict[str, float] = field(default_factory=dict)  # event type -> interest weight

    def weight(self, event_type: str) -> float:
        return self.event_weights.get(event_type, 0.0)
