"""Does scoring starve the reranker replica's event loop? One dynamic batch (``--requests`` x
``--candidates`` real Games-6k titles) scored by ``RerankerCore.score_many`` in ``asyncio.to_thread``, as the
``Reranker`` deployment does, while a ticker coroutine measures how late the event loop wakes it (the time a
new request would wait to be accepted and join the next batch). Per backend: scoring time, loop lag
p50/p99/max, and the share of it spent in tokenization (one fast-tokenizer call per batch).

    nice -n 5 .venv/bin/python -m benchmarks.rerank_loop --threads 1 --repeats 5

The cross-encoder is all-MiniLM-L6-v2's weights with a fresh head (``benchmarks.serve.rerank_models``);
speed does not depend on the head's values.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from types import SimpleNamespace

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


async def lag_while(fn, tick_s: float = 0.001) -> tuple[float, list[float]]:
    """Run ``fn`` in a worker thread; returns (its seconds, the ticker's lateness samples in seconds)."""
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(tick_s)
            lags.append(time.perf_counter() - t0 - tick_s)

    tick = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    await asyncio.to_thread(fn)
    took = time.perf_counter() - t0
    done.set()
    await tick
    return took, lags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", default="../shared/data/amazon-games-6k")
    ap.add_argument("--backends", default="torch,onnx-int8")
    ap.add_argument("--requests", type=int, default=16, help="requests in the dynamic batch")
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime intra-op threads")
    ap.add_argument("--repeats", type=int, default=5)
    ns = ap.parse_args()
    import pandas as pd

    from benchmarks.serve import rerank_models
    from recsys.models.cross_encoder import tokenize_by_length
    from recsys.search.stages import RerankerCore

    titles = (
        pd.read_csv(os.path.join(ns.items, "Games-6k.item"), sep="\t")["title:token_seq"].dropna().tolist()
    )
    rng = random.Random(0)
    requests = [
        (" ".join(rng.choice(titles).split()[: rng.randint(1, 3)]), rng.sample(titles, ns.candidates))
        for _ in range(ns.requests)
    ]
    models = rerank_models(
        SimpleNamespace(rerank_model=None, rerank_max_length=ns.max_length, variants=ns.backends)
    )
    out = {}
    for kind in ns.backends.split(","):
        core = RerankerCore(models[kind], "", ns.max_length, device="cpu", backend=kind, threads=ns.threads)
        pairs = [(q, t) for q, texts in requests for t in texts]
        core.score_many(requests[:2])  # warm-up
        took, lags, tok = [], [], []
        for _ in range(ns.repeats):
            s, lag = asyncio.run(lag_while(lambda core=core: core.score_many(requests)))
            took.append(s)
            lags += lag
            t0 = time.perf_counter()
            list(tokenize_by_length(core.cross.tokenizer, pairs, core.cross.max_length, core.batch_size))
            tok.append(time.perf_counter() - t0)
        out[kind] = {
            "pairs": len(pairs),
            "score_ms": statistics.median(took) * 1000,
            "pairs_per_s": len(pairs) / statistics.median(took),
            "tokenize_share": statistics.median(tok) / statistics.median(took),
            "loop_lag_p50_ms": float(np.percentile(lags, 50)) * 1000 if lags else float("nan"),
            "loop_lag_p99_ms": float(np.percentile(lags, 99)) * 1000 if lags else float("nan"),
            "loop_lag_max_ms": max(lags) * 1000 if lags else float("nan"),
            "ticks": len(lags),
        }
        print(
            kind,
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out[kind].items()}),
            flush=True,
        )
    kinds = ns.backends.split(",")
    if len(kinds) > 1:
        ratio = out[kinds[-1]]["pairs_per_s"] / out[kinds[0]]["pairs_per_s"]
        print(f"ratio pairs/s {kinds[-1]} / {kinds[0]}: {ratio:.2f}")


if __name__ == "__main__":
    main()
