"""What query understanding and the learned ranker add to a /search request, in-process (CPU).

    PYTHONPATH=$PWD python -m benchmarks.search_quality_cost --config configs/evaluate/home-depot-search.yaml \
        --baseline hybrid --variant hybrid_qu_ltr --queries 200

Builds two ablation rows of an evaluate config's ``search.variants`` exactly as the ``search`` protocol
does (the served arm's pipeline, in this process), sends the same judged test queries through each in
alternation (3 warm-up passes first) and prints per-request p50 / p95 of both and the p50 difference:
the target is <= 5 ms added at p50 (issue #30). The baseline is named and measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np

from recsys.config.loader import load_config
from recsys.evaluation.config import EvaluateConfig
from recsys.experiments.search import load_judged, serve_pipeline
from recsys.search.pipeline import SearchRequest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/evaluate/home-depot-search.yaml")
    p.add_argument("--baseline", default="hybrid")
    p.add_argument("--variant", default="hybrid_qu_ltr")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--out", default="runs/bench/search_quality_cost.json")
    ns = p.parse_args()
    cfg = load_config(EvaluateConfig, ns.config)
    sc = cfg.search
    assert sc is not None, f"{ns.config} has no search section"
    rows = {v.name: v for v in sc.variants}
    pipes = {name: serve_pipeline(sc, rows[name])[1] for name in (ns.baseline, ns.variant)}
    queries = [q.query for q in load_judged(sc)[0]][: ns.queries]
    times: dict[str, list[float]] = {n: [] for n in pipes}

    async def one(name: str, q: str) -> None:
        t0 = time.perf_counter()
        await pipes[name].search(SearchRequest(query=q, k=10))
        times[name].append((time.perf_counter() - t0) * 1000)

    async def run() -> None:
        for q in queries[:3]:  # warm-up: caches, lazy imports
            for name in pipes:
                await one(name, q)
        for v in times.values():
            v.clear()
        for q in queries:
            for name in pipes:
                await one(name, q)

    asyncio.run(run())
    out = {
        name: {"p50_ms": float(np.percentile(t, 50)), "p95_ms": float(np.percentile(t, 95)), "n": len(t)}
        for name, t in times.items()
    }
    out["added_p50_ms"] = out[ns.variant]["p50_ms"] - out[ns.baseline]["p50_ms"]
    print(json.dumps(out, indent=2))
    from pathlib import Path

    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
