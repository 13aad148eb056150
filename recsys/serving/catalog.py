"""What the ingress does for ``POST /catalog/upsert`` and ``/catalog/delete``: check the bearer token, embed
upserted items with each arm's serving encoder (once per distinct encoder), append the changes to the log in
the online store (``recsys.online.catalog``). Acknowledged = in the log (fsynced by the embedded server):
every replica applies it before its next answer."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from recsys.online.catalog import CatalogLog
from recsys.retrieval.changes import ItemChange, validate_change
from recsys.retrieval.delta import embed_text
from recsys.serving.specs import IngressSettings

Invoke = Callable[..., Awaitable[Any]]


class CatalogService:
    def __init__(
        self,
        settings: IngressSettings,
        retrievers: dict[str, Any],
        url_source: Callable[[], Awaitable[str]],
        key_prefix: str,
        invoke: Invoke,
    ):
        token = os.environ.get(settings.catalog_token_env or "", "") if settings.catalog_token_env else ""
        self.token_sha = (
            hashlib.sha256(token.encode()).hexdigest() if token else settings.catalog_token_sha256
        )
        self.max_items = settings.catalog_max_items
        self.retrievers, self.url_source, self.prefix, self.invoke = (
            retrievers,
            url_source,
            key_prefix,
            invoke,
        )
        self.log: CatalogLog | None = None

    def authorized(self, authorization: str | None) -> bool:
        """``Authorization: Bearer <token>`` matches the configured token (constant-time compare)."""
        if not self.token_sha or not authorization or not authorization.startswith("Bearer "):
            return False
        digest = hashlib.sha256(
            authorization.removeprefix("Bearer ").strip().encode("utf-8", "surrogateescape")
        )
        return hmac.compare_digest(digest.hexdigest(), self.token_sha)

    async def _log(self) -> CatalogLog:
        if self.log is None:
            self.log = CatalogLog(await self.url_source(), self.prefix)
        return self.log

    async def upsert(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Validated rows (the HTTP schema) -> appended upserts. Raises ChangeError naming the row's field."""
        changes = [validate_change(i, r, op="upsert") for i, r in enumerate(rows)]
        ids, texts = [c.item_id for c in changes], [embed_text(c.record()) for c in changes]
        vectors: list[dict[str, np.ndarray]] = [{} for _ in changes]
        reused = 0
        for h in self.retrievers.values():  # one embedding per distinct encoder (arms usually share one)
            out = await self.invoke(h.embed_items, ids, texts)
            if out["model"] in vectors[0]:
                continue
            reused = max(reused, int(out["reused"]))
            for v, vec in zip(vectors, out["vectors"]):
                v[out["model"]] = vec
        return await self._append(changes, vectors, reused)

    async def delete(self, item_ids: list[str]) -> dict[str, Any]:
        changes = [validate_change(i, {"item_id": x}, op="delete") for i, x in enumerate(item_ids)]
        return await self._append(changes, [{} for _ in changes], 0)

    async def _append(
        self, changes: list[ItemChange], vectors: list[dict[str, np.ndarray]], reused: int
    ) -> dict[str, Any]:
        log = await self._log()
        try:
            first, last = await asyncio.to_thread(log.append, changes, vectors)
        except Exception:
            self.log = None  # reconnect next time (a restarted server may have another URL)
            raise
        return {"accepted": len(changes), "first_seq": first, "last_seq": last, "reused_vectors": reused}
