"""Live catalog benchmark: incremental upserts / deletes vs a full rebuild, on a real catalog slice.

    nice -n 10 .venv/bin/python -m benchmarks.catalog --items 2000 --changes 500 \
        --fresh 20 --queries 100 --out runs/bench/catalog.json

Games-6k titles (../shared/data/amazon-games-6k) with the serving encoder (packaged all-MiniLM-L6-v2, or
``--encoder``). The first ``--items`` titles are the base index (exact faiss, bm25s, autocomplete: what the index
job builds, in process); then ``--changes`` changes go through the production write path: validated, embedded
by the serving encoder (item tower), appended to the change log in a real embedded Valkey (appendfsync always:
acknowledged = fsynced), applied by a replica's follower (``CatalogFollower.sync``, what every stage runs before
answering). Changes: 80% new items (the next titles of the file), 10% renames of base items (new title, price),
5% out of stock, 5% deletes.

Measured, in one run:
- throughput: changes/s sustained through the whole write path (embed + append + apply), in batches of
  ``--batch``, and without the embedding (append + apply: what the log and the live index cost);
- freshness: single upserts, acknowledged -> the next request (sync + hybrid retrieval) finds the item by its
  title: p50 / p99 / max seconds;
- agreement: the top-10 of hybrid retrieval (``RetrieverCore.retrieve``) over the live catalog vs an index
  rebuilt from scratch on the folded catalog, on a fixed query set (``--queries`` titles' first words + every
  changed title): share of queries with the identical top-10 list;
- baseline: the full rebuild (embed every title + faiss + bm25s + autocomplete) that the change batch would
  otherwise need, measured in this run: ``rebuild_s`` and the ratio to applying the same changes live.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FIELDS = ["title", "brand", "category"]


def load_titles(n: int) -> pd.DataFrame:
    from recsys.retrieval.sources import canonical_items

    raw = pd.read_csv(DATA / "amazon-games-6k/Games-6k.item", sep="\t", nrows=n, dtype=str)
    items = canonical_items(raw.set_axis(["item_id", "title"], axis=1), "Games-6k.item")
    return items.assign(popularity=np.zeros(len(items)))


def build(items: pd.DataFrame, encoder: Any, path: Path) -> tuple[Any, float]:
    """(IndexArtifacts, seconds): everything the index job builds for these items, in process."""
    from recsys.retrieval.build import item_text, scratch_artifacts

    t0 = time.perf_counter()
    emb = encoder.encode(item_text(items, FIELDS), kind="item", batch_size=128)
    a = scratch_artifacts(items, emb, FIELDS, path, {"version": "bench", "model": {"sha256": "bench"}})
    return a, time.perf_counter() - t0


def make_changes(items: pd.DataFrame, pool: pd.DataFrame, n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    base_ids = items["item_id"].to_numpy()
    touched = rng.choice(len(base_ids), size=min(len(base_ids), n // 5 + 1), replace=False).tolist()
    rows: list[dict[str, Any]] = []
    for i in range(n):
        r = rng.random()
        if r < 0.8 or not touched:
            p = pool.iloc[i % len(pool)]
            rows.append(
                {
                    "op": "upsert",
                    "item_id": f"live-{i}",
                    "title": p["title"],
                    "price": 10.0 + i % 50,
                    "stock": 5,
                }
            )
        elif r < 0.9:
            j = touched.pop()
            rows.append({"op": "upsert", "item_id": str(base_ids[j]), "title": f"{items['title'].iat[j]} Deluxe",
                         "price": 19.99})  # fmt: skip
        elif r < 0.95:
            j = touched.pop()
            rows.append(
                {"op": "upsert", "item_id": str(base_ids[j]), "title": str(items["title"].iat[j]), "stock": 0}
            )
        else:
            rows.append({"op": "delete", "item_id": str(base_ids[touched.pop()])})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--changes", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--fresh", type=int, default=50, help="single upserts timed for freshness")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--encoder", default="all-MiniLM-L6-v2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import torch

    from recsys.online.catalog import CatalogFollower, CatalogLog, publish_changes
    from recsys.online.server import EmbeddedServer
    from recsys.retrieval.changes import fold, validate_rows
    from recsys.retrieval.delta import LiveCatalog, LiveSettings
    from recsys.retrieval.encoder import TextEncoder
    from recsys.search.stages import RetrieverCore

    torch.set_num_threads(2)
    everything = load_titles(args.items + args.changes + args.fresh + 10)
    items = everything.head(args.items).reset_index(drop=True)
    pool = everything.iloc[args.items :].reset_index(drop=True)
    encoder = TextEncoder(args.encoder, max_length=32)
    tmp = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    base, base_s = build(items, encoder, tmp)
    settings = LiveSettings(out_of_stock="filter", bm25_fields=tuple(FIELDS))

    shared = RetrieverCore(base, encoder, ann_top_n=50, bm25_top_n=50, ann_weight=1.0, bm25_weight=1.0, rrf_k=60,
                           query_cache=8192, model_id="bench")  # fmt: skip  # one query cache: encoded once

    def core(a: Any) -> RetrieverCore:
        return shared.with_artifacts(a)

    srv = EmbeddedServer(tmp / "valkey", appendfsync="always")
    url = srv.start()
    report: dict[str, Any] = {"items": args.items, "changes": args.changes, "encoder": args.encoder,
                              "torch_threads": 2, "base_build_s": round(base_s, 3)}  # fmt: skip
    try:
        log = CatalogLog(url, "bench")
        follower = CatalogFollower(base, lambda: url, "bench", settings)
        rows = make_changes(items, pool, args.changes, args.seed)
        encode = lambda texts: encoder.encode(texts, kind="item", batch_size=128)  # noqa: E731
        # 1) throughput through the whole write path, batch by batch (embed + append + the replica's apply)
        t0 = time.perf_counter()
        for lo in range(0, len(rows), args.batch):
            publish_changes(rows[lo : lo + args.batch], log, encode, "bench", args.batch)
            follower.sync()
        full_s = time.perf_counter() - t0
        live = follower.live.snapshot()
        # ... and without the embedding (vectors precomputed): the log + the live index alone
        changes, _ = validate_rows(rows)
        from recsys.retrieval.delta import embed_text

        vecs = encode([embed_text(c.record()) for c in changes if c.op == "upsert"])
        log2 = CatalogLog(url, "bench2")
        f2 = CatalogFollower(base, lambda: url, "bench2", settings)
        it = iter(vecs)
        vectors = [{"bench": next(it)} if c.op == "upsert" else {} for c in changes]
        t0 = time.perf_counter()
        for lo in range(0, len(changes), args.batch):
            log2.append(changes[lo : lo + args.batch], vectors[lo : lo + args.batch])
            f2.sync()
        apply_s = time.perf_counter() - t0
        report["throughput"] = {
            "batch": args.batch,
            "upserts_per_s_with_embedding": round(len(rows) / full_s, 1),
            "changes_per_s_log_and_apply": round(len(changes) / apply_s, 1),
            "seconds_with_embedding": round(full_s, 3),
        }
        # 2) the baseline: a full rebuild of the changed catalog (what a batch would need without the live index)
        folded = fold(items, changes)
        scratch, rebuild_s = build(folded, encoder, tmp)
        report["baseline_rebuild_s"] = round(rebuild_s, 3)
        report["rebuild_over_incremental"] = round(rebuild_s / full_s, 2)
        # 3) agreement: identical top-10 lists on a fixed query set
        rng = np.random.default_rng(args.seed)
        words = [
            " ".join(str(t).split()[:2])
            for t in folded["title"].to_numpy()[rng.choice(len(folded), args.queries, replace=False)]
        ]
        queries = list(dict.fromkeys(words + [str(r["title"]) for r in rows if r["op"] == "upsert"][:200]))
        a, b = core(live), core(LiveCatalog(scratch, settings).snapshot())
        same = [[c["item_id"] for c in a.retrieve(q, {}, 10)] == [c["item_id"] for c in b.retrieve(q, {}, 10)]
                for q in queries]  # fmt: skip

        def ids(core_: Any, q: str) -> set[str]:
            return {c["item_id"] for c in core_.retrieve(q, {}, 10)}

        overlap = [len(ids(a, q) & ids(b, q)) / 10 for q in queries[:100]]
        report["agreement"] = {"queries": len(queries), "identical_top10": round(float(np.mean(same)), 4),
                               "mean_overlap_at_10_first100": round(float(np.mean(overlap)), 4)}  # fmt: skip
        # 4) freshness: acknowledged single upsert -> the next request (sync + retrieval) finds it by its title
        lat, found = [], 0
        for i in range(args.fresh):
            p = pool.iloc[args.changes + i]
            title = f"{p['title']} Fresh {i}"
            publish_changes([{"item_id": f"fresh-{i}", "title": title, "stock": 1}], log, encode, "bench", 1)
            t_ack = time.perf_counter()
            while True:
                snap = follower.sync() or follower.live.snapshot()
                if f"fresh-{i}" in [c["item_id"] for c in core(snap).retrieve(title, {}, 10)]:
                    found += 1
                    break
                if time.perf_counter() - t_ack > 5:
                    break
            lat.append(time.perf_counter() - t_ack)
        report["freshness_s"] = {"p50": round(float(np.percentile(lat, 50)), 4),
                                 "p99": round(float(np.percentile(lat, 99)), 4),
                                 "max": round(float(np.max(lat)), 4), "found": f"{found}/{args.fresh}"}  # fmt: skip
    finally:
        srv.stop()
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
