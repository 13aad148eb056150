"""Ray Serve deployments of one arm (Retriever, Reranker, Personalizer, Recommender) and the shared
FeedbackSink. Index-backed deployments load the version named by ``user_config["version"]`` in
``reconfigure``: a new version is loaded beside the old one and swapped in atomically, so a hot
reload (a lightweight user_config update) drops no requests."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
from typing import Any

import numpy as np
from ray import serve

from recsys.retrieval.artifacts import IndexArtifacts, resolve_version


def set_torch_threads(threads: int | None = None) -> None:
    """torch intra-op threads: ``threads`` if configured, else the replica's CPU share (Ray sets
    OMP_NUM_THREADS=1 in fractional-CPU actors, so leaving it alone is not "all cores")."""
    import torch

    if threads:
        torch.set_num_threads(threads)
        return
    try:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    except Exception:  # noqa: BLE001
        cpus = 1.0
    torch.set_num_threads(max(1, int(round(cpus))))


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
            self.state = self._load(wanted)
            self.version = wanted
        self.registry = (config or {}).get("registry")  # after the load: /healthz names what is served

    def info(self) -> dict[str, Any]:
        out = {"version": self.version, "loaded": self.state is not None}
        return {**out, "registry": self.registry} if self.registry else out


@serve.deployment
class Retriever(_Versioned):
    def __init__(self, artifacts: str, retrieval: dict[str, Any], threads: int | None = None):
        set_torch_threads(threads)
        self.root, self.cfg = artifacts, retrieval

    def _load(self, version: str):
        from recsys.retrieval.encoder import TextEncoder
        from recsys.serving.core import RetrieverCore

        a = IndexArtifacts.load(self.root, version, nprobe=self.cfg["nprobe"], ef_search=self.cfg["ef_search"])
        enc = TextEncoder(self.cfg["encoder"] or a.manifest["model"]["path"], max_length=self.cfg["max_length"])
        return RetrieverCore(a, enc, ann_top_n=self.cfg["ann_top_n"], bm25_top_n=self.cfg["bm25_top_n"],
                             ann_weight=self.cfg["ann_weight"], bm25_weight=self.cfg["bm25_weight"], rrf_k=self.cfg["rrf_k"])

    def retrieve(self, query: str, filters: dict[str, Any], n: int) -> dict[str, Any]:
        core = self.state
        supported = core.a.filter_columns()
        bad = [k for k, v in filters.items() if v is not None and k not in supported]
        if bad:
            return {"error": {"field": f"filters.{bad[0]}", "message":
                              f"this catalog has no {bad[0].split('_')[0]!r} column; supported filters: {supported or 'none'}"}}
        return {"version": self.version, "candidates": core.retrieve(query, filters, n)}

    def suggest(self, q: str, k: int) -> dict[str, Any]:
        return {"version": self.version, "suggestions": self.state.suggest(q, k)}

    def info(self) -> dict[str, Any]:
        return {**super().info(), "items": len(self.state.a.items) if self.state else 0}


@serve.deployment
class Reranker(_Versioned):
    """Dynamic batching: concurrent requests are scored in one forward pass (``@serve.batch``);
    with ``batching: false`` requests are scored one at a time (the benchmark's baseline). With
    ``eager_when_idle`` a request that finds no other in flight skips the batch wait: at low traffic
    there is nothing to batch with, and the wait would be pure latency."""

    def __init__(self, artifacts: str, model: str | None, max_length: int, threads: int | None = None):
        set_torch_threads(threads)
        self.root, self.model, self.max_length = artifacts, model, max_length
        self.batching, self.eager_when_idle = True, True
        self._serial = asyncio.Lock()
        self._in_flight = 0  # rerank calls in this replica now (the event loop is single-threaded)
        # A batch queue per instance: a @serve.batch *method* shares one queue across instances and runs
        # each batch with its first request's self, so the fused topology's per-arm rerankers (one
        # process) would score arm B's requests with arm A's model.
        self._batched = serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)(self._score_batch)

    def _load(self, version: str):
        from recsys.serving.core import RerankerCore

        if self.model:  # a cross-encoder does not depend on the index version
            return self.state if self.state is not None else RerankerCore(self.model, "", self.max_length)
        path = resolve_version(self.root, version)
        vectors = np.load(path / "embeddings.npy", mmap_mode="r")  # the fallback reads candidates' vectors
        return RerankerCore(None, manifest_model_path(self.root, version), self.max_length, embeddings=vectors)

    async def reconfigure(self, config: dict[str, Any]) -> None:
        self.set_batching(config)
        await super().reconfigure(config)

    def set_batching(self, config: dict[str, Any]) -> None:
        self.batching = bool(config.get("batching", True))
        self.eager_when_idle = bool(config.get("eager_when_idle", True))
        self._batched.set_max_batch_size(int(config.get("max_batch_size", 16)))
        self._batched.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.01)))

    async def rerank(self, query: str, texts: list[str], rows: list[int] | None = None,
                     version: str | None = None) -> dict[str, Any]:
        """Scores of ``texts`` for ``query``. ``rows`` (their rows in index ``version``) let the
        bi-encoder fallback read stored vectors instead of encoding the texts; during a hot reload the
        retriever may still serve another version than this replica, and then the texts are encoded."""
        if version != self.version:
            rows = None
        self._in_flight += 1
        try:
            if self.batching and not (self.eager_when_idle and self._in_flight == 1):
                return await self._batched((query, texts, rows))
            # alone: batching off scores one request at a time; an idle batching replica scores now
            # (later arrivals batch meanwhile)
            async with self._serial if not self.batching else contextlib.nullcontext():
                scores = await asyncio.to_thread(self.state.score_many, [(query, texts, rows)])
            return {"scores": scores[0].tolist(), "batch_size": 1}
        finally:
            self._in_flight -= 1

    async def _score_batch(self, requests: list[tuple]) -> list[dict[str, Any]]:
        scores = await asyncio.to_thread(self.state.score_many, requests)
        return [{"scores": s.tolist(), "batch_size": len(requests)} for s in scores]

    def info(self) -> dict[str, Any]:
        return {**super().info(), "kind": self.state.kind if self.state else None, "batching": self.batching}


def manifest_model_path(root: str, version: str) -> str:
    """The encoder path recorded in a version's manifest."""
    import json

    return json.loads((resolve_version(root, version) / "manifest.json").read_text())["model"]["path"]


def _sequential(path: str | None, threads: int | None = None):
    if not path:
        return None
    set_torch_threads(threads)
    from recsys.models import SequentialRecommender

    return SequentialRecommender.from_pretrained(path)


@serve.deployment
class Personalizer(_Versioned):
    def __init__(self, artifacts: str, weights: dict[str, Any], threads: int | None = None):
        self.root, self.weights, self.threads = artifacts, dict(weights), threads
        self.seq_path = self.weights.pop("sequential_model", None)

    def _load(self, version: str):
        from recsys.serving.core import PersonalizerCore

        return PersonalizerCore(IndexArtifacts.load(self.root, version), self.weights, _sequential(self.seq_path, self.threads))

    def personalize(self, candidates: list[dict[str, Any]], user_id: str | None, country: str | None,
                    offset: int, k: int) -> dict[str, Any]:
        ranked, cold = self.state.personalize(candidates, user_id, country)
        page = ranked[offset:offset + k]
        records = self.state.a.item_records([c["row"] for c in page])
        items = [dict(r, score=round(c["score"], 6), position=offset + i) for i, (r, c) in enumerate(zip(records, page))]
        return {"items": items, "cold_start": cold, "version": self.version}


@serve.deployment
class Recommender(_Versioned):
    def __init__(self, artifacts: str, params: dict[str, Any], weights: dict[str, Any], threads: int | None = None):
        self.root, self.params, self.weights, self.threads = artifacts, dict(params), dict(weights), threads
        self.weights.pop("sequential_model", None)

    def _load(self, version: str):
        from recsys.serving.core import PersonalizerCore, RecommenderCore

        a = IndexArtifacts.load(self.root, version)
        seq = _sequential(self.params.get("model"), self.threads)
        return RecommenderCore(a, PersonalizerCore(a, self.weights), seq, candidates=self.params["candidates"],
                               diversity=self.params["diversity"], max_per_category=self.params["max_per_category"],
                               history_items=self.params["history_items"])

    def recommend(self, user_id: str | None, item_ids: list[str], k: int, exclude_purchased: bool,
                  country: str | None) -> dict[str, Any]:
        core = self.state
        out = core.recommend(user_id, item_ids, k, exclude_purchased, country)
        records = core.a.item_records(out["rows"])
        items = [dict(r, score=round(float(s), 6), position=i) for i, (r, s) in enumerate(zip(records, out["scores"]))]
        return {"items": items, "cold_start": out["cold_start"], "strategy": out["strategy"],
                "unknown_items": out["unknown_items"], "version": self.version}


@serve.deployment
class FeedbackSink:
    """Buffers events and appends them as hour-partitioned Parquet (by size or age; on shutdown)."""

    def __init__(self, root: str, flush_events: int, flush_s: float):
        self.root, self.flush_events, self.flush_s = os.path.abspath(root), flush_events, flush_s
        self.buffer: list[dict[str, Any]] = []
        self.lock = asyncio.Lock()
        self.last_flush = time.monotonic()
        self._ticker: asyncio.Task | None = None
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
        from recsys.serving.feedback import write_partitioned

        async with self.lock:
            rows, self.buffer = self.buffer, []
            files = await asyncio.to_thread(write_partitioned, rows, self.root) if rows else []
            self.written += len(rows)
            self.last_flush = time.monotonic()
        return {"events": len(rows), "files": files, "total": self.written}

    def __del__(self):  # graceful shutdown: never lose buffered events
        if getattr(self, "buffer", None):
            from recsys.serving.feedback import write_partitioned

            write_partitioned(self.buffer, self.root)
            self.buffer = []


class InProcess:
    """Stands in for a DeploymentHandle in the fused topology: ``h.method.remote(*args)`` runs the
    method in this replica (sync methods in a worker thread, so the event loop keeps serving)."""

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


# One arm's deployments, by the key the Ingress calls them with (both topologies build from this).
ARM_DEPLOYMENTS = {"retriever": Retriever, "reranker": Reranker, "personalizer": Personalizer, "recommender": Recommender}


def fused_arm(spec: dict[str, Any]) -> dict[str, InProcess]:
    """One arm's Retriever, Reranker, Personalizer and Recommender built in this process (the fused
    topology): ``spec[name] = (constructor args, user_config)`` as the split topology binds them."""
    out = {}
    for name, deployment in ARM_DEPLOYMENTS.items():
        init_args, user_config = spec[name]
        obj = deployment.func_or_class(*init_args)
        if isinstance(obj, Reranker.func_or_class):
            obj.set_batching(user_config)
        obj.load_now(user_config)
        out[name] = InProcess(obj)
    return out


def minmax(x: list[float]) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return a
    lo, hi = a.min(), a.max()
    return np.zeros_like(a) if hi - lo < 1e-12 else (a - lo) / (hi - lo)
