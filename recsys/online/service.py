"""What the Serve ingress does with the store, in one object: read a request's live context, record
/feedback events, and degrade instead of failing. A store that does not answer within its timeout
makes the request use snapshot features (``degraded=True``), counted by the caller's metric; after a
failure the store is skipped for ``backoff_s`` so an outage adds no latency per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from recsys.online.batch import item_attributes
from recsys.online.settings import StoreSettings
from recsys.online.store import StoreEvent, UserStateStore, WriteBatch, unix_seconds
from recsys.retrieval.artifacts import resolve_version
from recsys.search.live import LiveContext

log = logging.getLogger(__name__)

UrlSource = Callable[[], Awaitable[str]]


def load_item_attributes(root: str, version: str) -> dict[str, tuple[str, str, float | None]]:
    """item_id -> (category, brand, price) of an index version's catalog (for the interest profile)."""
    path = Path(resolve_version(root, version)) / "items.parquet"
    names = pq.read_schema(path).names
    cols = [c for c in ("item_id", "category", "brand", "price") if c in names]
    return item_attributes(pd.read_parquet(path, columns=cols))


def feedback_batches(
    rows: Sequence[dict[str, Any]], items: dict[str, tuple[str, str, float | None]]
) -> list[WriteBatch]:
    """/feedback event rows (``recsys.serving.feedback.to_events``: one request, one user) -> the user's
    batch and, with a session id, the session's (the same events: a session outlives a login)."""
    if not rows:
        return []
    events = []
    for r in rows:
        cat, brand, price = items.get(r["item_id"], ("", "", None))
        t = unix_seconds(r["timestamp"])
        p = r.get("price")
        events.append(
            StoreEvent(r["item_id"], r["event_type"], t, cat, brand, float(p) if p is not None else price)
        )
    first = rows[0]
    out = [WriteBatch("u", first["user_id"], tuple(events), first.get("query"), first.get("country"))]
    if first.get("session_id"):
        out.append(
            WriteBatch("s", first["session_id"], tuple(events), first.get("query"), first.get("country"))
        )
    return out


class OnlineState:
    """The ingress's handle on the store. ``url_source`` gives the server's URL (the embedded server's
    deployment, or the configured external URL); it is asked again after a failure (a restarted server)."""

    def __init__(
        self,
        settings: StoreSettings,
        url_source: UrlSource,
        items: dict[str, tuple[str, str, float | None]] | None = None,
        on_error: Callable[[str], None] | None = None,
        backoff_s: float = 1.0,
    ):
        self.s, self.url_source, self.items = settings, url_source, items or {}
        self.on_error = on_error or (lambda op: None)
        self.backoff_s = backoff_s
        self.store: UserStateStore | None = None
        self._skip_until = 0.0

    async def _store(self) -> UserStateStore | None:
        if time.monotonic() < self._skip_until:
            return None
        if self.store is None:
            self.store = UserStateStore(await self.url_source(), self.s)
        return self.store

    async def _failed(self, op: str, exc: BaseException) -> None:
        log.warning("online store %s failed (%s: %s); serving snapshot features", op, type(exc).__name__, exc)
        self.on_error(op)
        self._skip_until = time.monotonic() + self.backoff_s
        if self.store is not None:  # reconnect (maybe to a new URL) after the backoff
            store, self.store = self.store, None
            try:
                await store.aclose()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail too
                pass

    async def context(self, user_id: str | None, session_id: str | None) -> tuple[LiveContext | None, bool]:
        """(live context or None, degraded)."""
        if not (user_id or session_id):
            return None, False
        try:
            store = await self._store()
            if store is None:
                return None, True
            return await store.context(user_id, session_id), False
        except Exception as exc:  # noqa: BLE001 - any store failure degrades, never a 5xx
            await self._failed("read", exc)
            return None, True

    async def record(self, rows: Sequence[dict[str, Any]]) -> tuple[int, bool]:
        """(interactions recorded, degraded). Returns after the server acknowledged (and fsynced)."""
        try:
            store = await self._store()
            if store is None:
                return 0, True
            return await store.write_many(feedback_batches(rows, self.items)), False
        except Exception as exc:  # noqa: BLE001
            await self._failed("write", exc)
            return 0, True

    async def aclose(self) -> None:
        if self.store is not None:
            await self.store.aclose()
