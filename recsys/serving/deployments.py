"""Ray Serve deployments of one arm (Retriever, Reranker, Personalizer, Recommender) and the shared
FeedbackSink. Index-backed deployments load the version named by ``user_config["version"]`` in
``reconfigure``: a new version is loaded beside the old one and swapped in atomically, so a hot
reload (a lightweight user_config update) drops no requests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
import time
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import ray
from ray import serve

from recsys.online.catalog import CatalogFollower
from recsys.retrieval.artifacts import IndexArtifacts, read_manifest, resolve_version
from recsys.retrieval.delta import LiveCatalog
from recsys.search.live import LiveContext
from recsys.search.settings import PersonalizeSettings, PersonalizeWeights, RerankSettings, RetrievalSettings
from recsys.search.stages import PersonalizerCore, RerankerCore, load_retriever
from recsys.serving.config import RerankArgs
from recsys.serving.core import RecommenderCore
from recsys.serving.feedback import write_partitioned
from recsys.serving.specs import BatchingSettings, RecommendSettings

if TYPE_CHECKING:
    from recsys.models.base import SavableModel
    from recsys.search.stages import RetrieverCore


def set_torch_threads(threads: int | None = None) -> int:
    """torch intra-op threads: ``threads`` if configured, else the replica's CPU share (Ray sets
    OMP_NUM_THREADS=1 in fractional-CPU actors, so leaving it alone is not "all cores"). Returns the count
    (ONNX Runtime sessions of the replica use it too)."""
    import torch  # lazy: torch costs seconds; only model replicas need it

    if threads:
        torch.set_num_threads(threads)
        return threads
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    except Exception:  # noqa: BLE001
        cpus = 1.0
    n = max(1, int(round(cpus)))
    torch.set_num_threads(n)
    return n


class _Versioned:
    """Shared reload logic: ``self.state`` is replaced whole, never mutated in place."""

    root: str
    state: Any = None
    version: str | None = None
    registry: dict[str, Any] | None = None  # {model_name, alias, version} of an arm served from the registry

    def _load(self, version: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    async def reconfigure(self, config: dict[str, Any]) -> None:
        await asyncio.to_thread(self.load_now, config)

    def load_now(self, config: dict[str, Any] | None) -> None:
        """Load the version ``config`` names unless it is the one served (also used in-process by the
        fused topology, which has no Serve reconfigure)."""
        wanted = resolve_version(self.root, (config or {}).get("version", "latest")).name
        if self.state is None or wanted != self.version:
            state = self._load(wanted)
            with self._catalog_lock():
                self.state, self.version = state, wanted
                self.follower = follower_for(state, (config or {}).get("catalog"))
        self.registry = (config or {}).get("registry")  # after the load: /healthz names what is served

    # --- the live catalog (recsys.online.catalog): the log applied before answering -----------------
    follower: CatalogFollower | None = None
    _lock: threading.Lock | None = None
    _next_poll: float = 0.0

    def _catalog_lock(self) -> threading.Lock:
        if self._lock is None:
            self._lock = threading.Lock()
        return self._lock

    def catalog_sync(self) -> None:
        """Apply the catalog changes logged since the last request (one GET when there are none); the new
        snapshot replaces the state whole. A store failure keeps what was applied (never fails a request)."""
        f = self.follower
        if f is None or time.monotonic() < self._next_poll:
            return
        self._next_poll = time.monotonic() + f.poll_s
        snap = f.sync()
        if snap is None:
            return
        with self._catalog_lock():
            cur = self.state
            if f is self.follower and snap.catalog_seq > getattr(cur.a, "catalog_seq", 0):
                self.state = cur.with_artifacts(snap)

    @property
    def served(self) -> str | None:
        """The version served, with ``+c<seq>`` once catalog changes are applied (the response cache keys on
        it, so a change is never answered from the cache)."""
        seq = getattr(getattr(self.state, "a", None), "catalog_seq", 0)
        return f"{self.version}+c{seq}" if seq and self.version else self.version

    async def served_version(self) -> str | None:
        """The version served now — what the ingress's response cache keys on (caught up with the catalog
        log first, in a worker thread, when the live catalog is on)."""
        if self.follower is not None:
            await asyncio.to_thread(self.catalog_sync)
        return self.served

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.served, "loaded": self.state is not None}
        if self.follower is not None and (
            self.follower.live.applied_seq or self.follower.errors
        ):  # once it acts
            out["catalog"] = {"seq": self.follower.live.applied_seq, **self.follower.live.counts,
                              "errors": self.follower.errors}  # fmt: skip
        return {**out, "registry": self.registry} if self.registry else out


def base_version(version: str | None) -> str | None:
    """``v3+c12`` -> ``v3``: the index version under the live catalog's changes (rows of v3 are unchanged)."""
    return version.split("+c", 1)[0] if version else version


