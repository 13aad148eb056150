"""Load generators shared by the serving benchmarks (``benchmarks.serve``, ``benchmarks.serve_reranker``):
latency percentiles and open / closed loops against a Reranker DeploymentHandle."""

from __future__ import annotations

import asyncio
import random
import time

import numpy as np


def pct(xs: list[float], q: float) -> float:
    """The ``q``-th percentile of latencies ``xs`` (seconds), in ms; NaN for none."""
    return float(np.percentile(xs, q)) * 1000 if xs else float("nan")


async def open_loop(
    handle,
    queries,
    texts,
    rate: float,
    duration: float,
    k: int,
    rng: random.Random,
    max_inflight: int = 1000,
    drain_s: float = 30.0,
) -> dict:
    """Requests sent on a fixed schedule whatever the replies; past ``max_inflight`` outstanding
    requests new ones are shed (counted), so an overloaded replica ends the run instead of queueing
    without bound. Requests still open ``drain_s`` after the last send count as errors."""
    lat, sizes, errors, tasks, shed = [], [], 0, [], 0

    async def one(q, cands):
        nonlocal errors
        t0 = time.perf_counter()
        try:
            out = await handle.rerank.remote(q, cands)
            lat.append(time.perf_counter() - t0)
            sizes.append(out["batch_size"])
        except Exception:  # noqa: BLE001 - counted, the run goes on
            errors += 1

    start = time.perf_counter()
    i = 0
    while (now := time.perf_counter()) - start < duration:
        due = start + i / rate
        if due > now:
            await asyncio.sleep(due - now)
        i += 1
        if len(tasks) - len(lat) - errors >= max_inflight:
            shed += 1
            continue
        tasks.append(asyncio.create_task(one(rng.choice(queries), rng.sample(texts, k))))
    _, pending = await asyncio.wait(tasks, timeout=drain_s)
    for t in pending:
        t.cancel()
    errors += len(pending)
    wall = time.perf_counter() - start
    return {
        "offered_rps": rate,
        "achieved_rps": len(lat) / wall,
        "requests": i,
        "errors": errors,
        "shed": shed,
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "p99_ms": pct(lat, 99),
        "mean_batch": float(np.mean(sizes)) if sizes else 0.0,
    }


async def closed_loop(
    handle, queries, texts, concurrency: int, duration: float, k: int, rng: random.Random
) -> dict:
    done, lat, sizes = 0, [], []
    end = time.perf_counter() + duration

    async def worker():
        nonlocal done
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            out = await handle.rerank.remote(rng.choice(queries), rng.sample(texts, k))
            lat.append(time.perf_counter() - t0)
            sizes.append(out["batch_size"])
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return {
        "rps": done / (time.perf_counter() - t0),
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "mean_batch": float(np.mean(sizes)),
    }
