"""The FastAPI ingress and the typed app builder (``import_path: recsys.serving.app:build_app``).

Endpoints: ``POST /search``, ``POST /recommend``, ``GET /suggest``, ``POST /feedback``,
``GET /healthz``, ``GET /metrics`` (Prometheus), OpenAPI docs at ``/docs``. Every response names
the A/B arm; every bad request is a 4xx JSON ``{"error", "field", "message"}``.
"""

# No `from __future__ import annotations`: Serve reads build_app's parameter annotation as a class.
import asyncio
import dataclasses
import hashlib
import hmac
import os
import time
import uuid
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.handle import DeploymentHandle
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys.online.service import OnlineState, load_item_attributes
from recsys.online.settings import StoreSettings
from recsys.retrieval.changes import ChangeError
from recsys.search.live import LiveContext
from recsys.search.pipeline import SearchRejected
from recsys.serving import guard
from recsys.serving import schemas as S
from recsys.serving.arms import arm_specs, in_process_stages, search_pipeline, stage_args
from recsys.serving.catalog import CatalogService
from recsys.serving.config import ServeArgs
from recsys.serving.deployments import ARM_DEPLOYMENTS, FeedbackSink
from recsys.serving.feedback import to_events
from recsys.serving.metrics import ServeMetrics
from recsys.serving.router import ABRouter
from recsys.serving.specs import ArmSpec, IngressSettings
from recsys.serving.state import StateServer

RETRIES = 3  # a request whose replica died is re-sent (Serve routes it to a live / restarted replica)


async def call(method: Any, *args: Any) -> Any:
    """``await handle.method.remote(*args)`` that survives a replica dying under it."""
    for attempt in range(RETRIES + 1):
        try:
            return await method.remote(*args)
        except (ActorDiedError, ActorUnavailableError, RayActorError):
            if attempt == RETRIES:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))


OPEN_PATHS = {"/healthz", "/metrics", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"}

api = FastAPI(
    title="recsys",
    version="1",
    description="Personalised hybrid search, recommendations and autocomplete, "
    "with sticky A/B arms. Bad requests get 4xx JSON errors naming the field.",
    responses={
        401: {"model": S.ErrorResponse},
        413: {"model": S.ErrorResponse},
        422: {"model": S.ErrorResponse},
    },
)


def _error(
    status: int, error: str, message: str, field: str | None = None, errors: list[Any] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "field": field, "message": message}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(status_code=status, content=body)


# Defined above the Ingress: Serve pickles the ingress class with the module globals it has at that point.
def personal_first(
    suggestions: list[dict[str, Any]], recent: tuple[str, ...], q: str, k: int
) -> list[dict[str, Any]]:
    """The user's recent queries that start with the typed prefix first (newest first), then the
    autocomplete's suggestions without them; ``k`` in all."""
    prefix = q.strip().lower()
    mine = [r for r in recent if r.lower().startswith(prefix) and r.lower() != prefix][:k]
    top = max((float(s["score"]) for s in suggestions), default=0.0)
    seen = {m.lower() for m in mine}
    out = [
        {"text": m, "score": top + len(mine) - i, "corrected": False, "personal": True}
        for i, m in enumerate(mine)
    ]
    out += [s for s in suggestions if str(s["text"]).lower() not in seen]
    return out[:k]


@api.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        if len(loc) > 1 and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]  # "k", "filters.brand": the name the client sent
        errors.append({"field": ".".join(loc), "message": e.get("msg", "invalid"), "type": e.get("type")})
    first = errors[0] if errors else {"field": None, "message": "invalid request"}
    return _error(422, "invalid_request", f"{first['field']}: {first['message']}", first["field"], errors)


@api.exception_handler(StarletteHTTPException)
async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 400 and "parsing the body" in detail:  # bytes that are not UTF-8 JSON
        return _error(422, "invalid_request", "body: not valid UTF-8 JSON", "body")
    return _error(exc.status_code, "http_error", detail)


@api.exception_handler(Exception)
async def _internal(
    request: Request, exc: Exception
) -> JSONResponse:  # pragma: no cover - a bug, logged by Serve
    return _error(
        500, "internal_error", f"{type(exc).__name__}: the server failed to answer; see the replica logs"
    )


