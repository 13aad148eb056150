"""What merchandising rules add to a /search request, in-process (CPU), on the Home Depot catalog.

    PYTHONPATH=$PWD python -m benchmarks.search_rules --queries 500 --candidates 200

The same ``SearchPipeline`` with and without a rules stage, the same queries (real shoppers' queries from
``home-depot-search/judgments.csv``) sent through both in alternation (warm-up first). The stages around the
rules are fast stand-ins with the deployment's page logic: a retriever returning ``--candidates`` catalog rows
per query (a fixed pseudo-random draw per query), no reranker (weight 0, as configs/serve/home-depot-search.yaml)
and a personalizer that orders by relevance and builds catalog records with ``IndexArtifacts.item_records``
(54,667 real titles), so the measured difference is what the rules path adds: records for every candidate
instead of one page, the trigger match and the rule actions. Rule sets: none (the named baseline), the
shipped ``configs/serve/rules/home-depot-search.yaml`` and ``--synthetic`` rules (each a contains / exact /
regex trigger drawn from the queries with a boost, bury or pin: worst case, most rules evaluated per query).
Prints p50 / p95 per set, the p50 added and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.retrieval.artifacts import IndexArtifacts
from recsys.search import InProcess, RerankSettings, SearchPipeline, SearchRequest
from recsys.search.rules import RulesSource, normalize_query

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "home-depot-search"


class Catalog:
    """The two stand-in stages over a catalog table (``item_id``, ``title``)."""

    def __init__(self, items: pd.DataFrame, candidates: int):
        self.items, self.n = items, candidates
        self.row_of = {iid: i for i, iid in enumerate(items["item_id"])}

    async def retrieve(self, query: str, filters: dict[str, Any], n: int) -> dict[str, Any]:
        rng = np.random.default_rng(zlib.crc32(query.encode()))
        rows = rng.choice(len(self.items), size=max(n, self.n), replace=False)
        ids = self.items["item_id"].to_numpy()[rows]
        fused = np.linspace(1.0, 0.0, len(rows))
        return {
            "version": "v1",
            "candidates": [
                {"item_id": str(i), "row": int(r), "text": "", "fused": float(f)}
                for i, r, f in zip(ids, rows, fused)
            ],
        }

    async def personalize(
        self, candidates: list[dict[str, Any]], user_id: Any, country: Any, offset: int, k: int
    ) -> dict[str, Any]:
        known = [dict(c, row=self.row_of[c["item_id"]]) for c in candidates if c["item_id"] in self.row_of]
        ranked = sorted(known, key=lambda c: -c["relevance"])
        page = ranked[offset : offset + k]
        records = IndexArtifacts.item_records(self, [c["row"] for c in page])  # type: ignore[arg-type]
        items = [
            dict(r, score=round(c["relevance"], 6), position=offset + i)
            for i, (r, c) in enumerate(zip(records, page))
        ]
        return {"items": items, "cold_start": True, "version": "v1"}


def synthetic_rules(queries: list[str], items: pd.DataFrame, n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    lines = ["rules:"]
    for j in range(n):
        q = normalize_query(queries[int(rng.integers(len(queries)))])
        word = q.split()[0] if q.split() else "x"
        trigger = [
            f"{{contains: {json.dumps(word)}}}",
            f"{{exact: {json.dumps(q)}}}",
            f"{{regex: {json.dumps('^' + re.escape(word))}}}",
        ][j % 3]
        item = str(items["item_id"].iloc[int(rng.integers(len(items)))])
        action = [
            f"boost: [{{items: {{title_contains: {json.dumps(word)}}}, amount: 0.5}}]",
            f"bury: [{{items: {{item_ids: [{json.dumps(item)}]}}, amount: 0.5}}]",
            f"pin: [{{item_id: {json.dumps(item)}, position: {j % 5}}}]",
        ][j % 3]
        lines.append(f"  - {{name: r{j}, when: {{query: {trigger}}}, {action}}}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--candidates", type=int, default=200, help="per query (the served 100 + 100 hybrid)")
    p.add_argument("--synthetic", type=int, default=200, help="rules in the synthetic rule set")
    p.add_argument("--out", default="runs/bench/search_rules.json")
    ns = p.parse_args()
    items = pd.read_csv(DATA / "products.csv", dtype=str, encoding="utf-8").rename(
        columns={"product_uid": "item_id", "product_title": "title"}
    )
    queries = pd.read_csv(DATA / "judgments.csv", dtype=str, encoding="utf-8")[
        "search_term"
    ].drop_duplicates()
    queries = queries.sample(n=min(ns.queries, len(queries)), random_state=0).tolist()
    out_dir = Path(ns.out).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    synth = out_dir / "search_rules_synthetic.yaml"
    synth.write_text(synthetic_rules(queries, items, ns.synthetic))
    stages = Catalog(items, ns.candidates)
    rr = RerankSettings(None, 32, 50, 0.0, "auto", "auto", 0, False)
    sets = {
        "no rules": None,
        "home-depot-search.yaml": RulesSource(ROOT / "configs/serve/rules/home-depot-search.yaml"),
        f"synthetic ({ns.synthetic} rules)": RulesSource(synth),
    }
    pipes = {
        name: SearchPipeline(InProcess(stages), InProcess(object()), InProcess(stages), rr, rules=src)
        for name, src in sets.items()
    }
    times: dict[str, list[float]] = {n: [] for n in pipes}
    cpu: dict[str, list[float]] = {n: [] for n in pipes}
    fired: dict[str, int] = {n: 0 for n in pipes}

    async def one(name: str, q: str) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()  # async stand-ins: the request runs in this thread
        res = await pipes[name].search(SearchRequest(query=q, k=10))
        times[name].append((time.perf_counter() - t0) * 1000)
        cpu[name].append((time.thread_time() - c0) * 1000)
        fired[name] += bool(getattr(res, "rules_fired", ()))

    async def run() -> None:
        for q in queries[:20]:
            for name in pipes:
                await one(name, q)
        for name in pipes:
            times[name].clear()
            cpu[name].clear()
            fired[name] = 0
        for q in queries:
            for name in pipes:
                await one(name, q)

    asyncio.run(run())
    base = float(np.percentile(times["no rules"], 50))
    base_cpu = float(np.percentile(cpu["no rules"], 50))
    out: dict[str, Any] = {"candidates": ns.candidates, "queries": len(queries), "baseline": "no rules"}
    for name, t in times.items():
        p50, c50 = float(np.percentile(t, 50)), float(np.percentile(cpu[name], 50))
        out[name] = {
            "p50_ms": round(p50, 3),
            "p95_ms": round(float(np.percentile(t, 95)), 3),
            "added_p50_ms": round(p50 - base, 3),
            "ratio_p50": round(p50 / base, 2),
            "cpu_p50_ms": round(c50, 3),
            "added_cpu_p50_ms": round(c50 - base_cpu, 3),
            "queries_with_a_rule_fired": fired[name],
        }
        print(
            f"{name:28s} wall p50 {p50:7.3f} ms (p95 {out[name]['p95_ms']:7.3f}) added {p50 - base:+7.3f} ms "
            f"x{p50 / base:.2f} | CPU p50 {c50:6.3f} ms added {c50 - base_cpu:+6.3f} ms | fired {fired[name]}/{len(t)}"
        )
    Path(ns.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
