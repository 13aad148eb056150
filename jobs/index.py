"""Embed the catalog and build the versioned serving index (faiss ANN, bm25s, autocomplete, feature lookups)."""

from __future__ import annotations

from pathlib import Path

from recsys.retrieval.config import IndexJobConfig

CONFIG = IndexJobConfig


def run(cfg: IndexJobConfig, ctx) -> dict:
    import datetime as dt

    import numpy as np

    from recsys.models.hub import resolve_model_path
    from recsys.retrieval import ann as ann_lib
    from recsys.retrieval import build, features, sources
    from recsys.retrieval.autocomplete import Autocomplete
    from recsys.retrieval.encoder import model_fingerprint
    from recsys.retrieval.lexical import BM25Index

    version = cfg.version or build.default_version()
    with ctx.timer("read"):
        items = sources.read_items(cfg.items)
        if cfg.max_items:
            items = items.head(cfg.max_items).reset_index(drop=True)
        events = sources.read_history(cfg.history) if cfg.history else None
        if events is not None:
            events = events[events["item_id"].isin(set(items["item_id"]))]
        users_in = sources.read_users(cfg.users) if cfg.users else None
    folded = {"file": 0, "log": 0, "catalog_seq": 0}
    if cfg.changes is not None:  # the live catalog's changes: this version = the catalog as served now
        from recsys.online.catalog import fold_changes

        with ctx.timer("changes"):
            items, folded = fold_changes(items, cfg.changes)
        if events is not None:
            events = events[events["item_id"].isin(set(items["item_id"]))]
    name = cfg.embed.model.name_or_path
    recsys_dir = any((Path(name) / f).is_file() for f in ("recsys_model.json", "variant.json"))
    model_path = name if recsys_dir else resolve_model_path(name)  # a trained model or a compressed variant
    with ctx.timer("embed"):
        emb = build.embed_catalog(
            build.item_text(items, ["title", "brand", "category"]),
            model_path,
            cfg.embed.model.max_length,
            cfg.embed.batch_size,
            cfg.embed.concurrency,
            cfg.embed.num_cpus,
            cfg.embed.num_gpus,
            cfg.embed.backend,
        )
    kind = (
        cfg.ann.kind
        if cfg.ann.kind != "auto"
        else ("exact" if len(items) <= cfg.ann.exact_max_items else "hnsw")
    )
    with ctx.timer("ann"):
        index = ann_lib.build_index(
            emb,
            kind,
            nlist=cfg.ann.nlist,
            nprobe=cfg.ann.nprobe,
            hnsw_m=cfg.ann.hnsw_m,
            ef_construction=cfg.ann.ef_construction,
            ef_search=cfg.ann.ef_search,
            seed=cfg.seed,
        )
        rng = np.random.default_rng(cfg.seed)
        qrows = rng.choice(len(items), size=min(cfg.ann.recall_queries, len(items)), replace=False)
        recall = ann_lib.recall_at_k(index, emb, emb[qrows], k=min(cfg.ann.recall_k, len(items)))
    with ctx.timer("bm25"):
        bm25 = BM25Index.build(build.item_text(items, cfg.bm25.fields), k1=cfg.bm25.k1, b=cfg.bm25.b)
    with ctx.timer("features"):
        fc = cfg.features
        pop = features.item_popularity(items, events, fc.event_weights)
        items = items.assign(popularity=pop)
        popular = features.popular_lists(items, events, pop, fc.event_weights, fc.popular_items)
        users = features.user_lookup(items, events, users_in, fc.recent_items, fc.purchase_events)
        queries = features.query_stats(events, fc.purchase_events + ["cart"])
    with ctx.timer("autocomplete"):
        ac = Autocomplete.from_sources(
            items["title"].tolist() if cfg.autocomplete.include_titles else [],
            pop if cfg.autocomplete.include_titles else [],
            queries["query"].tolist(),
            queries["count"].to_numpy(),
            queries["conversions"].to_numpy(),
            title_weight=cfg.autocomplete.title_weight,
            conversion_weight=cfg.autocomplete.conversion_weight,
        )
    counts = {
        "items": len(items),
        "users": len(users),
        "events": 0 if events is None else len(events),
        "queries": len(queries),
        "phrases": len(ac),
        "popular_lists": len(popular),
        "embedding_dim": int(emb.shape[1]),
    }
    metrics = {f"ann_recall@{cfg.ann.recall_k}": round(recall, 4)}
    manifest = {
        "version": version,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "model": {
            "name_or_path": cfg.embed.model.name_or_path,
            "path": model_path,
            "sha256": model_fingerprint(model_path),
            "max_length": cfg.embed.model.max_length,
            "backend": cfg.embed.backend,
            "dim": int(emb.shape[1]),
        },
        "data": {
            "items": build.snapshot(cfg.items.path),
            "history": build.snapshot(cfg.history.path) if cfg.history else None,
            "users": build.snapshot(cfg.users.path) if cfg.users else None,
        },
        "ann": {"kind": kind, **cfg.ann.model_dump()},
        "bm25": cfg.bm25.model_dump(),
        "autocomplete": cfg.autocomplete.model_dump(),
        "catalog_seq": folded["catalog_seq"],  # live replicas apply the change log after this position
        "changes": folded,
        "filters": [c for c in ("category", "brand") if c in items.columns]
        + (["price_min", "price_max"] if "price" in items.columns else []),
        "counts": counts,
        "metrics": metrics,
        "build_seconds": dict(ctx.timings),
    }
    with ctx.timer("write"):
        path = build.write_version(
            ctx.output_dir,
            version,
            items=items,
            embeddings=emb,
            ann=index,
            bm25=bm25,
            autocomplete=ac,
            users=users,
            popular=popular,
            manifest=manifest,
        )
    ctx.log.info(
        "[index] version %s: %d items, %s=%.4f (%s) -> %s",
        version,
        len(items),
        f"recall@{cfg.ann.recall_k}",
        recall,
        kind,
        path,
    )
    return {
        "counts": counts,
        "metrics": metrics,
        "version": version,
        "ann_kind": kind,
        "artifacts": {"index": str(path), "latest": str(ctx.output_dir / "latest")},
    }


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
