"""Serving benchmark on the local config (real Games-6k catalog), every figure from one run.

    .venv/bin/python -m benchmarks.serve --config configs/serve/local.yaml --soak-s 300

Sections (``--sections``): latency (p50/p95/p99 + throughput of /search, /recommend, /suggest at
concurrency 1, 8, 32), overhead (HTTP /search p50 minus the same pipeline in-process), batching
(reranker @serve.batch on vs off at concurrency 32, throughput ratio), autoscale (load ramp: reranker
replicas 1 -> >=2 and back, failed requests), kill (a reranker replica killed under load: success
rate), soak (sustained rate: errors and replica memory over time), recall (ANN recall@10 vs exact
from the index manifest), variants (not in the default list: a real cross-encoder reranking 50 candidates,
torch fp32 vs ONNX int8 -- p50 at 1 client, throughput at saturation, p99 at half saturation, the realized
batch-size histogram, batched vs unbatched at 32 clients, a repeated query from the response cache; prints
ratios: ``--sections variants``). Prints a table and writes JSON (``--out``). Timings on a shared 2-core
machine are noisy: compare ratios taken in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from benchmarks.serve_load import closed_loop, pct

ROOT = Path(__file__).resolve().parents[1]


class Workload:
    """Real requests: queries from catalog titles (first 1-3 words), known and unknown users."""

    def __init__(self, artifacts: str, seed: int = 0):
        import pandas as pd

        from recsys.retrieval.artifacts import resolve_version

        path = resolve_version(artifacts)
        titles = pd.read_parquet(path / "items.parquet", columns=["title"])["title"].tolist()
        users = pd.read_parquet(path / "users.parquet", columns=["user_id"])["user_id"].tolist()
        self.rng = random.Random(seed)
        self.queries = [
            " ".join(t.split()[: self.rng.randint(1, 3)])
            for t in self.rng.sample(titles, min(2000, len(titles)))
        ]
        self.users = self.rng.sample(users, min(2000, len(users))) + [f"new-user-{i}" for i in range(200)]

    def request(self, endpoint: str) -> tuple[str, str, dict]:
        user = self.rng.choice(self.users)
        if endpoint == "search":
            return (
                "POST",
                "/search",
                {"json": {"query": self.rng.choice(self.queries), "user_id": user, "k": 10}},
            )
        if endpoint == "recommend":
            return "POST", "/recommend", {"json": {"user_id": user, "k": 10}}
        q = self.rng.choice(self.queries)
        return "GET", "/suggest", {"params": {"q": q[: self.rng.randint(2, max(2, len(q)))], "k": 8}}


async def drive(
    url: str,
    work: Workload,
    endpoint: str,
    concurrency: int,
    duration_s: float,
    rate: float | None = None,
    headers: dict | None = None,
) -> dict:
    """Closed loop with ``concurrency`` workers (or open loop at ``rate`` req/s) for ``duration_s``."""
    lat, errors, codes = [], 0, {}
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers=headers or {}) as client:
        end = time.perf_counter() + duration_s

        async def one(ep: str) -> None:
            nonlocal errors
            method, path, kw = work.request(ep)
            t0 = time.perf_counter()
            try:
                r = await client.request(method, path, **kw)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors += 1
            except Exception:  # noqa: BLE001 - a failed request is a data point
                errors += 1
                codes["exc"] = codes.get("exc", 0) + 1

        async def worker() -> None:
            while time.perf_counter() < end:
                await one(endpoint)

        t0 = time.perf_counter()
        if rate is None:
            await asyncio.gather(*[worker() for _ in range(concurrency)])
        else:
            tasks = []
            while time.perf_counter() < end:
                tasks.append(asyncio.create_task(one(endpoint)))
                await asyncio.sleep(1.0 / rate)
            await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    return {
        "endpoint": endpoint,
        "concurrency": concurrency,
        "requests": len(lat) + errors,
        "errors": errors,
        "codes": {str(k): v for k, v in codes.items()},
        "p50_ms": pct(lat, 50),
        "p95_ms": pct(lat, 95),
        "p99_ms": pct(lat, 99),
        "rps": len(lat) / wall,
    }


def replicas(app: str = "recsys") -> dict[str, int]:
    from ray import serve

    st = serve.status().applications.get(app)
    return {n: d.replica_states.get("RUNNING", 0) for n, d in (st.deployments if st else {}).items()}


def _floor_probe(url: str, body: dict, n: int) -> float:
    """p50 ms of a FastAPI ingress that returns a constant, deployed on the same cluster and proxy: the
    least any Serve HTTP request costs here (proxy, the proxy -> replica call, FastAPI, the client)."""
    from fastapi import FastAPI
    from ray import serve

    api = FastAPI()

    @serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.01})
    @serve.ingress(api)
    class Floor:
        @api.post("/")
        async def echo(self, req: dict) -> dict:
            return {"ok": True, "fields": len(req)}

    serve.run(Floor.bind(), name="floor-probe", route_prefix="/floor-probe")
    lat = []
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            for i in range(n + 10):
                t0 = time.perf_counter()
                c.post("/floor-probe/", json=body).raise_for_status()
                if i >= 10:  # warm-up excluded
                    lat.append(time.perf_counter() - t0)
    finally:
        serve.delete("floor-probe")
    return statistics.median(lat) * 1000


def inprocess_search(args) -> Callable[[dict], object]:
    """``search(body) -> SearchResult``: the /search pipeline of every arm built in this process
    (``local_pipelines``, as the fused topology builds it), each request routed to its arm as the
    Ingress routes it and parsed by the same schema. Call it from a thread without an event loop."""
    from recsys.serving.arms import local_pipelines
    from recsys.serving.router import ABRouter
    from recsys.serving.schemas import SearchRequest

    router = ABRouter({arm.name: arm.weight for arm in args.arms}, args.ab_salt)
    pipelines = local_pipelines(args)
    runner = asyncio.Runner()  # one event loop for every call: asyncio.run's setup is not the pipeline's cost

    def search(body: dict):
        req = SearchRequest.model_validate(body)
        return runner.run(pipelines[router.assign(req.user_id)].search(req.to_search()))

    search.close = runner.close  # type: ignore[attr-defined]
    return search


def section_overhead(url: str, work: Workload, artifacts: str, args, n: int = 60) -> dict:
    """HTTP /search p50 (concurrency 1) minus the same pipeline called in-process; and the floor: a
    constant-answer Serve app on the same proxy, i.e. what no app on this cluster can get under."""
    import torch

    # the same torch threads as the replicas (the reranker's, the heaviest step), so the difference
    # is what Serve adds (proxy, hops, serialisation), not a different thread count
    dep = args.deployment("Reranker")
    threads, before = dep.threads or max(1, int(round(dep.num_cpus))), torch.get_num_threads()
    # one in-process pipeline per A/B arm with that arm's settings, each request routed as the Ingress
    # routes it: the arms differ (e.g. arm B retrieves 200 dense candidates), so comparing every HTTP
    # request with arm A's pipeline alone would misstate the overhead
    pipeline = inprocess_search(args)
    torch.set_num_threads(threads)  # after building: the stages set their replica's threads
    reqs = [work.request("search")[2]["json"] for _ in range(n)]
    for r in reqs[:10]:
        pipeline(r)
    inproc = []
    for r in reqs:
        t0 = time.perf_counter()
        pipeline(r)
        inproc.append(time.perf_counter() - t0)
    http_lat = []
    with httpx.Client(base_url=url, timeout=60) as c:
        in_replica = []
        for r in reqs:
            t0 = time.perf_counter()
            resp = c.post("/search", json=r)
            http_lat.append(time.perf_counter() - t0)
            resp.raise_for_status()
            in_replica.append(float(resp.headers["server-timing"].split("dur=")[1]) / 1000)
    # interleave a second in-process pass so machine load drifts affect both sides alike
    inproc2 = []
    for r in reqs:
        t0 = time.perf_counter()
        pipeline(r)
        inproc2.append(time.perf_counter() - t0)
    torch.set_num_threads(before)
    pipeline.close()
    floor = _floor_probe(url, reqs[0], n)
    p_in = statistics.median(inproc + inproc2) * 1000
    p_http = statistics.median(http_lat) * 1000
    # where the overhead sits: inside the Ingress replica (its Server-Timing header: FastAPI parsing,
    # the pipeline, serialisation) or outside it (HTTP proxy, the proxy -> replica call, the client)
    outside = [h - i for h, i in zip(http_lat, in_replica)]
    return {
        "http_p50_ms": p_http,
        "inprocess_p50_ms": p_in,
        "overhead_ms": p_http - p_in,
        "torch_threads": threads,
        "serve_floor_p50_ms": floor,
        "overhead_above_floor_ms": p_http - p_in - floor,
        "in_replica_p50_ms": statistics.median(in_replica) * 1000,
        "outside_replica_p50_ms": statistics.median(outside) * 1000,
        "reranker": {
            arm.name: "cross_encoder"
            if args.for_arm(arm, "rerank").model
            else "bi_encoder fallback (stored vectors)"
            for arm in args.arms
        },
    }


async def section_batching(
    work: Workload, concurrency: int, duration_s: float, top_n: int, artifacts: str, rerank_args
) -> dict:
    """One Reranker replica (its own app, fixed at 1 replica so autoscaling cannot blur the
    comparison) called through its DeploymentHandle at ``concurrency``: batching on vs off."""
    from ray import serve

    from recsys.serving.deployments import Reranker

    app = Reranker.options(
        name="RerankerBench",
        num_replicas=1,
        max_ongoing_requests=concurrency * 2,
        ray_actor_options={"num_cpus": 0.25},
        user_config={"version": "latest"},
    ).bind(artifacts, rerank_args.settings())
    handle = serve.run(app, name="bench-rerank", route_prefix=None)
    texts = [q + " - " + q for q in work.queries]

    async def run(batching: bool) -> dict:
        await handle.reconfigure.remote(
            {
                "version": "latest",
                "batching": batching,
                "max_batch_size": 32,
                "batch_wait_timeout_s": 0.01,
                "eager_when_idle": True,
            }
        )
        return await closed_loop(handle, work.queries, texts, concurrency, duration_s, top_n, work.rng)

    off = await run(False)
    on = await run(True)
    serve.delete("bench-rerank")
    return {
        "concurrency": concurrency,
        "candidates": top_n,
        "on": on,
        "off": off,
        "ratio": on["rps"] / max(off["rps"], 1e-9),
    }


async def section_autoscale(url: str, work: Workload, concurrency: int, load_s: float, idle_s: float) -> dict:
    timeline, every = [], []  # Reranker_A's replicas; every deployment's (which one a load saturates varies)
    start = time.perf_counter()

    async def watch(stop: asyncio.Event):
        while not stop.is_set():
            now = replicas()
            timeline.append((round(time.perf_counter() - start, 1), now.get("Reranker_A", 0)))
            every.append(now)
            await asyncio.sleep(2)

    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(stop))
    load = await drive(url, work, "search", concurrency, load_s)
    await asyncio.sleep(idle_s)
    stop.set()
    await watcher
    # over the whole timeline: a replica started under load may come up a few seconds after it ends
    peak_t = next((t for t, r in timeline if r >= 2), None)
    down_t = next((t for t, r in timeline if peak_t is not None and t > peak_t and r == 1), None)
    return {
        "load_s": load_s,
        "start_replicas": timeline[0][1] if timeline else None,
        "max_replicas": max(r for _, r in timeline),
        "reached_2_at_s": peak_t,
        "back_to_1_at_s": down_t,
        "requests": load["requests"],
        "errors": load["errors"],
        "max_replicas_by_deployment": {
            n: max(e.get(n, 0) for e in every) for n in sorted({k for e in every for k in e})
        },
        "timeline": timeline,
    }


async def section_kill(url: str, work: Workload, concurrency: int, duration_s: float) -> dict:
    import ray

    async def killer():
        await asyncio.sleep(duration_s / 3)
        victims = [
            a
            for a in ray.util.list_named_actors(all_namespaces=True)
            if "Reranker_A" in a["name"] and a["name"].startswith("SERVE_REPLICA")
        ]
        if victims:
            ray.kill(ray.get_actor(victims[0]["name"], namespace=victims[0]["namespace"]), no_restart=True)
        return len(victims)

    kill_task = asyncio.create_task(killer())
    load = await drive(url, work, "search", concurrency, duration_s)
    killed = await kill_task
    ok = load["requests"] - load["errors"]
    return {
        "replicas_before": killed,
        "requests": load["requests"],
        "errors": load["errors"],
        "success_rate": ok / max(load["requests"], 1),
        "codes": load["codes"],
    }


async def section_soak(url: str, work: Workload, rate: float, duration_s: float) -> dict:
    import psutil

    mine = {c.pid for c in psutil.Process(os.getpid()).children(recursive=True)}  # this run's Ray only
    pids = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if "ServeReplica:recsys" in " ".join(p.info["cmdline"] or []) and p.pid in mine
    ]
    mem = []
    start = time.perf_counter()

    async def sample(stop: asyncio.Event):
        while not stop.is_set():
            rss = 0
            for p in pids:
                try:
                    rss += psutil.Process(p).memory_info().rss
                except psutil.Error:
                    pass
            mem.append((round(time.perf_counter() - start), rss / 2**20))
            await asyncio.sleep(10)

    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(stop))
    endpoints = ["search", "recommend", "suggest"]
    per = await asyncio.gather(*[drive(url, work, ep, 4, duration_s, rate=rate / 3) for ep in endpoints])
    stop.set()
    await sampler
    first = np.mean([m for t, m in mem[: max(1, len(mem) // 5)]])
    last = np.mean([m for t, m in mem[-max(1, len(mem) // 5) :]])
    return {
        "rate_rps": rate,
        "duration_s": duration_s,
        "requests": sum(p["requests"] for p in per),
        "errors": sum(p["errors"] for p in per),
        "rss_mib_first": float(first),
        "rss_mib_last": float(last),
        "rss_growth_pct": float(100 * (last - first) / max(first, 1)),
        "p99_ms": {p["endpoint"]: p["p99_ms"] for p in per},
    }


def rerank_models(ns) -> dict[str, str]:
    """The cross-encoder of the ``variants`` section and its compressed variants (built once under
    ``runs/bench/rerank-models``): ``--rerank-model`` (a trained one), else all-MiniLM-L6-v2's weights with a
    fresh classification head (speed does not depend on the head's values; its scores mean nothing)."""
    from recsys.compress.variants import export_variant, is_variant

    root = ROOT / "runs/bench/rerank-models"
    if ns.rerank_model:
        torch_dir = Path(ns.rerank_model).resolve()
    else:
        torch_dir = root / "minilm-l6-fresh-head"
        if not (torch_dir / "recsys_model.json").is_file():
            import torch

            from recsys.models import CrossEncoder

            torch.manual_seed(0)
            CrossEncoder.from_encoder("all-MiniLM-L6-v2", max_length=ns.rerank_max_length).save_pretrained(
                torch_dir
            )
    out = {"torch": str(torch_dir)}
    for kind in ns.variants.split(","):
        if kind != "torch":
            vdir = root / f"{torch_dir.name}-{kind}"
            if not is_variant(vdir):
                export_variant(torch_dir, vdir, kind)
            out[kind] = str(vdir)
    return out


def batch_histogram(url: str) -> dict[str, float]:
    """``recsys_rerank_batch_size`` from /metrics, summed over arms: cumulative bucket counts (le -> n),
    ``_sum`` and ``_count`` (one observation per request: the size of the batch it was scored in)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("recsys_rerank_batch_size"):
            continue
        name, value = line.rsplit(" ", 1)
        if "_bucket{" in name:
            key = "le=" + name.split('le="')[1].split('"')[0]
        else:
            key = name.split("{")[0].removeprefix("recsys_rerank_batch_size_")
        out[key] = out.get(key, 0.0) + float(value)
    return out


def histogram_delta(after: dict[str, float], before: dict[str, float]) -> dict:
    """Requests per batch-size bucket between two scrapes (non-cumulative) and the mean batch size."""
    les = sorted((k for k in after if k.startswith("le=")), key=lambda k: float(k[3:]))
    cum = [after[k] - before.get(k, 0.0) for k in les]
    buckets = {k[3:]: int(c - (cum[i - 1] if i else 0)) for i, (k, c) in enumerate(zip(les, cum))}
    n = after.get("count", 0.0) - before.get("count", 0.0)
    mean = (after.get("sum", 0.0) - before.get("sum", 0.0)) / n if n else float("nan")
    return {"requests": int(n), "mean_batch_size": mean, "buckets": buckets}


async def section_variants(ns, work: Workload, app_cfg: dict) -> dict:
    """/search end to end with a real cross-encoder reranking ``--rerank-top-n`` candidates, one deploy per
    ``--variants`` backend (one arm, one Reranker replica, caches off): p50 at 1 client, throughput at saturation
    (best of 8 and 32 clients), p99 at half that rate (open loop), the realized batch sizes at 32 clients
    (the ``recsys_rerank_batch_size`` histogram of /metrics); for the last variant also @serve.batch off at 32
    clients; then the last variant with the response cache on: one query repeated."""
    from ray import serve

    from recsys.serving.launch import start

    models = rerank_models(ns)
    args = app_cfg["args"]
    dep = dict(args.get("deployments", {}).get("Reranker", {}))
    base = {
        "api_key_env": None,
        "feedback_dir": "runs/bench/feedback",
        "arms": [dict(args["arms"][0], weight=1.0)],
        "deployments": {
            **args.get("deployments", {}),
            "Reranker": {**dep, "autoscaling": {"min_replicas": 1, "max_replicas": 1}},
        },
    }
    rerank = {
        **args.get("rerank", {}),
        "top_n": ns.rerank_top_n,
        "max_length": ns.rerank_max_length,
        "batching": True,
        "max_batch_size": 32,
    }
    kinds = ns.variants.split(",")
    out: dict = {"models": models, "top_n": ns.rerank_top_n, "max_length": ns.rerank_max_length, "runs": {}}

    def deploy(kind: str, cache: bool) -> str:
        caches = (
            {"responses": 4096, "query_embeddings": 16384}
            if cache
            else {"responses": 0, "query_embeddings": 0}
        )
        ov = {**base, "rerank": {**rerank, "model": models[kind], "backend": kind}, "cache": caches}
        url = start(ns.config, port=ns.port, host="127.0.0.1", overrides=ov)["url"]
        with httpx.Client(base_url=url, timeout=30) as c:
            while c.get("/healthz").json().get("status") != "ok":
                time.sleep(1)
        return url

    def show(label: str, r: dict) -> None:
        r["loadavg_1m"] = os.getloadavg()[0]  # the machine is shared: its load as this run ended
        print(
            f"  {label:28s} p50 {r['p50_ms']:7.1f} p99 {r['p99_ms']:7.1f} ms {r['rps']:6.1f} req/s "
            f"errors {r['errors']} (load {r['loadavg_1m']:.0f})",
            flush=True,
        )

    for kind in kinds:
        url = await asyncio.to_thread(deploy, kind, False)
        await drive(url, work, "search", 4, ns.warmup_s)
        r: dict = {"c1": await drive(url, work, "search", 1, ns.latency_s)}
        show(f"{kind} c=1", r["c1"])
        r["c8"] = await drive(url, work, "search", 8, ns.latency_s)
        show(f"{kind} c=8", r["c8"])
        before = await asyncio.to_thread(batch_histogram, url)
        r["c32"] = await drive(url, work, "search", 32, ns.latency_s)
        r["c32_batches"] = histogram_delta(await asyncio.to_thread(batch_histogram, url), before)
        show(f"{kind} c=32 batched", r["c32"])
        print(f"  {kind} c=32 batch sizes: {r['c32_batches']}", flush=True)
        r["saturation_rps"] = max(r["c8"]["rps"], r["c32"]["rps"])
        r["half"] = await drive(url, work, "search", 1, ns.latency_s, rate=r["saturation_rps"] / 2)
        show(f"{kind} open loop {r['saturation_rps'] / 2:.1f}/s", r["half"])
        if kind == kinds[-1]:
            handle = serve.get_deployment_handle("Reranker_A", "recsys")
            await handle.reconfigure.remote(
                {"version": args["arms"][0].get("version", "latest"), "batching": False}
            )
            r["c32_unbatched"] = await drive(url, work, "search", 32, ns.latency_s)
            show(f"{kind} c=32 unbatched", r["c32_unbatched"])
            await handle.reconfigure.remote(
                {"version": args["arms"][0].get("version", "latest"), "batching": True}
            )
            r["c32_again"] = await drive(url, work, "search", 32, ns.latency_s)  # A-B-A: load drift shows
            show(f"{kind} c=32 batched again", r["c32_again"])
        out["runs"][kind] = r
    url = await asyncio.to_thread(deploy, kinds[-1], True)
    body = {"query": "wireless controller ps4", "user_id": "0", "k": 10}
    lat = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        first = time.perf_counter()
        assert (await c.post("/search", json=body)).status_code == 200
        first = time.perf_counter() - first
        for _ in range(ns.cache_repeats):
            t0 = time.perf_counter()
            assert (await c.post("/search", json=body)).status_code == 200
            lat.append(time.perf_counter() - t0)
    out["cache"] = {"first_ms": first * 1000, "repeat_p50_ms": pct(lat, 50), "repeat_p99_ms": pct(lat, 99)}
    print(f"  cache: {out['cache']}", flush=True)
    base_kind, fast = kinds[0], kinds[-1]
    runs = out["runs"]
    out["ratios"] = {
        f"saturation_rps {fast} / {base_kind}": runs[fast]["saturation_rps"]
        / runs[base_kind]["saturation_rps"],
        f"c1 p50 {fast} / {base_kind}": runs[fast]["c1"]["p50_ms"] / runs[base_kind]["c1"]["p50_ms"],
        f"c32 rps batched (mean of before and after) / unbatched ({fast})": (
            runs[fast]["c32"]["rps"] + runs[fast]["c32_again"]["rps"]
        )
        / 2
        / max(runs[fast]["c32_unbatched"]["rps"], 1e-9),
        f"half-saturation p99 / p50 ({fast})": runs[fast]["half"]["p99_ms"] / runs[fast]["half"]["p50_ms"],
    }
    for k, v in out["ratios"].items():
        print(f"  ratio {k}: {v:.2f}", flush=True)
    return out


async def main_async(ns, url: str, work: Workload, args) -> dict:
    out: dict = {}
    secs = set(ns.sections.split(","))
    artifacts = args.arms[0].artifacts
    if "recall" in secs:
        from recsys.retrieval.artifacts import resolve_version

        man = json.loads((resolve_version(artifacts) / "manifest.json").read_text())
        out["recall"] = {"kind": man["ann"]["kind"], **man["metrics"], "items": man["counts"]["items"]}
    if "examples" in secs:  # real answers, for the README
        ex = {}
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            for q in ("zelda ocarina", "wireless controller ps4", "racing game xbox"):
                r = (await c.post("/search", json={"query": q, "user_id": "0", "k": 5})).json()
                ex[f"search:{q}"] = {"arm": r["arm"], "titles": [i["title"] for i in r["items"]]}
            for q in ("pokemn", "call of du", "mari"):
                r = (await c.get("/suggest", params={"q": q, "k": 5})).json()
                ex[f"suggest:{q}"] = [x["text"] for x in r["suggestions"]]
            for body in ({"user_id": "0", "k": 5}, {"user_id": "someone-new", "k": 5}):
                r = (await c.post("/recommend", json=body)).json()
                ex[f"recommend:{body['user_id']}"] = {
                    "strategy": r["strategy"],
                    "titles": [i["title"] for i in r["items"]],
                }
        out["examples"] = ex
        print(json.dumps(ex, indent=1), flush=True)
    if "batching" in secs:
        out["batching"] = await section_batching(
            work, 32, ns.batching_s, args.rerank.top_n, artifacts, args.rerank
        )
        print("  batching", out["batching"], flush=True)
    if "latency" in secs:
        out["latency"] = []
        for ep in ("search", "recommend", "suggest"):
            for conc in (1, 8, 32):
                res = await drive(url, work, ep, conc, ns.latency_s)
                out["latency"].append(res)
                print(
                    f"  {ep:9s} c={conc:2d}: p50 {res['p50_ms']:7.1f} p95 {res['p95_ms']:7.1f} "
                    f"p99 {res['p99_ms']:7.1f} ms "
                    f"{res['rps']:6.1f} req/s errors {res['errors']}",
                    flush=True,
                )
    if "overhead" in secs:
        out["overhead"] = await asyncio.to_thread(section_overhead, url, work, artifacts, args)
        print("  overhead", out["overhead"], flush=True)
    if "autoscale" in secs:
        out["autoscale"] = await section_autoscale(url, work, 32, ns.ramp_s, ns.idle_s)
        print("  autoscale", {k: v for k, v in out["autoscale"].items() if k != "timeline"}, flush=True)
    if "kill" in secs:
        out["kill"] = await section_kill(url, work, 16, ns.kill_s)
        print("  kill", out["kill"], flush=True)
    if "soak" in secs:
        out["soak"] = await section_soak(url, work, ns.soak_rate, ns.soak_s)
        print("  soak", out["soak"], flush=True)
    if "variants" in secs:  # last: it redeploys the app once per variant
        from recsys.serving.launch import read_serve_config

        out["variants"] = await section_variants(ns, work, read_serve_config(ns.config)["applications"][0])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/serve/local.yaml")
    p.add_argument("--port", type=int, default=8011)
    p.add_argument("--sections", default="recall,examples,batching,latency,overhead,autoscale,kill,soak")
    p.add_argument("--latency-s", type=float, default=15)
    p.add_argument("--batching-s", type=float, default=20)
    p.add_argument("--ramp-s", type=float, default=60)
    p.add_argument("--idle-s", type=float, default=45)
    p.add_argument("--kill-s", type=float, default=45)
    p.add_argument("--soak-s", type=float, default=300)
    p.add_argument("--soak-rate", type=float, default=6.0)
    p.add_argument(
        "--rerank-model",
        default=None,
        help="a cross-encoder directory (recsys run train --config local) served as every arm's reranker; "
        "default: the config's rerank.model. The variants section compresses it (default there: "
        "all-MiniLM-L6-v2 with a fresh head)",
    )
    p.add_argument(
        "--topology",
        choices=["split", "fused"],
        default=None,
        help="override the config's topology (fused: no autoscale/kill/batching sections, they target Reranker_A)",
    )
    p.add_argument(
        "--fast-ingress",
        action="store_true",
        help="start Ray with Serve's HAProxy ingress + throughput-optimized mode (as `recsys serve --fast-ingress`)",
    )
    p.add_argument(
        "--cache",
        action="store_true",
        help="keep the config's /search response and query-embedding caches (default: off, so the "
        "workload's repeated queries measure the pipeline, not the cache)",
    )
    p.add_argument(
        "--variants",
        default="torch,onnx-int8",
        help="variants section: rerank backends compared, the first is the baseline (torch = fp32 PyTorch)",
    )
    p.add_argument("--rerank-top-n", type=int, default=50, help="variants section: candidates reranked")
    p.add_argument("--rerank-max-length", type=int, default=64, help="variants section: query + title tokens")
    p.add_argument("--warmup-s", type=float, default=5)
    p.add_argument("--cache-repeats", type=int, default=200)
    p.add_argument("--out", default="runs/bench/serve.json")
    ns = p.parse_args()
    os.chdir(ROOT)
    import ray
    from ray import serve

    from recsys.runtime import FAST_INGRESS_ENV, JOB_ENV
    from recsys.serving.launch import read_serve_config, start, validate_args

    os.environ.update(JOB_ENV)
    if ns.fast_ingress:
        os.environ.update(FAST_INGRESS_ENV)
    for attempt in range(3):  # a loaded machine can miss Ray's fixed 30 s node-startup window
        try:
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                runtime_env={"env_vars": dict(JOB_ENV)},
                log_to_driver=False,
            )
            break
        except Exception as exc:  # noqa: BLE001
            print(f"ray.init failed ({exc}); retry {attempt + 1}/3", flush=True)
            ray.shutdown()
            if attempt == 2:
                raise
            time.sleep(10)
    app_cfg = read_serve_config(ns.config)["applications"][0]
    overrides = {"api_key_env": None, "feedback_dir": "runs/bench/feedback"}
    if not ns.cache:
        overrides["cache"] = {"responses": 0, "query_embeddings": 0}
    if ns.topology:
        overrides["topology"] = ns.topology
    if ns.rerank_model:
        overrides["rerank"] = {
            **app_cfg["args"].get("rerank", {}),
            "model": str(Path(ns.rerank_model).resolve()),
        }
    args = validate_args({**app_cfg, "args": {**app_cfg["args"], **overrides}}, ns.config)
    t0 = time.perf_counter()
    info = {"url": f"http://127.0.0.1:{ns.port}"}
    if ns.sections != "variants":  # the variants section deploys its own apps
        info = start(ns.config, port=ns.port, host="127.0.0.1", overrides=overrides)
        with httpx.Client(base_url=info["url"], timeout=30) as c:
            while c.get("/healthz").json().get("status") != "ok":
                time.sleep(1)
        print(
            f"app up in {time.perf_counter() - t0:.0f}s at {info['url']}; replicas {replicas()}", flush=True
        )
    try:
        result = asyncio.run(main_async(ns, info["url"], Workload(args.arms[0].artifacts), args))
    finally:
        serve.shutdown()
        ray.shutdown()
    result["config"] = ns.config
    result["serve_env"] = {k: os.environ.get(k, "0") for k in FAST_INGRESS_ENV}
    result["command"] = " ".join(sys.argv)
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "latency"}, indent=1, default=str)[:4000])


if __name__ == "__main__":
    main()
