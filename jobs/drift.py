"""Drift between the training snapshot and recent feedback (PSI, KS): report, gauges, exit 1 above thresholds."""

from __future__ import annotations

from recsys.monitoring.config import DriftConfig

CONFIG = DriftConfig


class DriftDetected(RuntimeError):
    """Raised after the report and gauges are written, so the job exits non-zero."""


def run(cfg: DriftConfig, ctx) -> dict:
    import time

    from recsys.monitoring import drift, gauges
    from recsys.monitoring.tables import load_events

    with ctx.timer("read"):
        ref, ref_bad = load_events(cfg.reference, cfg.max_rows, cfg.seed, end=cfg.reference_end)
        cur, cur_bad = load_events(
            cfg.current, cfg.max_rows, cfg.seed, window_days=cfg.window_days, start=cfg.current_start
        )
    if ref_bad or cur_bad:
        ctx.log.warning("[drift] dropped unreadable rows: reference %d, current %d", ref_bad, cur_bad)
    specs = [
        drift.FeatureSpec(f.column, f.kind, f.psi_max, f.ks_max, f.bins, f.top_k, f.normalize)
        for f in cfg.features
    ]
    with ctx.timer("compare"):
        results = drift.compare(ref, cur, specs, cfg.min_rows)
    last_ts = cur["timestamp"].max().timestamp() if "timestamp" in cur.columns and len(cur) else None
    stale_h = round((time.time() - last_ts) / 3600, 2) if last_ts is not None else None
    textfile = ctx.path(cfg.textfile) if cfg.textfile else None
    gauges.export(results, textfile, cfg.pushgateway, "recsys-drift", last_ts)
    for r in results:
        state = (
            "SKIPPED " + r["skipped"]
            if "skipped" in r
            else ("DRIFT " + "; ".join(r["reasons"]) if r["drifted"] else "ok")
        )
        ctx.log.info(
            "[drift] %-12s psi=%-8s ks=%-8s %s", r["feature"], r.get("psi", "-"), r.get("ks", "-"), state
        )
    drifted = [r["feature"] for r in results if r.get("drifted")]
    stale = cfg.max_stale_hours is not None and (stale_h is None or stale_h > cfg.max_stale_hours)
    out = {
        "counts": {
            "reference_rows": len(ref),
            "current_rows": len(cur),
            "unreadable_rows": {"reference": ref_bad, "current": cur_bad},
            "features": len(results),
            "drifted": len(drifted),
            "skipped": sum("skipped" in r for r in results),
        },
        "metrics": {f"psi.{r['feature']}": r["psi"] for r in results if "psi" in r},
        "drift": results,
        "drifted_features": drifted,
        "hours_since_last_event": stale_h,
        "artifacts": {"gauges": str(textfile)} if textfile else {},
    }
    from recsys.runtime import write_json

    write_json(
        ctx.path("drift.json"), out
    )  # written before a failure too (the runtime's report.json has it all)
    if cfg.fail_on_drift and (drifted or stale):
        why = [f"drift in {', '.join(drifted)}"] if drifted else []
        why += [f"newest event {stale_h} h old > max_stale_hours {cfg.max_stale_hours}"] if stale else []
        raise DriftDetected(
            f"{'; '.join(why)} (details: {ctx.output_dir / 'drift.json'}); retrain with "
            "`recsys submit pipeline --config cluster` or raise the thresholds"
        )
    return out


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
