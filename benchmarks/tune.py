"""Benchmark: the same search space and trial count with ASHA and without early stopping (FIFO).

    .venv/bin/python benchmarks/tune.py --config configs/tune/local.yaml --out runs/bench/tune

Runs the sweep with each scheduler (same seed, same sampler): Ray's stopping ASHA (``asha``), the
ASHA paper's promotion rule (``asha_promote``, recsys.tuning.promotion) and no early stopping
(``fifo``), and prints, per scheduler: wall time,
trial time consumed (sum of the trials' wall clocks), optimizer steps trained (a load-independent
measure of compute), and the best validation metric. Target: ASHA uses <= 50% of the full sweep's
compute and finds a best metric within 1% of it. TPE's first 10 suggestions are its seeded random
start-up, so with <= 10 trials every sweep samples the same configs; later ones depend on results.

Then (unless --no-test) the base config of the sweep ("the local default": base + overrides, no
tuned values) is trained once and both it and the tuned best model are scored on the held-out test
item with the evaluate job's protocol (configs/evaluate/local.yaml: LLMRank, 20 candidates).
CPU timings on a shared machine are noisy: compare the ratios measured within one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sweep(cfg, scheduler: str, out: Path, prepared=None) -> dict:
    from recsys.tuning.run import run_tuning

    run_cfg = cfg.model_copy(
        update={
            "scheduler": cfg.scheduler.model_copy(update={"name": scheduler}),
            "output_dir": str(out),
            "name": f"bench-{scheduler}",
            "resume": False,
        }
    )
    t0 = time.perf_counter()
    report = run_tuning(run_cfg, out, prepared=prepared)
    wall = time.perf_counter() - t0
    import pandas as pd

    table = pd.read_parquet(out / "trials.parquet")
    metric = report["objective"]["metric"]
    return {
        "wall_s": round(wall, 1),
        "trial_time_s": round(float(table["time_s"].fillna(0).sum()), 1),
        "steps": int(table["steps"].fillna(0).sum()),
        "trials": len(table),
        "stopped_early": int((table["status"] == "stopped_early").sum()),
        "best": report.get("best", {}).get(metric),
        "best_params": report.get("best", {}).get("params"),
        "model": report["artifacts"].get("model"),
        "metric": metric,
    }


def shared_data(cfg):
    from recsys.config.loader import expand_values
    from recsys.training.trainer import prepare
    from recsys.tuning.space import load_base, train_config, with_objective
    from recsys.tuning.trial import shares_prepared_data

    if not shares_prepared_data(list(cfg.space)):
        return None
    raw = with_objective(load_base(cfg.base, cfg.overrides), cfg.objective.metric, cfg.objective.mode)
    return prepare(train_config(expand_values(raw)))


def test_metrics(cfg, models: dict[str, str], out: Path, eval_config: Path) -> dict:
    """Score trained model dirs on the test item with the evaluate job (its protocol, its metrics)."""
    import yaml

    from recsys.config.loader import load_config
    from recsys.jobs_registry import get_job
    from recsys.registry.tracking import track_job
    from recsys.runtime import run_job

    spec = get_job("evaluate")
    data = yaml.safe_load(eval_config.read_text())
    data.update(
        output_dir=str(out),
        results_json=None,
        ensembles=[],
        published={},
        bootstrap=0,
        models=[{"name": n, "kind": "model", "path": p} for n, p in models.items()],
        reference="default",
    )
    ecfg = load_config(spec.config_cls, None, data=data)
    report = run_job(spec.name, ecfg, spec.module.run, needs_ray=True, track=track_job)
    return report.get("metrics") or report.get("leaderboard") or report


def train_default(cfg, out: Path) -> str:
    """The sweep's base config (base + overrides, no tuned values) trained once."""
    from recsys.config.loader import expand_values
    from recsys.training.trainer import run_training
    from recsys.tuning.space import load_base, train_config

    raw = load_base(cfg.base, cfg.overrides)
    tcfg = train_config(expand_values(raw))
    return run_training(tcfg, out)["artifacts"]["model"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs/tune/local.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs/bench/tune"))
    ap.add_argument("--eval-config", default=str(ROOT / "configs/evaluate/local.yaml"))
    ap.add_argument(
        "--no-test", action="store_true", help="skip training the default and the test-set comparison"
    )
    ap.add_argument(
        "--schedulers",
        nargs="+",
        default=["asha", "asha_promote", "fifo"],
        choices=["asha", "asha_promote", "fifo"],
        help="sweeps to run (default all three, in one run: the comparison the target is about): asha = "
        "Ray's stopping ASHA, asha_promote = the ASHA paper's promotion rule (recsys.tuning.promotion)",
    )
    ap.add_argument(
        "--full-results",
        help="results.json of an earlier run whose FIFO sweep to compare with "
        "(with --schedulers asha: the trials are the same when the sampler is seeded; steps and best "
        "metric compare across runs, wall times do not)",
    )
    ap.add_argument(
        "overrides", nargs="*", help="dotted overrides of the tune config, e.g. overrides.train.max_steps=40"
    )
    args = ap.parse_args()

    import ray

    from recsys.config.loader import load_config
    from recsys.runtime import JOB_ENV, start_local_ray
    from recsys.tuning.config import TuneJobConfig

    cfg = load_config(TuneJobConfig, args.config, args.overrides)
    out = Path(args.out).resolve()
    start_local_ray(num_cpus=cfg.ray.num_cpus or 2, env=dict(JOB_ENV), log_to_driver=False)
    results: dict = {
        "config": args.config,
        "overrides": args.overrides,
        "num_samples": cfg.search.num_samples,
        "search": cfg.search.algorithm,
    }
    try:
        prepared = shared_data(cfg)  # both sweeps train on the same prepared data (not timed)
        for sched in args.schedulers:
            results[sched] = sweep(cfg, sched, out / sched, prepared)
            print(json.dumps({sched: results[sched]}), flush=True)
        if args.full_results:  # the full sweep of an earlier run: same trials (seeded sampler), steps compare
            results["fifo"] = json.loads(Path(args.full_results).read_text())["fifo"]
            results["fifo_from"] = args.full_results
        f, early = results["fifo"], [s for s in args.schedulers if s != "fifo"]
        sign = 1.0 if cfg.objective.mode == "max" else -1.0
        results["ratios"] = {
            s: {
                "vs_full_trial_time": round(results[s]["trial_time_s"] / f["trial_time_s"], 3),
                "vs_full_steps": round(results[s]["steps"] / f["steps"], 3),
                "vs_full_wall": round(results[s]["wall_s"] / f["wall_s"], 3)
                if "fifo" in args.schedulers
                else None,
                "best_gap_rel": round(sign * (f["best"] - results[s]["best"]) / abs(f["best"]), 4)
                if f["best"]
                else None,
            }
            for s in early
        }
        if not args.no_test:
            models = {"default": train_default(cfg, out / "default_train")}
            models.update({f"tuned_{s}": results[s]["model"] for s in early if results[s]["model"]})
            results["test"] = test_metrics(cfg, models, out / "evaluate", Path(args.eval_config))
    finally:
        (out / "results.json").parent.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
        ray.shutdown()
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
