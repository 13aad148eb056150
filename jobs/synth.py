"""Write N synthetic events over a real catalog: Zipf popularity, sessions, queries, position-biased clicks, dirt."""

from recsys.data.config import SynthConfig

CONFIG = SynthConfig


def run(cfg: SynthConfig, ctx) -> dict:
    import json

    if cfg.click_log is not None:  # click-log mode: numpy only, no catalog
        from recsys.causal import clicklog

        with ctx.timer("generate_write"):
            log = clicklog.generate(clicklog.params_from_section(cfg.click_log, cfg.seed))
            paths = clicklog.write(log, ctx.output_dir)
        imp = log.impressions
        return {
            "counts": {
                "impressions": len(imp),
                "sessions": int(imp["session_id"].nunique()),
                "clicks": int(imp["click"].sum()),
                "candidates": len(log.candidates),
            },
            "metrics": {"logger_ctr": log.truth["logger_ctr"], "candidate_ctr": log.truth["candidate_ctr"]},
            "artifacts": paths,
        }

    import pyarrow as pa
    import ray

    from recsys.data.adapters import read_input
    from recsys.data.shuffle import cluster_cpus
    from recsys.data.synth import (
        DIRT_KINDS,
        RELEVANCE_OTHER,
        RELEVANCE_TARGET,
        catalog_arrays,
        examination,
        generate_shard,
    )

    with ctx.timer("catalog"):
        items = pa.Table.from_pylist(
            read_input(cfg.catalog, "items").take_all()
        )  # a catalog: small by nature
        catalog = catalog_arrays(items, cfg.zipf_a, cfg.seed)
    shards = cfg.shards or 4 * cluster_cpus()
    params = {
        "seed": cfg.seed,
        "shards": shards,
        "events_per_shard": -(-cfg.events // shards),
        "users": cfg.users,
        "page_size": cfg.page_size,
        "decay": cfg.examination_decay,
        "cart_rate": cfg.cart_rate,
        "buy_rate": cfg.buy_rate,
        "dirty_share": cfg.dirty_share,
        "start_us": int(cfg.start.timestamp() * 1e6),
        "span_us": int(cfg.days * 86400e6),
    }
    out = str(ctx.output_dir)
    with ctx.timer("generate_write"):
        ds = ray.data.range(shards, override_num_blocks=shards).map_batches(
            generate_shard, batch_size=1, batch_format="numpy", fn_kwargs={"catalog": catalog, "p": params}
        )
        ds.write_parquet(f"{out}/events")
    cat = pa.table({"item_id": catalog["item_id"], "title": catalog["title"], "price": catalog["price"]})
    import pyarrow.parquet as pq

    (ctx.output_dir / "items").mkdir(exist_ok=True)
    pq.write_table(cat, ctx.path("items", "items.parquet"))
    import pyarrow.dataset as pads

    n = pads.dataset(f"{out}/events", format="parquet").count_rows()
    truth = {
        "examination": examination(cfg.page_size, cfg.examination_decay),
        "relevance": {"target": RELEVANCE_TARGET, "other": RELEVANCE_OTHER},
        "click_model": "P(click at p) = examination[p] * relevance; P(cart|click), P(buy|cart)",
        "cart_rate": cfg.cart_rate,
        "buy_rate": cfg.buy_rate,
        "dirt_kinds": list(DIRT_KINDS),
        "dirty_share": cfg.dirty_share,
    }
    ctx.path("examination.json").write_text(json.dumps(truth, indent=2))
    return {
        "counts": {"events": n, "items": cat.num_rows, "users": cfg.users, "shards": shards},
        "artifacts": {
            "events": f"{out}/events",
            "items": f"{out}/items",
            "examination": f"{out}/examination.json",
        },
    }


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