class Guard:
    """ASGI middleware: API key (401) and body size (413) before any parsing; a ``Server-Timing``
    header on the answer. Pure ASGI rather than ``@app.middleware("http")``: Starlette's
    BaseHTTPMiddleware runs every request through an extra task and a memory stream."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        settings = guard.SETTINGS
        conn = HTTPConnection(scope)
        rejected = None
        if conn.url.path not in OPEN_PATHS and settings.get("api_key_sha256"):
            key = (
                conn.headers.get("x-api-key")
                or conn.headers.get("authorization", "").removeprefix("Bearer ").strip()
            )
            digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest() if key else ""
            if not hmac.compare_digest(digest, settings["api_key_sha256"]):
                rejected = _error(
                    401,
                    "unauthorized",
                    "missing or wrong API key; send it in the X-API-Key header",
                    "X-API-Key",
                )
        length = conn.headers.get("content-length")
        if (
            rejected is None
            and length is not None
            and (not length.isdigit() or int(length) > settings.get("max_body_bytes", 1_000_000))
        ):
            rejected = _error(
                413, "payload_too_large", f"body over {settings.get('max_body_bytes')} bytes", "body"
            )
        if rejected is not None:
            return await rejected(scope, receive, send)
        t0 = time.perf_counter()

        async def timed_send(message: Message) -> None:
            # time spent in this replica up to the answer's headers (parsing, the handler, serialisation): a
            # client subtracts it from its own latency to see what the proxy and the network add
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(
                    "Server-Timing", f"app;dur={(time.perf_counter() - t0) * 1000:.3f}"
                )
            await send(message)

        await self.app(scope, receive, timed_send)


api.add_middleware(Guard)


@serve.deployment
@serve.ingress(api)
class Ingress:
    def __init__(
        self,
        specs: dict[str, ArmSpec],
        handles: dict[str, dict[str, DeploymentHandle]],
        sink: DeploymentHandle,
        settings: IngressSettings,
        online: StoreSettings | None = None,
        state_server: DeploymentHandle | None = None,
    ):
        """``handles[arm][stage]``: the split topology's deployments; an arm without handles (fused)
        gets its stages built here, in this replica. ``online``: the user-state store (None / backend off:
        snapshot features only); ``state_server``: the embedded store's deployment (asked for its URL)."""
        self.arms = {name: handles.get(name) or in_process_stages(spec) for name, spec in specs.items()}
        self.pipelines = {name: search_pipeline(spec, self.arms[name], call) for name, spec in specs.items()}
        self.policies = {name: spec.policy for name, spec in specs.items()}  # serving policy of each arm
        self.sink, self.settings = sink, settings
        key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        sha = hashlib.sha256(key.encode()).hexdigest() if key else settings.api_key_sha256
        guard.SETTINGS.update(api_key_sha256=sha, max_body_bytes=settings.max_body_bytes)
        self.serve_metrics = ServeMetrics()  # not `metrics`: that is the /metrics route method
        self.app_name = serve.get_replica_context().app_name
        self.reconfigure({"weights": settings.weights, "salt": settings.salt})
        self.online = self._online(specs, online, state_server)
        self.catalog = self._catalog(online, state_server)

    def _catalog(self, s: StoreSettings | None, server: DeploymentHandle | None) -> CatalogService | None:
        """The live catalog's writer (None: catalog off, /catalog/* answer 404)."""
        if self.settings.catalog_token_env is None and self.settings.catalog_token_sha256 is None:
            return None
        assert s is not None and s.backend != "off"  # ServeArgs checks it

        async def url() -> str:
            if s.backend == "external":
                return s.url or os.environ[s.url_env or ""]
            assert server is not None
            return str(await asyncio.wait_for(server.url.remote(), timeout=5.0))

        retrievers = {name: stages["retriever"] for name, stages in self.arms.items()}
        return CatalogService(self.settings, retrievers, url, s.key_prefix, call)

    def _online(
        self, specs: dict[str, ArmSpec], s: StoreSettings | None, server: DeploymentHandle | None
    ) -> OnlineState | None:
        """The store client, the store's error / degraded counters, the catalog attributes of the first
        arm's index (category, brand, price of each item: what the interest profile is made of)."""
        if s is None or s.backend == "off":
            return None
        from prometheus_client import Counter

        reg = self.serve_metrics.registry
        errors = Counter("recsys_online_store_errors", "Failed store calls.", ["op"], registry=reg)
        self.degraded = Counter(
            "recsys_online_degraded", "Answers served without live state.", ["endpoint"], registry=reg
        )

        async def url() -> str:
            if s.backend == "external":
                return s.url or os.environ[s.url_env or ""]
            assert server is not None
            return str(await asyncio.wait_for(server.url.remote(), timeout=5.0))

        first = next(iter(specs.values()))
        items = load_item_attributes(first.artifacts, first.version)
        return OnlineState(s, url, items, on_error=lambda op: errors.labels(op).inc())

    async def _live(
        self, endpoint: str, user_id: str | None, session_id: str | None
    ) -> tuple[LiveContext | None, bool]:
        if self.online is None:
            return None, False
        live, degraded = await self.online.context(user_id, session_id)
        if degraded:
            self.degraded.labels(endpoint).inc()
        return live, degraded

    def reconfigure(self, config: dict[str, Any]) -> None:
        """user_config ``{weights: {arm: w}, salt}``: re-split traffic without restarting anything."""
        weights = {
            a: float(w) for a, w in (config.get("weights") or self.settings.weights).items() if a in self.arms
        }
        self.router = ABRouter(weights, config.get("salt") or self.settings.salt)

    def _observe(self, endpoint: str, arm: str, status: int, t0: float) -> None:
        self.serve_metrics.requests.labels(endpoint, arm, str(status)).inc()
        self.serve_metrics.latency.labels(endpoint, arm).observe(time.perf_counter() - t0)

    @api.post("/search", response_model=S.SearchResponse, summary="Personalised hybrid search")
    async def search(self, req: S.SearchRequest) -> Any:
        t0 = time.perf_counter()
        arm = self.router.assign(req.user_id)
        live, degraded = await self._live("search", req.user_id, req.session_id)
        policy, request_id = self.policies[arm], uuid.uuid4().hex  # the policy may sample from a deeper pool
        sreq = dataclasses.replace(req.to_search(live), k=policy.fetch_k(req.k, req.page))
        res = await self.pipelines[arm].search(sreq)
        if isinstance(res, SearchRejected):
            self._observe("search", arm, 422, t0)
            return _error(422, "invalid_request", res.message, res.field)
        if res.rerank_batch_size is not None:  # None for a cached answer, too
            self.serve_metrics.batch_size.labels(arm).observe(res.rerank_batch_size)
        if res.cold_start:
            self.serve_metrics.cold.labels("search", arm).inc()
        self._observe("search", arm, 200, t0)
        return {
            "request_id": request_id,
            "arm": arm,
            "version": res.version,
            "query": req.query,
            "page": req.page,
            "k": req.k,
            "cold_start": res.cold_start,
            "items": policy.serve(res.items, req.k, request_id, req.page),
            "rewritten_query": res.rewritten_query,
            "query_changes": list(res.query_changes),
            "degraded": degraded,
            "rules_fired": list(res.rules_fired),
        }

    @api.post(
        "/recommend", response_model=S.RecommendResponse, summary="Next items for a user / recent items"
    )
    async def recommend(self, req: S.RecommendRequest) -> Any:
        t0 = time.perf_counter()
        arm = self.router.assign(req.user_id)
        live, degraded = await self._live("recommend", req.user_id, req.session_id)
        policy, request_id = self.policies[arm], uuid.uuid4().hex
        res = await call(
            self.arms[arm]["recommender"].recommend,
            req.user_id,
            req.item_ids,
            policy.fetch_k(req.k),
            req.exclude_purchased,
            req.country,
            live,
            req.explain,
        )
        if res["cold_start"]:
            self.serve_metrics.cold.labels("recommend", arm).inc()
        self._observe("recommend", arm, 200, t0)
        res["items"] = policy.serve(res["items"], req.k, request_id)
        return {"request_id": request_id, "arm": arm, **res, "degraded": degraded}

    @api.get("/suggest", response_model=S.SuggestResponse, summary="Typo-tolerant query autocomplete")
    async def suggest(
        self,
        q: str = Query(..., min_length=1, max_length=S.MAX_QUERY_CHARS, description="Typed prefix."),
        k: int = Query(10, ge=1, le=S.MAX_K, description="Suggestions."),
        user_id: str | None = Query(
            None,
            min_length=1,
            max_length=S.MAX_ID_CHARS,
            pattern=S.ID_PATTERN,
            description="Picks the arm; their recent queries come first.",
        ),
        session_id: str | None = Query(
            None,
            min_length=1,
            max_length=S.MAX_ID_CHARS,
            pattern=S.ID_PATTERN,
            description="Anonymous session.",
        ),
    ) -> Any:
        t0 = time.perf_counter()
        arm = self.router.assign(user_id)
        live, degraded = await self._live("suggest", user_id, session_id)
        res = await call(self.arms[arm]["retriever"].suggest, q, k)
        suggestions = personal_first(res["suggestions"], live.queries if live else (), q, k)
        self._observe("suggest", arm, 200, t0)
        return {"arm": arm, "q": q, "suggestions": suggestions, "degraded": degraded}

    @api.post("/feedback", response_model=S.FeedbackResponse, summary="Impressions, clicks, carts, buys")
    async def feedback(self, req: S.FeedbackRequest) -> Any:
        t0 = time.perf_counter()
        arm = req.arm or self.router.assign(req.user_id)
        if arm not in self.arms:
            self._observe("feedback", "unknown", 422, t0)
            return _error(422, "invalid_request", f"unknown arm {arm!r}; arms: {sorted(self.arms)}", "arm")
        rows = to_events(req.model_dump(), arm)
        live, degraded = 0, False
        if self.online is not None:  # acknowledged by the store (fsynced) before this answer
            live, degraded = await self.online.record(rows)
            if degraded:
                self.degraded.labels("feedback").inc()
        await call(self.sink.append, rows)
        for ev in req.events:
            self.serve_metrics.feedback.labels(arm, ev.event_type).inc()
        self._observe("feedback", arm, 200, t0)
        return {"accepted": len(rows), "arm": arm, "live": live, "degraded": degraded}

    @api.get("/rules", summary="Merchandising rules served by each arm (file, reloads, skips, last error)")
    async def rules(self) -> Any:
        out = {}
        for name, pipeline in self.pipelines.items():
            if pipeline.rules is not None:
                pipeline.rules.current()  # a changed file is loaded (or its error recorded) before reporting
                out[name] = pipeline.rules.status()
        return {"arms": out}

    async def _catalog_call(self, request: Request, endpoint: str, schema: Any) -> Any:
        """Token first (401), then the body (422 naming the field), then the change log (503 when down)."""
        t0 = time.perf_counter()
        if self.catalog is None:
            return _error(404, "not_found", "the live catalog is off (serve config catalog.enabled)")
        if not self.catalog.authorized(request.headers.get("authorization")):
            self._observe(endpoint, "-", 401, t0)
            return _error(401, "unauthorized", "missing or wrong catalog token; send Authorization: Bearer <token>",
                          "Authorization")  # fmt: skip
        try:
            req = schema.model_validate_json(await request.body())
        except ValidationError as exc:
            self._observe(endpoint, "-", 422, t0)
            return await _invalid(
                request, RequestValidationError([dict(e, loc=("body", *e["loc"])) for e in exc.errors()])
            )
        rows = req.items if endpoint == "catalog_upsert" else req.item_ids
        if len(rows) > self.catalog.max_items:
            self._observe(endpoint, "-", 422, t0)
            field = "items" if endpoint == "catalog_upsert" else "item_ids"
            return _error(422, "invalid_request", f"{field}: at most {self.catalog.max_items} per request "
                          "(catalog.max_items)", field)  # fmt: skip
        try:
            if endpoint == "catalog_upsert":
                out = await self.catalog.upsert([i.model_dump() for i in rows])
            else:
                out = await self.catalog.delete(list(rows))
        except ChangeError as e:
            self._observe(endpoint, "-", 422, t0)
            field = f"items.{e.row}.{e.field}" if endpoint == "catalog_upsert" else f"item_ids.{e.row}"
            return _error(422, "invalid_request", f"{field}: {e.message}", field)
        except Exception as e:  # noqa: BLE001 - the store is down: not acknowledged, the client retries
            self._observe(endpoint, "-", 503, t0)
            return _error(503, "store_unavailable",
                          f"change log not reachable ({type(e).__name__}); nothing was applied, retry")  # fmt: skip
        self._observe(endpoint, "-", 200, t0)
        return out

    @api.post("/catalog/upsert", response_model=S.CatalogResponse, summary="Add or replace items (bearer token)",
              openapi_extra=S.body_schema(S.CatalogUpsertRequest))  # fmt: skip
    async def catalog_upsert(self, request: Request) -> Any:
        """Body ``{"items": [{item_id, title, category?, brand?, price?, stock?}, ...]}`` (docs/ONLINE.md)."""
        return await self._catalog_call(request, "catalog_upsert", S.CatalogUpsertRequest)

    @api.post("/catalog/delete", response_model=S.CatalogResponse, summary="Delete items (bearer token)",
              openapi_extra=S.body_schema(S.CatalogDeleteRequest))  # fmt: skip
    async def catalog_delete(self, request: Request) -> Any:
        """Body ``{"item_ids": [...]}``."""
        return await self._catalog_call(request, "catalog_delete", S.CatalogDeleteRequest)

    @api.get("/healthz", summary="Liveness and the index version of every arm")
    async def healthz(self) -> Any:
        arms = {}
        for name, h in self.arms.items():
            try:
                arms[name] = await h["retriever"].info.remote()
            except Exception as exc:  # noqa: BLE001 - report, stay up
                arms[name] = {"loaded": False, "error": type(exc).__name__}
        ok = all(a.get("loaded") for a in arms.values())
        return {"status": "ok" if ok else "degraded", "arms": arms, "weights": self.router.weights}

    async def _cache_stats(self) -> dict[tuple[str, str], dict[str, int]]:
        """Each arm's response cache (here) and query-embedding cache (its Retriever: one replica's)."""
        out = {}
        for name, pipeline in self.pipelines.items():
            if pipeline.cache is not None:
                out["response", name] = pipeline.cache.stats()
            try:
                q = await call(self.arms[name]["retriever"].cache_stats)
            except Exception:  # noqa: BLE001 - metrics must never fail a scrape
                q = None
            if q is not None:
                out["query_embedding", name] = q
        return out

    @api.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics(self) -> Response:
        await asyncio.to_thread(self.serve_metrics.refresh_replicas, self.app_name)
        self.serve_metrics.caches.stats = await self._cache_stats()
        return Response(self.serve_metrics.render(), media_type="text/plain; version=0.0.4")


