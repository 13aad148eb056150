"""Validate, quarantine, deduplicate, normalize, hash PII and sessionize raw logs into canonical Parquet."""

from recsys.data.config import CleanConfig

CONFIG = CleanConfig


def run(cfg: CleanConfig, ctx) -> dict:
    from recsys.data.adapters import open_source, tables_of
    from recsys.data.clean import DataLossError, clean_options, clean_table, data_gate
    from recsys.data.clean_report import examples, render
    from recsys.data.pii import salt_from_env
    from recsys.data.shuffle import configure_exchange

    salt = salt_from_env(cfg.pii.salt_env, required=bool(cfg.pii.hash_columns))
    opts = clean_options(cfg, salt)
    configure_exchange(
        cfg.exchange.input_batch_mb, cfg.exchange.compression, cfg.exchange.reserve_per_operator
    )
    out = str(ctx.output_dir)
    sources = [open_source(cfg.input, t) for t in tables_of(cfg.input)]
    sources += [open_source(extra, t) for extra in cfg.more_inputs for t in tables_of(extra)]
    per_table, totals, reasons = (
        {},
        {"rows_in": 0, "rows_clean": 0, "rows_quarantined": 0, "rows_duplicate": 0},
        {},
    )
    for src in sources:
        with ctx.progress(f"clean_{src.table}") as shown:
            res = clean_table(
                src,
                opts,
                out,
                cfg.partitions,
                cfg.limit,
                engine=cfg.exchange.engine,
                partition_mb=cfg.exchange.partition_mb,
                null_columns=tuple(cfg.max_null_fraction),
            )
            shown.done(metric=f"rows_clean={res['rows_clean']:,} of {res['rows_in']:,}")
        per_table[src.table] = res
        for k in totals:
            totals[k] += res[k]
        for r, n in res["reasons"].items():
            reasons[r] = reasons.get(r, 0) + n
        ctx.log.info(
            "%s: in %d, clean %d, quarantined %d, duplicate %d",
            src.table,
            res["rows_in"],
            res["rows_clean"],
            res["rows_quarantined"],
            res["rows_duplicate"],
        )
    gate = data_gate(per_table, cfg.max_quarantine_fraction, cfg.max_null_fraction)
    artifacts = {t: f"{out}/{t}" for t in per_table} | {
        "quarantine": f"{out}/quarantine",
        "duplicates": f"{out}/duplicates",
        "html": f"{out}/clean.html",
    }
    result = {
        "counts": totals,
        "reasons": reasons,
        "tables": per_table,
        "data_gate": gate,
        "artifacts": artifacts,
        "reconciled": True,
        "pii_salt_env": cfg.pii.salt_env if salt else None,
    }
    samples = {t: examples(f"{out}/quarantine/{t}") for t in per_table}  # up to 5 per reason: fast
    ctx.path("clean.html").write_text(render(result, samples), encoding="utf-8")
    if not gate["passed"]:  # outputs are written: the quarantine and clean.html show what went wrong
        raise DataLossError(f"{gate['summary']} (examples: {out}/clean.html)", result)
    return result


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