def follower_for(state: Any, cfg: dict[str, Any] | None) -> CatalogFollower | None:
    """A follower of the catalog log for a stage over an index (``state.a``), when the live catalog is on."""
    a = getattr(state, "a", None)
    if not cfg or a is None or not hasattr(state, "with_artifacts"):
        return None
    settings = dataclasses.replace(
        LiveCatalog.settings_for(a), out_of_stock=cfg["out_of_stock"], demote=cfg["demote"]
    )
    f = CatalogFollower(a, lambda: store_url(cfg), cfg["key_prefix"], settings, timeout_s=cfg["timeout_s"])
    f.poll_s = float(cfg.get("poll_s") or 0.0)
    return f


def store_url(cfg: dict[str, Any]) -> str:
    """The online store's URL as a replica resolves it: the external URL (or its env var), else the embedded
    server's, asked of this app's StateServer deployment (called from a worker thread)."""
    if cfg["backend"] == "external":
        return str(cfg["url"] or os.environ[cfg["url_env"]])
    app = serve.get_replica_context().app_name
    return str(serve.get_deployment_handle("StateServer", app).url.remote().result(timeout_s=10))


@serve.deployment
class Retriever(_Versioned):
    def __init__(self, artifacts: str, settings: RetrievalSettings, threads: int | None = None):
        set_torch_threads(threads)
        self.root, self.settings = artifacts, settings

    def _load(self, version: str) -> RetrieverCore:
        return load_retriever(self.root, version, self.settings)

    def retrieve(self, query: str, filters: dict[str, Any], n: int, exact: bool = False) -> dict[str, Any]:
        """Candidates for ``query`` as query understanding rewrote it (``exact``: as typed); ``rewrite``
        says what was searched for and why."""
        self.catalog_sync()
        core = self.state
        supported = core.a.filter_columns()
        bad = [k for k, v in filters.items() if v is not None and k not in supported]
        if bad:
            return {
                "error": {
                    "field": f"filters.{bad[0]}",
                    "message": f"this catalog has no {bad[0].split('_')[0]!r} column; "
                    f"supported filters: {supported or 'none'}",
                }
            }
        rw = core.rewrite(query, exact)
        return {
            "version": self.served,
            "candidates": core.retrieve(rw.query, filters, n),
            "rewrite": {"query": rw.query, "changes": list(rw.changes)},
        }

    def suggest(self, q: str, k: int) -> dict[str, Any]:
        self.catalog_sync()
        return {"version": self.served, "suggestions": self.state.suggest(q, k)}

    def embed_items(self, item_ids: list[str], texts: list[str]) -> dict[str, Any]:
        """Item vectors [len(texts), D] of upserted items by this arm's serving encoder (item tower), keyed in the
        catalog log by the index's encoder id (what every replica of an index with that encoder reads). An item
        whose embedded text is the one served now (a price / stock update) keeps its vector: nothing encoded."""
        from recsys.online.catalog import encoder_id

        self.catalog_sync()
        core, f = self.state, self.follower
        out = np.zeros((len(texts), int(core.a.embeddings.shape[1])), np.float32)
        todo = []
        for i, (iid, text) in enumerate(zip(item_ids, texts)):
            row = core.a.row_of.get(iid)
            if f is not None and row is not None and f.live.text_of(iid) == text:
                out[i] = core.a.embeddings[row]
            else:
                todo.append(i)
        if todo:
            out[todo] = core.encoder.encode([texts[i] for i in todo], kind="item")
        return {"model": encoder_id(core.a.manifest), "vectors": out, "reused": len(texts) - len(todo)}

    async def cache_stats(self) -> dict[str, int] | None:
        """The query-embedding cache's hits / misses / size (None: off). A reload builds a new core, so
        the old version's cache is freed with it (its counts restart)."""
        cache = self.state.query_cache if self.state is not None else None
        return cache.stats() if cache is not None else None

    def info(self) -> dict[str, Any]:
        return {**super().info(), "items": len(self.state.a.items) if self.state else 0}


