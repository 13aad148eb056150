"""Benchmark: the same search space and trial count with ASHA and without early stopping (FIFO).

    .venv/bin/python benchmarks/tune.py --config configs/tune/local.yaml --out runs/bench/tune

Runs the sweep twice (same seed, same sampler, same trials) and prints, per scheduler: wall time,
trial time consumed (sum of the trials' wall clocks), optimizer steps trained (a load-independent
measure of compute), and the best validation metric. Target: ASHA uses <= 50% of the full sweep's
compute and finds a best metric within 1% of it.

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

    run_cfg = cfg.model_copy(update={"scheduler": cfg.scheduler.model_copy(update={"name": scheduler}),
                                     "output_dir": str(out), "name": f"bench-{scheduler}", "resume": False})
    t0 = time.perf_counter()
    report = run_tuning(run_cfg, out, prepared=prepared)
    wall = time.perf_counter() - t0
    import pandas as pd

    table = pd.read_parquet(out / "trials.parquet")
    metric = report["objective"]["metric"]
    return {
        "wall_s": round(wall, 1), "trial_time_s": round(float(table["time_s"].fillna(0).sum()), 1),
        "steps": int(table["steps"].fillna(0).sum()), "trials": len(table),
        "stopped_early": int((table["status"] == "stopped_early").sum()),
        "best": report.get("best", {}).get(metric), "best_params": report.get("best", {}).get("params"),
        "model": report["artifacts"].get("model"), "metric": metric,
    }


def shared_data(cfg):
    from recsys.config.loader import _expand
    from recsys.training.trainer import prepare
    from recsys.tuning.space import load_base, train_config, with_objective
    from recsys.tuning.trial import shares_prepared_data

    if not shares_prepared_data(list(cfg.space)):
        return None
    raw = with_objective(load_base(cfg.base, cfg.overrides), cfg.objective.metric, cfg.objective.mode)
    return prepare(train_config(_expand(raw, "", [])))


def test_metrics(cfg, models: dict[str, str], out: Path, eval_config: Path) -> dict:
    """Score trained model dirs on the test item with the evaluate job (its protocol, its metrics)."""
    import yaml

    from recsys.config.loader import load_config
    from recsys.jobs_registry import get_job
    from recsys.runtime import run_job

    spec = get_job("evaluate")
    data = yaml.safe_load(eval_config.read_text())
    data.update(output_dir=str(out), results_json=None, ensembles=[], published={}, bootstrap=0,
                models=[{"name": n, "kind": "model", "path": p} for n, p in models.items()], reference="default")
    ecfg = load_config(spec.config_cls, None, data=data)
    report = run_job(spec.name, ecfg, spec.module.run, needs_ray=True)
    return report.get("metrics") or report.get("leaderboard") or report


def train_default(cfg, out: Path) -> str:
    """The sweep's base config (base + overrides, no tuned values) trained once."""
    from recsys.config.loader import _expand
    from recsys.training.trainer import run_training
    from recsys.tuning.space import load_base, train_config

    raw = load_base(cfg.base, cfg.overrides)
    tcfg = train_config(_expand(raw, "", []))
    return run_training(tcfg, out)["artifacts"]["model"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs/tune/local.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs/bench/tune"))
    ap.add_argument("--eval-config", default=str(ROOT / "configs/evaluate/local.yaml"))
    ap.add_argument("--no-test", action="store_true", help="skip training the default and the test-set comparison")
    ap.add_argument("--schedulers", nargs="+", default=["asha", "fifo"], choices=["asha", "fifo"],
                    help="sweeps to run (default both, in one run: the comparison the target is about)")
    ap.add_argument("--full-results", help="results.json of an earlier run whose FIFO sweep to compare with "
                    "(with --schedulers asha: the trials are the same when the sampler is seeded; steps and best "
                    "metric compare across runs, wall times do not)")
    ap.add_argument("overrides", nargs="*", help="dotted overrides of the tune config, e.g. overrides.train.max_steps=40")
    args = ap.parse_args()

    import ray

    from recsys.config.loader import load_config
    from recsys.runtime import JOB_ENV, start_local_ray
    from recsys.tuning.config import TuneJobConfig

    cfg = load_config(TuneJobConfig, args.config, args.overrides)
    out = Path(args.out).resolve()
    start_local_ray(num_cpus=cfg.ray.num_cpus or 2, env=dict(JOB_ENV), log_to_driver=False)
    results: dict = {"config": args.config, "overrides": args.overrides, "num_samples": cfg.search.num_samples,
                     "search": cfg.search.algorithm}
    try:
        prepared = shared_data(cfg)  # both sweeps train on the same prepared data (not timed)
        for sched in args.schedulers:
            results[sched] = sweep(cfg, sched, out / sched, prepared)
            print(json.dumps({sched: results[sched]}), flush=True)
        if args.full_results:  # the full sweep of an earlier run: same trials (seeded sampler), steps compare
            results["fifo"] = json.loads(Path(args.full_results).read_text())["fifo"]
            results["fifo_from"] = args.full_results
        a, f = results["asha"], results["fifo"]
        results["ratios"] = {
            "asha_vs_full_trial_time": round(a["trial_time_s"] / f["trial_time_s"], 3),
            "asha_vs_full_steps": round(a["steps"] / f["steps"], 3),
            "asha_vs_full_wall": round(a["wall_s"] / f["wall_s"], 3),
            "best_gap_rel": round((f["best"] - a["best"]) / abs(f["best"]), 4) if f["best"] else None,
        }
        if not args.no_test:
            default_model = train_default(cfg, out / "default_train")
            results["test"] = test_metrics(cfg, {"default": default_model, "tuned": a["model"]}, out / "evaluate",
                                           Path(args.eval_config))
    finally:
        (out / "results.json").parent.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
        ray.shutdown()
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
