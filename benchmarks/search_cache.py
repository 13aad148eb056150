"""In-process /search latency of a repeated query: answered by the response cache vs computed (cache off),
same index, same arm, same process (the fused topology's pipeline, ``local_pipelines``).

    PYTHONPATH=. python benchmarks/search_cache.py --artifacts runs/index/local [--config configs/serve/local.yaml]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

QUERIES = ["zelda", "mario kart", "playstation 4 controller", "call of duty", "pokemon", "xbox one headset"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", required=True, help="an index root (the index job's output_dir)")
    p.add_argument("--config", default="configs/serve/local.yaml")
    p.add_argument("--repeats", type=int, default=30)
    ns = p.parse_args()
    from recsys.search.pipeline import SearchRequest
    from recsys.serving.arms import local_pipelines
    from recsys.serving.launch import read_serve_config, validate_args

    app = read_serve_config(ns.config)["applications"][0]
    arm = {"name": "A", "weight": 1.0, "artifacts": ns.artifacts, "version": "latest"}
    base = {**app["args"], "arms": [arm], "api_key_env": None}
    on = local_pipelines(validate_args({**app, "args": base}, "cache"))["A"]
    off_args = {**base, "cache": {"responses": 0, "query_embeddings": 0}}
    off = local_pipelines(validate_args({**app, "args": off_args}, "no-cache"))["A"]
    runner = asyncio.Runner()
    out = {}
    for name, pipe in (("uncached", off), ("cached", on)):
        lat = []
        for q in QUERIES:
            req = SearchRequest(query=q, user_id="0", k=10)
            first = runner.run(pipe.search(req))  # warm-up; fills the cache
            for _ in range(ns.repeats):
                t0 = time.perf_counter()
                res = runner.run(pipe.search(req))
                lat.append((time.perf_counter() - t0) * 1000)
                assert res.items == first.items
        lat.sort()
        out[name] = {
            "p50_ms": round(statistics.median(lat), 3),
            "p99_ms": round(lat[int(0.99 * len(lat))], 3),
        }
    out["speedup_p50"] = round(out["uncached"]["p50_ms"] / out["cached"]["p50_ms"], 1)
    out["cache"] = on.cache.stats() if on.cache else None
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
