"""Reranker replicas alone (GPU or CPU): latency at a fixed request rate and the @serve.batch ratio.

The project's ``Reranker`` deployment (the same class the Serve app binds) scores ``--candidates``
(query, product text) pairs per request with a cross-encoder, called through its DeploymentHandle:

1. **rate**: open loop at ``--rate`` requests/s per replica for ``--duration`` s with dynamic
   batching on: p50/p95/p99 latency, achieved rate, errors, mean batch size;
2. **batching**: closed loop at ``--concurrency`` workers, batching off (one request per forward
   pass, the baseline) then on: throughput ratio.

A replica takes the GPU when ``--num-gpus`` > 0 (fp16 inference, one pass per dynamic batch).
Texts are real product titles/descriptions from a product-matching set. Latency depends on the
architecture, not the weights, so ``--arch`` builds a random cross-encoder of that size when no
trained ``--model`` is given (``--tokenizer`` names its vocabulary).

    python benchmarks/serve_reranker.py --num-gpus 1 --arch minilm-l6 --tokenizer TOK --rate 500 --candidates 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from serve import pct  # benchmarks/serve.py: latency percentile in ms

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_texts(path: str, n: int = 5000) -> tuple[list[str], list[str]]:
    """Queries (left titles cut to 1-4 words) and candidate texts (right records) of a matching set."""
    from recsys.config.base import InputConfig
    from recsys.data.adapters import read_input

    df = read_input(InputConfig(path=path, preset="product-matching"), "pairs").to_pandas().head(n)
    rng = random.Random(0)
    queries = [" ".join(str(t).split()[: rng.randint(1, 4)]) for t in df["left"]]
    return queries, [str(t) for t in df["right"]]


def build_model(args, out: str) -> str:
    """A trained CrossEncoder directory, or a random one of ``--arch`` saved the recsys way."""
    if args.model:
        return args.model
    from random_encoder import make_random_encoder

    from recsys.models import CrossEncoder

    enc = make_random_encoder(args.arch, args.tokenizer, os.path.join(out, "encoder"))
    ce = CrossEncoder.from_encoder(enc, max_length=args.max_length)
    ce.save_pretrained(os.path.join(out, "cross-encoder"))
    return os.path.join(out, "cross-encoder")


def stub_artifacts(out: str) -> str:
    """The Reranker resolves an index version before loading; a cross-encoder reads nothing from it."""
    root = Path(out) / "artifacts"
    (root / "bench").mkdir(parents=True)
    (root / "bench" / "manifest.json").write_text("{}")
    (root / "latest").write_text("bench\n")
    return str(root)


async def open_loop(handle, queries, texts, rate: float, duration: float, k: int, rng: random.Random,
                    max_inflight: int = 1000, drain_s: float = 30.0) -> dict:
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
    return {"offered_rps": rate, "achieved_rps": len(lat) / wall, "requests": i, "errors": errors, "shed": shed,
            "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99),
            "mean_batch": float(np.mean(sizes)) if sizes else 0.0}


async def closed_loop(handle, queries, texts, concurrency: int, duration: float, k: int, rng: random.Random) -> dict:
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
    return {"rps": done / (time.perf_counter() - t0), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
            "mean_batch": float(np.mean(sizes))}


async def run(args, handle, queries, texts) -> dict:
    rng = random.Random(0)
    batching = {"version": "latest", "batching": True, "max_batch_size": args.max_batch_size,
                "batch_wait_timeout_s": args.batch_wait_s}
    await handle.reconfigure.remote(batching)
    await closed_loop(handle, queries, texts, 8, 3.0, args.candidates, rng)  # warm-up (CUDA kernels, allocator)
    out = {"rate": [await open_loop(handle, queries, texts, r, args.duration, args.candidates, rng) for r in args.rate]}
    await handle.reconfigure.remote({**batching, "batching": False})
    off = await closed_loop(handle, queries, texts, args.concurrency, args.duration, args.candidates, rng)
    await handle.reconfigure.remote(batching)
    on = await closed_loop(handle, queries, texts, args.concurrency, args.duration, args.candidates, rng)
    out["batching"] = {"concurrency": args.concurrency, "off": off, "on": on, "ratio": on["rps"] / max(off["rps"], 1e-9)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(os.environ.get("RECSYS_DATA_ROOT", "../shared/data"),
                                                   "product-matching/abt-buy"))
    ap.add_argument("--model", default=None, help="a trained CrossEncoder directory")
    ap.add_argument("--arch", default="minilm-l6", help="random cross-encoder size when no --model")
    ap.add_argument("--tokenizer", default=None, help="tokenizer directory for --arch (default: the packaged MiniLM)")
    ap.add_argument("--max-length", type=int, default=96)
    ap.add_argument("--num-gpus", type=float, default=0.0)
    ap.add_argument("--num-cpus", type=float, default=1.0)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--rate", type=float, nargs="+", default=[500.0], help="open-loop requests/s (one run each)")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-batch-size", type=int, default=32)
    ap.add_argument("--batch-wait-s", type=float, default=0.005)
    args = ap.parse_args()
    if not args.model and not args.tokenizer:
        from recsys.models.hub import resolve_model_path

        args.tokenizer = resolve_model_path("all-MiniLM-L6-v2")
    import ray
    from ray import serve

    from recsys.runtime import start_local_ray
    from recsys.serving.deployments import Reranker

    queries, texts = load_texts(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(args, tmp)
        start_local_ray(env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}, log_to_driver=False)
        app = Reranker.options(
            name="RerankerBench", num_replicas=1, max_ongoing_requests=max(args.concurrency * 2, 256),
            ray_actor_options={"num_cpus": args.num_cpus, "num_gpus": args.num_gpus},
            user_config={"version": "latest"}).bind(stub_artifacts(tmp), model, args.max_length)
        handle = serve.run(app, name="bench-rerank", route_prefix=None)
        info = handle.info.remote().result()
        res = asyncio.run(run(args, handle, queries, texts))
        serve.shutdown()
        ray.shutdown()
    res["setup"] = {"model": args.model or f"random {args.arch}", "num_gpus": args.num_gpus, "candidates": args.candidates,
                    "max_length": args.max_length, "max_batch_size": args.max_batch_size, "replica": info}
    if args.num_gpus:
        import torch

        res["setup"]["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