@serve.deployment
class Reranker(_Versioned):
    """Dynamic batching: concurrent requests are scored in one forward pass (``@serve.batch``);
    with ``batching: false`` requests are scored one at a time (the benchmark's baseline). With
    ``eager_when_idle`` a request that finds no other in flight skips the batch wait: at low traffic
    there is nothing to batch with, and the wait would be pure latency."""

    def __init__(self, artifacts: str, settings: RerankSettings, threads: int | None = None):
        self.threads = set_torch_threads(threads)
        self.root, self.settings = artifacts, settings
        self.model, self.max_length = settings.model, settings.max_length
        self._serial = asyncio.Lock()
        self._in_flight = 0  # rerank calls in this replica now (the event loop is single-threaded)
        # A batch queue per instance: a @serve.batch *method* shares one queue across instances and runs
        # each batch with its first request's self, so the fused topology's per-arm rerankers (one
        # process) would score arm B's requests with arm A's model.
        self._batched = serve.batch(self._score_batch)
        self.set_batching(
            RerankArgs().batching_settings()
        )  # the config's defaults until user_config says more

    def _load(self, version: str) -> RerankerCore:
        if self.model:  # a cross-encoder does not depend on the index version
            return (
                cast(RerankerCore, self.state)
                if self.state is not None
                else RerankerCore(
                    self.model,
                    "",
                    self.max_length,
                    backend=self.settings.backend,
                    precision=self.settings.precision,
                    pad_to_multiple_of=self.settings.pad_to_multiple_of,
                    torch_compile=self.settings.torch_compile,
                    threads=self.threads,
                )
            )
        path = resolve_version(self.root, version)
        vectors = np.load(path / "embeddings.npy", mmap_mode="r")  # the fallback reads candidates' vectors
        return RerankerCore(
            None, manifest_model_path(self.root, version), self.max_length, embeddings=vectors
        )

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """user_config: ``{version[, registry]}`` + :class:`BatchingSettings` fields (ArmSpec.reranker_user_config);
        a field left out (a hand-written user_config override) keeps its current value."""
        self.set_batching(
            dataclasses.replace(
                self.batching_settings,
                **{k: config[k] for k in BatchingSettings.__dataclass_fields__ if k in config},
            )
        )
        await super().reconfigure(config)

    def set_batching(self, b: BatchingSettings) -> None:
        self.batching_settings = b
        self.batching, self.eager_when_idle = b.batching, b.eager_when_idle
        self._batched.set_max_batch_size(b.max_batch_size)
        self._batched.set_batch_wait_timeout_s(b.batch_wait_timeout_s)

    async def rerank(
        self, query: str, texts: list[str], rows: list[int] | None = None, version: str | None = None
    ) -> dict[str, Any]:
        """Scores of ``texts`` for ``query``. ``rows`` (their rows in index ``version``) let the
        bi-encoder fallback read stored vectors instead of encoding the texts; during a hot reload the
        retriever may still serve another version than this replica, and then the texts are encoded."""
        if base_version(version) != self.version:  # live catalog rows past this version are encoded
            rows = None
        self._in_flight += 1
        try:
            if self.batching and not (self.eager_when_idle and self._in_flight == 1):
                return cast(
                    dict[str, Any], await self._batched((query, texts, rows))
                )  # @serve.batch is untyped
            # alone: batching off scores one request at a time; an idle batching replica scores now
            # (later arrivals batch meanwhile)
            async with self._serial if not self.batching else contextlib.nullcontext():
                scores = await asyncio.to_thread(self.state.score_many, [(query, texts, rows)])
            return {"scores": scores[0].tolist(), "batch_size": 1}
        finally:
            self._in_flight -= 1

    async def _score_batch(self, requests: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        scores = await asyncio.to_thread(self.state.score_many, requests)
        return [{"scores": s.tolist(), "batch_size": len(requests)} for s in scores]

    def info(self) -> dict[str, Any]:
        st = self.state
        return {
            **super().info(),
            "kind": st.kind if st else None,
            "backend": st.backend if st else None,
            "batching": self.batching,
        }


def manifest_model_path(root: str, version: str) -> str:
    """The encoder path recorded in a version's manifest."""
    return cast(str, read_manifest(root, version)["model"]["path"])


def _sequential(path: str | None, threads: int | None = None) -> SavableModel | None:
    if not path:
        return None
    set_torch_threads(threads)
    from recsys.models import SequentialRecommender  # lazy: SequentialRecommender imports torch

    return cast(
        "SavableModel", SequentialRecommender.from_pretrained(path)
    )  # recsys.models' lazy names are Any


@serve.deployment
class Personalizer(_Versioned):
    def __init__(self, artifacts: str, settings: PersonalizeSettings, threads: int | None = None):
        self.root, self.settings, self.threads = artifacts, settings, threads

    def _load(self, version: str) -> PersonalizerCore:
        seq = _sequential(self.settings.sequential_model, self.threads)
        return PersonalizerCore(IndexArtifacts.load(self.root, version), self.settings.weights, seq)

    def personalize(
        self,
        candidates: list[dict[str, Any]],
        user_id: str | None,
        country: str | None,
        offset: int,
        k: int,
        live: LiveContext | None = None,
        explain: bool = False,
    ) -> dict[str, Any]:
        self.catalog_sync()
        ranked, cold = self.state.personalize(candidates, user_id, country, live, explain)
        page = ranked[offset : offset + k]
        records = self.state.a.item_records([c["row"] for c in page])
        items = [
            dict(r, score=round(c["score"], 6), position=offset + i, **_reasons(c))
            for i, (r, c) in enumerate(zip(records, page))
        ]
        return {"items": items, "cold_start": cold, "version": self.served}


def _reasons(c: dict[str, Any]) -> dict[str, Any]:
    """The ``reasons`` of an explained item: its score components, rounded like the score, and the detail
    of retrieval (ranks in the dense and lexical lists, the fused RRF score) that made its relevance."""
    if "reasons" not in c:
        return {}
    r = c["reasons"]
    detail = {k: c[k] for k in ("ann_rank", "bm25_rank", "fused", "relevance") if k in c}
    return {"reasons": {"components": {k: round(v, 6) for k, v in r["components"].items()}, "text": r["text"],
                        **({"retrieval": detail} if detail else {})}}  # fmt: skip


@serve.deployment
class Recommender(_Versioned):
    def __init__(
        self,
        artifacts: str,
        settings: RecommendSettings,
        weights: PersonalizeWeights,
        threads: int | None = None,
    ):
        self.root, self.settings, self.weights, self.threads = artifacts, settings, weights, threads

    def _load(self, version: str) -> RecommenderCore:
        a, s = IndexArtifacts.load(self.root, version), self.settings
        return RecommenderCore(
            a,
            PersonalizerCore(a, self.weights),
            _sequential(s.model, self.threads),
            candidates=s.candidates,
            diversity=s.diversity,
            max_per_category=s.max_per_category,
            history_items=s.history_items,
        )

    def recommend(
        self,
        user_id: str | None,
        item_ids: list[str],
        k: int,
        exclude_purchased: bool,
        country: str | None,
        live: LiveContext | None = None,
        explain: bool = False,
    ) -> dict[str, Any]:
        self.catalog_sync()
        core = self.state
        out = core.recommend(user_id, item_ids, k, exclude_purchased, country, live, explain)
        records = core.a.item_records(out["rows"])
        items = [
            dict(
                r, score=round(float(s), 6), position=i, **({"reasons": out["reasons"][i]} if explain else {})
            )
            for i, (r, s) in enumerate(zip(records, out["scores"]))
        ]
        return {
            "items": items,
            "cold_start": out["cold_start"],
            "strategy": out["strategy"],
            "unknown_items": out["unknown_items"],
            "version": self.served,
        }


@serve.deployment
class FeedbackSink:
    """Buffers events and appends them as hour-partitioned Parquet (by size or age; on shutdown)."""

    def __init__(self, root: str, flush_events: int, flush_s: float):
        self.root, self.flush_events, self.flush_s = os.path.abspath(root), flush_events, flush_s
        self.buffer: list[dict[str, Any]] = []
        self.lock = asyncio.Lock()
        self.last_flush = time.monotonic()
        self._ticker: asyncio.Task[None] | None = None
        self.written = 0

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            if self.buffer and time.monotonic() - self.last_flush >= self.flush_s:
                await self.flush()

    async def append(self, rows: list[dict[str, Any]]) -> int:
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())
        self.buffer.extend(rows)
        if len(self.buffer) >= self.flush_events:
            await self.flush()
        return len(rows)

    async def flush(self) -> dict[str, Any]:
        async with self.lock:
            rows, self.buffer = self.buffer, []
            files = await asyncio.to_thread(write_partitioned, rows, self.root) if rows else []
            self.written += len(rows)
            self.last_flush = time.monotonic()
        return {"events": len(rows), "files": files, "total": self.written}

    def __del__(self) -> None:  # graceful shutdown: never lose buffered events
        if getattr(self, "buffer", None):
            write_partitioned(self.buffer, self.root)
            self.buffer = []


# One arm's deployments, by the stage name the Ingress calls them with (both topologies build from this).
ARM_DEPLOYMENTS: dict[str, Any] = {
    "retriever": Retriever,
    "reranker": Reranker,
    "personalizer": Personalizer,
    "recommender": Recommender,
}
