"""The one search pipeline: retrieve (+ RRF fusion) -> rerank -> personalize for one request.

The Serve app (split deployments and the fused arm), ``benchmarks/serve.py`` and the ``search``
evaluate protocol all rank through :class:`SearchPipeline`, so what is served, benchmarked and
evaluated offline is one ranker. Its stages are pluggable: anything with the methods below called
as ``stage.method.remote(*args)`` and awaited, i.e. a Serve ``DeploymentHandle`` or
:class:`InProcess` (the stage object in this process).

- ``retriever.retrieve(query, filters, n[, exact]) -> {"version", "candidates"[, "rewrite"]}`` or
  ``{"error": {"field", "message"}}``; candidates best first with ``item_id, row, text, fused`` (the RRF
  score); ``rewrite`` = ``{"query", "changes"}``: what query understanding searched for (``exact`` is
  passed only when a request asks for it: the query as typed);
- ``reranker.rerank(query, texts, rows, version) -> {"scores", "batch_size"}``;
- ``personalizer.personalize(candidates, user_id, country, offset, k) -> {"items", "cold_start"[, "version"]}``;
  candidates carry ``relevance``; items are the page's catalog records with ``score`` and ``position``;
- with a response cache, ``retriever.served_version() -> str``: the index version served now.

The response cache (``cache``: a :class:`~recsys.search.cache.CountingCache`, None = off) holds whole
:class:`SearchResult` s keyed by the index version the retriever serves, the rerank settings (its model) and
every field of the normalized :class:`SearchRequest` (query with whitespace collapsed, filters without
``None`` values, user, country, page, k); the arm is implicit (one pipeline, one cache per arm). A hot
reload (a new index version) therefore misses, and the cache is also emptied when the served version
changes, to free memory. Personalization is not served stale: /search personalizes from the user's
features *in the index version* (users table) and the request's user / country, all in the key; feedback
changes them only through a new index version. An answer is stored only when the personalizer served the
retriever's version (during a rolling reload they may differ for a moment). A request field added later
(e.g. session state) joins the key automatically: the key is built from every field.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from recsys.search.cache import CountingCache
from recsys.search.live import LiveContext
from recsys.search.rules import RuleSet, RulesSource
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
    exact: bool = False  # true: no query rewriting (spelling, units, synonyms)
    live: LiveContext | None = None  # the online store's state of the user / session (None: snapshot only)
    explain: bool = False  # every item carries ``reasons`` (score components + a line of text)

    def normalized(self) -> SearchRequest:
        """The same request with runs of whitespace in the query collapsed and ``None`` filters dropped
        (both mean nothing to the stages): what the pipeline ranks and the response cache keys."""
        return replace(
            self,
            query=" ".join(self.query.split()),
            filters={k: v for k, v in self.filters.items() if v is not None},
        )

    def cache_key(self) -> Hashable:
        """Every field, hashable (filters as sorted JSON: their values may be lists)."""
        return tuple(
            json.dumps(dict(v), sort_keys=True, default=str) if f.name == "filters" else v
            for f in fields(self)
            for v in (getattr(self, f.name),)
        )


@dataclass(frozen=True)
class SearchResult:
    version: str  # the index version the retriever served
    cold_start: bool  # the user had no features
    items: list[dict[str, Any]]  # the page, best first: catalog record + score + position
    rerank_batch_size: int | None  # requests in the reranker's forward pass; None = nothing reranked
    cached: bool = False  # answered from the response cache
    rewritten_query: str | None = None  # what was searched for when query understanding changed the query
    query_changes: tuple[str, ...] = ()  # each rewrite made ("spelling: toliet -> toilet")
    rules_fired: tuple[
        dict[str, Any], ...
    ] = ()  # merchandising rules that fired: {rule, action, items, skipped}


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
        cache: CountingCache | None = None,
        rules: RulesSource | None = None,
    ):
        self.retriever, self.reranker, self.personalizer = retriever, reranker, personalizer
        self.rerank, self.invoke, self.cache = rerank, invoke, cache
        self.rules = rules  # merchandising rules (recsys.search.rules), hot-reloaded; None = off
        self._cached_version: str | None = None  # the index version the cache's entries were made with

    async def search(self, req: SearchRequest) -> SearchResult | SearchRejected:
        req = req.normalized()
        rules = self.rules.current() if self.rules is not None else RuleSet.empty()
        if self.cache is None:
            return (await self._search(req, rules))[0]
        version = await self.invoke(self.retriever.served_version)
        if version != self._cached_version:  # a hot reload: old entries can never hit again
            self.cache.clear()
            self._cached_version = version
        key = (version, self.rerank, rules.report.fingerprint, req.cache_key())
        hit = self.cache.get(key)
        if isinstance(hit, SearchResult):  # a copy: callers may mutate the items
            return replace(hit, items=copy.deepcopy(hit.items), rerank_batch_size=None, cached=True)
        res, personalized_version = await self._search(req, rules)
        if isinstance(res, SearchResult) and personalized_version in (None, res.version):
            self.cache.put(
                (res.version, self.rerank, rules.report.fingerprint, req.cache_key()),
                replace(res, items=copy.deepcopy(res.items)),
            )
        return res

    async def _search(
        self, req: SearchRequest, rules: RuleSet
    ) -> tuple[SearchResult | SearchRejected, str | None]:
        """The answer and the index version the personalizer served (None: it did not say)."""
        top_n, weight = self.rerank.top_n, self.rerank.weight
        n = max(top_n, (req.page + 1) * req.k)
        if rules and rules.may_filter([req.query]):  # a rule filter removes results: retrieve more
            n = max(top_n, 2 * (req.page + 1) * req.k)
        exact_arg = (True,) if req.exact else ()  # stages without query understanding take 3 arguments
        ret = await self.invoke(self.retriever.retrieve, req.query, dict(req.filters), n, *exact_arg)
        if "error" in ret:
            return SearchRejected(ret["error"]["field"], ret["error"]["message"]), None
        cands = ret["candidates"]
        rewrite = ret.get("rewrite") or {}
        changes = tuple(rewrite.get("changes") or ())
        query = rewrite["query"] if changes else req.query  # the reranker scores what was searched for
        head, tail = cands[:top_n], cands[top_n:]
        batch_size = None
        if head and weight == 0:  # the reranker's share is 0: its scores could not change the order
            for c, r in zip(head, minmax([c["fused"] for c in head])):
                c["relevance"] = float(r)
        elif head:
            out = await self.invoke(
                self.reranker.rerank,
                query,
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
        extra: tuple[Any, ...] = ()
        if req.live is not None or req.explain:  # only then: personalizers without these arguments still work
            extra = (req.live, req.explain)
        if req.explain:
            terms = {t for t in query.lower().split() if len(t) > 1}  # what was searched for
            for c in cands:
                c["matched"] = sorted(terms & set(str(c.get("text", "")).lower().split()))
        if rules and rules.triggered((req.query, query)):  # else: no rule can fire, the plain path
            return await self._search_with_rules(req, rules, ret, cands, query, changes, batch_size, extra)
        res = await self.invoke(
            self.personalizer.personalize, cands, req.user_id, req.country, req.page * req.k, req.k, *extra
        )
        return (
            SearchResult(
                ret["version"],
                res["cold_start"],
                res["items"],
                batch_size,
                rewritten_query=query if changes else None,
                query_changes=changes,
            ),
            res.get("version"),
        )

    async def _search_with_rules(
        self,
        req: SearchRequest,
        rules: RuleSet,
        ret: dict[str, Any],
        cands: list[dict[str, Any]],
        query: str,
        changes: tuple[str, ...],
        batch_size: int | None,
        extra: tuple[Any, ...],
    ) -> tuple[SearchResult, str | None]:
        """Personalize every candidate (plus products a rule pins that retrieval missed, when the request
        has no filters), apply the rules to the whole ranking, then cut the page."""
        queries = (req.query, query)  # triggers match what was typed and what was searched for
        have = {c["item_id"] for c in cands}
        floor = min((c["relevance"] for c in cands), default=0.0) - 1.0
        fetched = [] if req.filters else [i for i in rules.pins_to_fetch(queries) if i not in have]
        cands = cands + [
            {"item_id": i, "row": -1, "text": "", "fused": 0.0, "relevance": floor} for i in fetched
        ]
        res = await self.invoke(
            self.personalizer.personalize, cands, req.user_id, req.country, 0, len(cands), *extra
        )
        ranked, fired = rules.apply(res["items"], queries, req.filters.get("category"), set(fetched))
        offset = req.page * req.k
        page = [dict(item, position=offset + i) for i, item in enumerate(ranked[offset : offset + req.k])]
        return (
            SearchResult(
                ret["version"],
                res["cold_start"],
                page,
                batch_size,
                rewritten_query=query if changes else None,
                query_changes=changes,
                rules_fired=tuple(fired),
            ),
            res.get("version"),
        )

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
