"""Evaluation throughput: full-ranking metrics over a real catalog, recsys vs the common recipe.

Data: Amazon Beauty (leave-one-out test, 12,101 items), N users; scorer: a fixed random 64-d
factor model (the same scores for every contender). Contenders, measured in the same run:

- baseline: score a block of users, take the top 100 per user, build ranx Run/Qrels dicts and call
  ``ranx.evaluate`` (the usual notebook recipe; needs top-k truncation to stay in memory);
- recsys: ``RankingEvaluator`` (exact ranks of targets over the full catalog, no truncation),
  in-process and with ``num_workers=2`` Ray tasks.

Prints seconds and the speed-up ratio vs the baseline, and checks both give the same HR@10.

    .venv/bin/python benchmarks/evaluation.py --users 5000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from recsys.evaluation.evaluators import RankingEvaluator
from recsys.evaluation.protocols import leave_one_out
from recsys.evaluation.scorer import ItemIndex, QueryBatch, gather_scores


class RandomFactors:
    def __init__(self, items, dim: int = 64, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.index = ItemIndex(items)
        self.item_f = rng.normal(size=(len(items), dim)).astype(np.float32)
        self.seed = seed

    def user_f(self, query_ids):
        return np.stack(
            [np.random.default_rng([self.seed, int(q)]).normal(size=self.item_f.shape[1]) for q in query_ids]
        )

    def score(self, batch, item_ids):
        table = self.user_f(batch.query_ids) @ self.item_f.T  # (B, N)
        return gather_scores(table, self.index.lookup(item_ids))


def baseline_ranx(es, scorer, block: int = 512) -> float:
    from ranx import Qrels, Run, evaluate  # lazy: ranx (numba) is only the comparison's baseline

    run, qrels = {}, {}
    cat = es.catalog
    pos = {i: k for k, i in enumerate(cat)}
    for start in range(0, len(es), block):
        rows = range(start, min(start + block, len(es)))
        batch = QueryBatch([str(es.query_ids[i]) for i in rows], [es.histories[i] for i in rows])
        s = scorer.score(batch, cat[None, :])
        for b, i in enumerate(rows):
            s[b, [pos[h] for h in es.histories[i] if h in pos and h not in es.targets[i]]] = -np.inf
        top = np.argpartition(-s, 100, axis=1)[:, :100]
        for b, i in enumerate(rows):
            q = f"q{i:06d}"
            run[q] = {str(cat[j]): float(s[b, j]) for j in top[b]}
            qrels[q] = {t: 1 for t in es.targets[i]}
    return float(
        evaluate(Qrels(qrels), Run(run), ["ndcg@10", "hit_rate@10", "recall@20", "mrr@100"])["hit_rate@10"]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    args = ap.parse_args()
    import ray  # lazy: after argument parsing, so --help is instant

    lines = (Path(args.data) / "amazon-beauty" / "Beauty.txt").read_text().splitlines()
    seqs = {ln.split()[0]: ln.split()[1:] for ln in lines}
    es = leave_one_out(seqs).test.head(args.users)
    scorer = RandomFactors(es.catalog)
    metrics = ["ndcg@10", "hit_rate@10", "recall@20", "mrr"]
    baseline_ranx(es.head(50), scorer)  # warm up numba
    t = time.perf_counter()
    ref = baseline_ranx(es, scorer)
    t_base = time.perf_counter() - t
    t = time.perf_counter()
    ours = RankingEvaluator(es, metrics)(scorer)["hit_rate@10"]
    t_ours = time.perf_counter() - t
    print(
        f"users={len(es)} items={len(es.catalog)} hit_rate@10 baseline={ref:.6f} recsys={ours:.6f} (must match)"
    )
    print(f"baseline (top-100 + ranx): {t_base:.2f}s")
    print(f"recsys RankingEvaluator:   {t_ours:.2f}s  speed-up x{t_base / t_ours:.2f}", flush=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        RankingEvaluator(es.head(50), metrics, num_workers=2)(scorer)  # warm up workers
        t = time.perf_counter()
        par = RankingEvaluator(es, metrics, num_workers=2)(scorer)["hit_rate@10"]
        t_par = time.perf_counter() - t
    finally:
        ray.shutdown()
    print(f"hit_rate@10 with 2 Ray workers={par:.6f}")
    print(f"recsys, 2 Ray workers:     {t_par:.2f}s  speed-up x{t_base / t_par:.2f}")


if __name__ == "__main__":
    main()
