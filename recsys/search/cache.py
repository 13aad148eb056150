"""Bounded caches of the search path with hit / miss counts: the query-embedding cache of the
retriever's dense query encoder and the whole-response cache of :class:`~recsys.search.SearchPipeline`.

Both are ``cachetools`` caches (LRU; LRU + TTL where a TTL is configured) behind a lock: stages run
sync methods in worker threads. Correctness never depends on eviction or expiry: every key holds what
determines the value (the encoder's model, the index version, the reranker settings, the request)."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

from cachetools import Cache, LRUCache, TTLCache

MISS = object()


class CountingCache:
    """A bounded LRU (``ttl_s`` > 0: LRU with expiry) that counts hits and misses."""

    def __init__(self, entries: int, ttl_s: float = 0.0):
        if entries < 1:
            raise ValueError(f"a cache needs entries >= 1, got {entries}; use no cache for 0 (off)")
        self.entries, self.ttl_s = entries, ttl_s
        self._cache: Cache[Hashable, Any] = (
            TTLCache(maxsize=entries, ttl=ttl_s) if ttl_s > 0 else LRUCache(maxsize=entries)
        )
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> Any:
        """The value, or :data:`MISS` (counted); a hit makes the entry the most recently used."""
        with self._lock:
            value = self._cache.get(key, MISS)
            if value is MISS:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._cache[key] = value  # evicts the least recently used entry when full

    def clear(self) -> None:
        """Drop every entry (counts are kept: they are Prometheus counters)."""
        with self._lock:
            self._cache.clear()

    def __len__(self) -> int:
        with self._lock:
            if isinstance(self._cache, TTLCache):
                self._cache.expire()
            return len(self._cache)

    def __contains__(self, key: Hashable) -> bool:  # no hit / miss counted, no LRU update
        with self._lock:
            return key in self._cache

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "size": len(self), "capacity": self.entries}


def maybe_cache(entries: int, ttl_s: float = 0.0) -> CountingCache | None:
    """A cache of ``entries`` (None when 0: caching off)."""
    return CountingCache(entries, ttl_s) if entries > 0 else None
