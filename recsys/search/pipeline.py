"""The one search pipeline: retrieve (+ RRF fusion) -> rerank -> personalize for one request.

The Serve app (split deployments and the fused arm), ``benchmarks/serve.py`` and the ``search``
evaluate protocol all rank through :class:`SearchPipeline`, so what is served, benchmarked and
evaluated offline is one ranker. Its stages are pluggable: anything with the methods below called
as ``stage.method.remote(*args)`` and awaited, i.e. a Serve ``DeploymentHandle`` or
:class:`InProcess` (the stage object in this process).

- ``retriever.retrieve(query, filters, n) -> {"version", "candidates"}`` or ``{"error": {"field", "message"}}``;
  candidates best first with ``item_id, row, text, fused`` (the RRF score);
- ``reranker.rerank(query, texts, rows, version) -> {"scores", "batch_size"}``;
- ``personalizer.personalize(candidates, user_id, country, offset, k) -> {"items", "cold_start"}``;
  candidates carry ``relevance``; items are the page's catalog records with ``score`` and ``position``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from recsys.search.scores import minmax
from recsys.search.settings import RerankSettings


@dataclass(frozen=True)
class SearchRequest:
    """One /search request as the pipeline needs it (the HTTP schema validates it first)."""

    query: str
    user_id: str | None = None
    country: str | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)  # column -> value, None = no filter
    page: int = 0
    k: int = 10


@dataclass(frozen=True)
class SearchResult:
    version: str  # the index version the retriever served
    cold_start: bool  # the user had no features
    items: list[dict[str, Any]]  # the page, best first: catalog record + score + position
    rerank_batch_size: int | None  # requests in the reranker's forward pass; None = nothing reranked


@dataclass(frozen=True)
class SearchRejected:
    """A request the index cannot answer (a filter on a column the catalog lacks): a 4xx."""

    field: str
    message: str


Invoke = Callable[..., Awaitable[Any]]


async def direct(method: Any, *args: Any) -> Any:
    """``await stage.method.remote(*args)``: the default way of calling a stage."""
    return await method.remote(*args)


class SearchPipeline:
    """retrieve -> fuse -> rerank -> personalize with one arm's stages and rerank settings.

    Ordering logic: the top ``top_n`` fused candidates get ``relevance = weight * minmax(rerank) +
    (1 - weight) * minmax(fused)`` in [0, 1]; the rest ``minmax(fused) - 1`` (below every reranked
    one); the personalizer blends relevance with the user's features and cuts the page.
    ``invoke(method, *args)`` calls a stage (the Serve ingress passes one that retries a dead replica).
    """

    def __init__(
        self,
        retriever: Any,
        reranker: Any,
        personalizer: Any,
        rerank: RerankSettings,
        invoke: Invoke = direct,
    ):
        self.retriever, self.reranker, self.personalizer = retriever, reranker, personalizer
        self.rerank, self.invoke = rerank, invoke

    async def search(self, req: SearchRequest) -> SearchResult | SearchRejected:
        top_n, weight = self.rerank.top_n, self.rerank.weight
        n = max(top_n, (req.page + 1) * req.k)
        ret = await self.invoke(self.retriever.retrieve, req.query, dict(req.filters), n)
        if "error" in ret:
            return SearchRejected(ret["error"]["field"], ret["error"]["message"])
        cands = ret["candidates"]
        head, tail = cands[:top_n], cands[top_n:]
        batch_size = None
        if head:
            out = await self.invoke(
                self.reranker.rerank,
                req.query,
                [c["text"] for c in head],
                [c["row"] for c in head],
                ret["version"],
            )
            batch_size = out["batch_size"]
            rel = weight * minmax(out["scores"]) + (1 - weight) * minmax([c["fused"] for c in head])
            for c, r in zip(head, rel):
                c["relevance"] = float(r)
        for c, r in zip(tail, minmax([c["fused"] for c in tail]) - 1.0):  # below every reranked candidate
            c["relevance"] = float(r)
        res = await self.invoke(
            self.personalizer.personalize, cands, req.user_id, req.country, req.page * req.k, req.k
        )
        return SearchResult(ret["version"], res["cold_start"], res["items"], batch_size)

    def search_sync(self, req: SearchRequest) -> SearchResult | SearchRejected:
        """:meth:`search` from synchronous code (no running event loop: benchmarks, offline evaluation)."""
        return asyncio.run(self.search(req))


class InProcess:
    """Stands in for a DeploymentHandle: ``h.method.remote(*args)`` runs the method in this process
    (sync methods in a worker thread, so an event loop keeps serving)."""

    def __init__(self, obj: Any):
        self._obj = obj

    def __getattr__(self, name: str) -> _InProcessMethod:
        return _InProcessMethod(getattr(self._obj, name))


class _InProcessMethod:
    def __init__(self, fn: Any):
        self.fn = fn

    async def remote(self, *args: Any) -> Any:
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(*args)
        return await asyncio.to_thread(self.fn, *args)
