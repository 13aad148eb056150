"""Apply a file of catalog changes (upserts / deletes) to the live catalog's change log (serving encoder)."""

from __future__ import annotations

from recsys.online.config import CatalogJobConfig

CONFIG = CatalogJobConfig
NEEDS_RAY = False  # a file, an encoder and the store: no cluster work


def run(cfg: CatalogJobConfig, ctx) -> dict:
    import pandas as pd

    from recsys.online.catalog import encoder_id, open_log, publish_changes
    from recsys.retrieval.artifacts import read_manifest
    from recsys.retrieval.changes import read_change_file
    from recsys.retrieval.encoder import TextEncoder

    with ctx.timer("read"):
        rows = read_change_file(cfg.changes)
        manifest = read_manifest(cfg.index, cfg.version)
    m = manifest["model"]
    encoder = TextEncoder(m["path"], max_length=m["max_length"], backend=m.get("backend", "auto"))
    with ctx.timer("publish"), open_log(cfg.log) as log:
        report = publish_changes(
            rows,
            log,
            lambda texts: encoder.encode(texts, kind="item"),
            encoder_id(manifest),
            cfg.batch_size,
            cfg.on_error,
        )
    rejected = report.pop("rejected")
    if rejected:
        path = ctx.output_dir / "rejected.csv"
        pd.DataFrame(rejected, columns=["row", "field", "message"]).to_csv(path, index=False)
        report["rejected_file"] = str(path)
    report["rejected"] = len(rejected)
    ctx.log.info("[catalog] %d rows: %d applied (seq %d-%d), %d rejected",
                 report["rows"], report["applied"], report["first_seq"], report["last_seq"], len(rejected))  # fmt: skip
    return {"counts": report, "index_version": manifest["version"]}


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
