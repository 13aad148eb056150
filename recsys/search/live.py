"""What the online user-state store knows about the shopper *now*, as the ranking stages take it.

The Serve ingress reads it from the store (``recsys.online``) per request and hands it to the
personalizer and the recommender beside the snapshot features of the index version; the stages never
talk to the store themselves. Frozen and made of tuples, so it is hashable: the /search response cache
keys on it like on every other request field (a new click is a new key, never a stale answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PurchasedPolicy = Literal["exclude", "boost", "none"]


@dataclass(frozen=True)
class LivePolicy:
    """How live state enters the score (from the serve config's ``online`` section)."""

    brand_affinity: float  # weight of the live brand share of the candidate's brand
    purchased: PurchasedPolicy  # items bought before: dropped, boosted by purchased_boost, or left alone
    purchased_boost: float
    live_share: float  # weight of the live category profile against the snapshot's in [0, 1]


@dataclass(frozen=True)
class LiveContext:
    """One user's (and / or session's) live state. Item lists are oldest first; shares sum to 1."""

    recent: tuple[str, ...] = ()  # interacted item ids (click / cart / buy), oldest first
    purchased: tuple[str, ...] = ()
    carted: tuple[str, ...] = ()
    queries: tuple[str, ...] = ()  # newest first
    country: str | None = None
    categories: tuple[tuple[str, float], ...] = ()  # time-decayed interest shares, largest first
    brands: tuple[tuple[str, float], ...] = ()
    price_mean: float | None = None  # geometric mean of the prices of interacted items (decayed)
    price_lo: float | None = None  # the price band: exp(mean log price -/+ one std)
    price_hi: float | None = None
    policy: LivePolicy | None = None

    @property
    def empty(self) -> bool:
        return not (self.recent or self.purchased or self.carted or self.queries or self.categories)
