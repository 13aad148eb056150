"""Ray Serve deployments of one arm (Retriever, Reranker, Personalizer, Recommender) and the shared
FeedbackSink. Index-backed deployments load the version named by ``user_config["version"]`` in
``reconfigure``: a new version is loaded beside the old one and swapped in atomically, so a hot
reload (a lightweight user_config update) drops no requests."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import numpy as np
from ray import serve

from recsys.retrieval.artifacts import IndexArtifacts, resolve_version


def _threads() -> None:
    """Match torch's intra-op threads to the replica's CPU share (oversubscription kills latency)."""
    import torch

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
        wanted = resolve_version(self.root, (config or {}).get("version", "latest")).name
        if self.state is None or wanted != self.version:
            self.state = await asyncio.to_thread(self._load, wanted)
            self.version = wanted
        self.registry = (config or {}).get("registry")  # after the load: /healthz names what is served

    def info(self) -> dict[str, Any]:
        out = {"version": self.version, "loaded": self.state is not None}
        return {**out, "registry": self.registry} if self.registry else out


@serve.deployment
class Retriever(_Versioned):
    def __init__(self, artifacts: str, retrieval: dict[str, Any]):
        _threads()
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
    with ``batching: false`` requests are scored one at a time (the benchmark's baseline)."""

    def __init__(self, artifacts: str, model: str | None, max_length: int):
        _threads()
        self.root, self.model, self.max_length = artifacts, model, max_length
        self.batching = True
        self._serial = asyncio.Lock()
        self._encoder_path: str | None = None

    def _load(self, version: str):
        from recsys.serving.core import RerankerCore

        path = None if self.model else manifest_model_path(self.root, version)
        if self.state is not None and path == self._encoder_path:
            return self.state
        self._encoder_path = path
        return RerankerCore(self.model, path, self.max_length)

    async def reconfigure(self, config: dict[str, Any]) -> None:
        self.batching = bool(config.get("batching", True))
        self._batched.set_max_batch_size(int(config.get("max_batch_size", 16)))
        self._batched.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.01)))
        await super().reconfigure(config)

    async def rerank(self, query: str, texts: list[str]) -> dict[str, Any]:
        if self.batching:
            return await self._batched((query, texts))
        async with self._serial:
            scores = await asyncio.to_thread(self.state.score_many, [(query, texts)])
        return {"scores": scores[0].tolist(), "batch_size": 1}

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _batched(self, requests: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
        scores = await asyncio.to_thread(self.state.score_many, requests)
        return [{"scores": s.tolist(), "batch_size": len(requests)} for s in scores]

    def info(self) -> dict[str, Any]:
        return {**super().info(), "kind": self.state.kind if self.state else None, "batching": self.batching}


def manifest_model_path(root: str, version: str) -> str:
    """The encoder path recorded in a version's manifest."""
    import json

    return json.loads((resolve_version(root, version) / "manifest.json").read_text())["model"]["path"]


def _sequential(path: str | None):
    if not path:
        return None
    _threads()
    from recsys.models import SequentialRecommender

    return SequentialRecommender.from_pretrained(path)


@serve.deployment
class Personalizer(_Versioned):
    def __init__(self, artifacts: str, weights: dict[str, Any]):
        self.root, self.weights = artifacts, dict(weights)
        self.seq_path = self.weights.pop("sequential_model", None)

    def _load(self, version: str):
        from recsys.serving.core import PersonalizerCore

        return PersonalizerCore(IndexArtifacts.load(self.root, version), self.weights, _sequential(self.seq_path))

    def personalize(self, candidates: list[dict[str, Any]], user_id: str | None, country: str | None,
                    offset: int, k: int) -> dict[str, Any]:
        ranked, cold = self.state.personalize(candidates, user_id, country)
        page = ranked[offset:offset + k]
        records = self.state.a.item_records([c["row"] for c in page])
        items = [dict(r, score=round(c["score"], 6), position=offset + i) for i, (r, c) in enumerate(zip(records, page))]
        return {"items": items, "cold_start": cold, "version": self.version}


@serve.deployment
class Recommender(_Versioned):
    def __init__(self, artifacts: str, params: dict[str, Any], weights: dict[str, Any]):
        self.root, self.params, self.weights = artifacts, dict(params), dict(weights)
        self.weights.pop("sequential_model", None)

    def _load(self, version: str):
        from recsys.serving.core import PersonalizerCore, RecommenderCore

        a = IndexArtifacts.load(self.root, version)
        seq = _sequential(self.params.get("model"))
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


def minmax(x: list[float]) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return a
    lo, hi = a.min(), a.max()
    return np.zeros_like(a) if hi - lo < 1e-12 else (a - lo) / (hi - lo)
