"""Benchmark: a pipeline's cold run vs its rerun with unchanged inputs (every stage reused by key).

    .venv/bin/python benchmarks/pipeline.py --config configs/pipeline/local.yaml --out runs/bench/pipeline

Runs the pipeline twice into a fresh output dir and registry (same config, same data) and prints
each stage's wall time, the total of each run and the ratio rerun / cold — what idempotency saves
when a scheduled pipeline finds no new data (target: <= 5% of the cold run). The cold run's total
is the "pipeline on the local config" figure in docs/BENCHMARKS.md. CPU timings on a shared machine
are noisy: compare the ratio measured within one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_once(config: str, out: Path, extra: list[str]) -> tuple[float, dict]:
    from recsys.cli.entry import parse_job, run_parsed

    spec, cfg = parse_job(
        "pipeline",
        config,
        [
            f"output_dir={out / 'pipeline'}",
            f"registry.tracking_uri=sqlite:///{(out / 'mlflow.db').resolve()}",
            f"registry.artifact_location={(out / 'artifacts').resolve()}",
            *extra,
        ],
    )
    t0 = time.perf_counter()
    report = run_parsed(spec, cfg)
    return time.perf_counter() - t0, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/pipeline/tiny.yaml")
    ap.add_argument("--out", default="runs/bench/pipeline")
    ap.add_argument("overrides", nargs="*", help="extra pipeline overrides, e.g. deploy.serve.port=8765")
    args = ap.parse_args()
    out = Path(args.out)
    if (out / "pipeline").exists():
        sys.exit(f"{out} already holds a run; pass a fresh --out so the first run is cold")
    cold_s, cold = run_once(args.config, out, args.overrides)
    warm_s, warm = run_once(args.config, out, args.overrides)
    stages = {s["name"]: {"cold_s": s["seconds"], "rerun": s["action"]} for s in cold["stages"]}
    for s in warm["stages"]:
        stages[s["name"]]["rerun_s"] = s["seconds"]
    result = {
        "config": args.config,
        "cold_s": round(cold_s, 1),
        "rerun_s": round(warm_s, 1),
        "ratio_rerun_vs_cold": round(warm_s / cold_s, 4),
        "stages": stages,
        "rerun_actions": [s["action"] for s in warm["stages"]],
        "production": (cold.get("deployment") or {}).get("production_after"),
    }
    print(json.dumps(result, indent=2))
    (out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