def build_app(args: ServeArgs) -> serve.Application:
    """Typed app builder: one Retriever / Reranker / Personalizer / Recommender per arm (split; fused:
    none, the Ingress builds them in its replica), a shared FeedbackSink, and the Ingress that routes
    each user to their arm. Arms given as a registry alias are resolved here, so every (re)deploy
    serves the version that holds the alias now."""
    specs = arm_specs(args)
    handles: dict[str, dict[str, Any]] = {}
    if args.topology == "split":
        for name, spec in specs.items():
            handles[name] = {
                stage: d.options(
                    name=f"{d.name}_{name}",
                    user_config=stage_args(spec)[stage][1],
                    **args.deployment(d.name).options(),
                ).bind(*stage_args(spec)[stage][0])
                for stage, d in ARM_DEPLOYMENTS.items()
            }
    # Ray: @serve.deployment returns a Deployment; mypy keeps the class type (hence the ignores)
    sink = FeedbackSink.options(**args.deployment("FeedbackSink").options()).bind(  # type: ignore[attr-defined]
        args.feedback_dir, args.feedback_flush_events, args.feedback_flush_s
    )
    online = args.online.settings()
    state_server = None
    if online.backend == "embedded":  # one replica holds the server process (more would split the data)
        opts = args.deployment("StateServer").options()
        opts["autoscaling_config"] = {"min_replicas": 1, "max_replicas": 1}
        state_server = StateServer.options(**opts).bind(online.data_dir, online.appendfsync)  # type: ignore[attr-defined]
    return Ingress.options(**args.deployment("Ingress").options()).bind(  # type: ignore[attr-defined]
        specs, handles, sink, args.ingress_settings(), online, state_server
    )
