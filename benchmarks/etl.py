"""ETL benchmark: Ray Data clean + features vs a single-process pandas implementation of the same logic.

    .venv/bin/python benchmarks/etl.py --events runs/synth/local/events \\
        [--cpus 1 2] [--shards K | --limit N] [--repeat R]

Workload on the synth job's events, as the clean and features jobs run it: clean = row validation with
reasons (pyarrow map_batches), one hash exchange by user_id (bot bursts, exact/near dedup, sessions),
Parquet out; features = the clean events read back, one exchange by user_id (timelines -> sequences),
item counts combined map-side (partials per user block, then a small exchange by item_id), Parquet out.
Baseline: benchmarks/etl_pandas.py. Clean rows, users and items must equal the baseline's (printed).
Each variant runs in its own process; peak memory = max summed RSS of that process tree (driver +
Ray workers), sampled every 0.2 s; cores busy = the machine's busy CPU time over the run (/proc/stat) / wall.
Prints events/s, the Ray/pandas ratio, the 1 -> 2 CPU scaling efficiency, and where the time goes (ds.stats()).

Scaling is measured on machines of 1 and 2 cores: each Ray run's whole process tree (driver, GCS, raylet,
workers and their Arrow threads) is pinned to its first N cores (sched_setaffinity) with num_cpus=N. Without
pinning, a num_cpus=1 run still uses the other core for the driver, Ray's own processes and Arrow's threads
(1.2-1.3 cores busy), which is not a 1-CPU machine; that run is also made (``ray_1cpu_unpinned``) and its
efficiency printed as well. ``--no-pin`` turns pinning off (one unpinned run per CPU count).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OPTS = {
    "max_field_chars": 10_000,
    "max_ts": "2030-01-01",
    "max_price": 1e6,
    "max_quantity": 100_000,
    "bot_per_minute": 120,
    "near_us": 1_000_000,
    "gap_us": 30 * 60 * 1_000_000,
}


def ray_variant(
    events: str,
    out: str,
    cpus: int,
    batch_mb: int,
    compression: str,
    engine: str,
    partition_mb: float,
    retain_memory: bool,
) -> dict:
    import ray

    from recsys.config import InputConfig
    from recsys.data.adapters import open_source
    from recsys.data.clean import CleanOptions, clean_table
    from recsys.data.config import CleanConfig, FeaturesConfig
    from recsys.data.features import item_totals, sequences, timelines
    from recsys.data.schema import EVENT_TYPES
    from recsys.data.shuffle import by_key, by_key_tasks, configure_exchange, partitioned_by, per_file
    from recsys.runtime import worker_env

    for attempt in range(3):  # a loaded shared machine can miss Ray's 30 s raylet start window
        try:
            # the workers' environment as the data jobs give it (ray.retain_worker_memory)
            ray.init(
                num_cpus=cpus,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": worker_env(retain_memory, submitted=False)},
            )
            break
        except Exception:  # noqa: BLE001
            if attempt == 2:
                raise
            time.sleep(10)
    # what the clean / features jobs do with their `exchange:` config (each job's own reservation default)
    default_exchange = {
        c: c.model_fields["exchange"].get_default(call_default_factory=True)
        for c in (CleanConfig, FeaturesConfig)
    }
    configure_exchange(batch_mb, compression, default_exchange[CleanConfig].reserve_per_operator)
    src = open_source(InputConfig(path=events, format="parquet"))
    opts = CleanOptions(
        event_types=list(EVENT_TYPES),
        min_ts_us=None,
        max_ts_us=int(1.9e15),
        max_price=OPTS["max_price"],
        max_quantity=OPTS["max_quantity"],
        allow_negative_quantity=False,
        max_field_chars=OPTS["max_field_chars"],
        bot_per_minute=OPTS["bot_per_minute"],
        near_us=OPTS["near_us"],
        gap_us=OPTS["gap_us"],
        lowercase_queries=True,
        hash_columns=[],
        scrub_text=False,
        salt=None,
        return_prefix=None,
        return_mode="keep",
        link_returns=False,
    )
    t0 = time.perf_counter()
    # clean: the clean job's own code (row rules -> ONE exchange by user_id -> keyed rules + writes per partition)
    res = clean_table(src, opts, out, None, None, engine=engine, partition_mb=partition_mb)
    t_clean = time.perf_counter() - t0
    # features core, as recsys.data.features.build_features: timelines per clean file (user-partitioned: no
    # exchange); sequences, and item counts combined map-side (partials per user block, exchange by item_id)
    events = f"{out}/events"
    configure_exchange(None, None, default_exchange[FeaturesConfig].reserve_per_operator)
    tl = (
        per_file(events, timelines)
        if partitioned_by(events) == ["user_id"]
        else by_key(ray.data.read_parquet(events), "user_id", timelines)
    ).materialize()
    tl.map_batches(sequences, batch_format="pyarrow", fn_kwargs={"seq_types": None}).write_parquet(
        f"{out}/sequences"
    )
    parts = tl.map_batches(_partials, batch_format="pyarrow", fn_kwargs={"event_types": list(EVENT_TYPES)})
    by_key_tasks(
        parts, "item_id", item_totals, fn_kwargs={"event_types": list(EVENT_TYPES)}, partition_mb=partition_mb
    ).write_parquet(f"{out}/item_counts")
    elapsed = time.perf_counter() - t0
    import pyarrow.dataset as pads

    counts = {
        "rows_in": res["rows_in"],
        "rows_clean": res["rows_clean"],
        "rows_quarantined": res["rows_quarantined"],
        "rows_duplicate": res["rows_duplicate"],
        "users": pads.dataset(f"{out}/sequences").count_rows(),
        "items": pads.dataset(f"{out}/item_counts").count_rows(),
        "clean_s": round(t_clean, 1),
        "features_exchange_free": partitioned_by(events) == ["user_id"],
    }
    stats = tl.stats()
    ray.shutdown()
    return {"elapsed_s": elapsed, **counts, "stats": stats[-3000:]}


def _partials(tl, event_types):
    """Timelines (whole users) -> item_partials of all their events (the benchmark has no split cut-off)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from recsys.data.features import item_partials

    parents = pc.list_parent_indices(tl["item_id"])
    ev = pa.table(
        {
            "user_id": pc.take(tl["user_id"], parents),
            "item_id": pc.list_flatten(tl["item_id"]),
            "event_type": pc.list_flatten(tl["event_type"]),
            "price": pc.list_flatten(tl["price"]),
        }
    )
    return item_partials(ev, event_types)


def pandas_variant(events: str, out: str) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import etl_pandas

    t0 = time.perf_counter()
    counts = etl_pandas.run(events, out, OPTS)
    return {"elapsed_s": time.perf_counter() - t0, **counts}


def _busy_core_seconds() -> float | None:
    """The machine's busy CPU time so far (all cores, /proc/stat); None where there is no /proc."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (
                int(v) for v in f.readline().split()[1:9]
            )
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def measure(cmd: list[str], env: dict[str, str] | None = None, cores: set[int] | None = None) -> dict:
    """Run a variant in a subprocess (``env`` added to its environment; pinned to ``cores``, which its children
    inherit); sample the RSS of its whole process tree and the machine's busy cores."""
    import psutil

    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    busy0, t0 = _busy_core_seconds(), time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **(env or {})}, preexec_fn=pin
    )
    peak, peak_driver = 0, 0
    stop = threading.Event()

    def sample():
        nonlocal peak, peak_driver
        p = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                kids = p.children(recursive=True)
                rss_driver = p.memory_info().rss
                total = rss_driver + sum(k.memory_info().rss for k in kids if k.is_running())
                peak, peak_driver = max(peak, total), max(peak_driver, rss_driver)
            except psutil.Error:
                pass
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    stop.set()
    th.join()
    busy1, wall = _busy_core_seconds(), time.perf_counter() - t0
    res = json.loads(out.strip().splitlines()[-1])
    cores_busy = round((busy1 - busy0) / wall, 2) if busy0 is not None and busy1 is not None else None
    return {
        **res,
        "peak_rss_gb": round(peak / 2**30, 2),
        "peak_driver_rss_gb": round(peak_driver / 2**30, 2),
        "cores_busy": cores_busy,
        "pinned_cores": len(cores) if cores else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", default="runs/synth/local/events")
    ap.add_argument("--cpus", type=int, nargs="+", default=[1, 2])
    ap.add_argument(
        "--limit",
        type=int,
        default=None,
        help="only the first N events, written once to one file both variants read (Ray reads it "
        "as ONE block: no parallelism before the exchange; prefer --shards)",
    )
    ap.add_argument(
        "--shards",
        type=int,
        default=None,
        help="only the first K Parquet files of --events (both variants; Ray reads K blocks)",
    )
    from recsys.data.config import ExchangeConfig

    default = ExchangeConfig()
    ap.add_argument(
        "--batch-mb",
        type=int,
        default=default.input_batch_mb,
        help="exchange.input_batch_mb of the clean / features jobs (default: theirs)",
    )
    ap.add_argument(
        "--compression",
        default=default.compression,
        choices=["none", "lz4", "zstd"],
        help="exchange.compression of the clean / features jobs (default: theirs)",
    )
    ap.add_argument(
        "--partition-mb",
        type=float,
        default=default.partition_mb,
        help="exchange.partition_mb of the clean / features jobs (default: theirs)",
    )
    ap.add_argument(
        "--engine",
        default=default.engine,
        choices=["tasks", "ray_data"],
        help="exchange.engine of the clean job (default: its own)",
    )
    from recsys.config.base import RayConfig

    ap.add_argument(
        "--retain-worker-memory",
        action=argparse.BooleanOptionalAction,
        default=RayConfig().retain_worker_memory,
        help="ray.retain_worker_memory of the jobs (default: theirs); the pandas baseline gets the same "
        "allocator settings (recsys.runtime.WORKER_MEMORY_ENV) or none",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="repetitions, interleaved (pandas, Ray 1 CPU, Ray 2 CPUs, then again); prints the median "
        "and range of the per-repetition ratio and scaling (single runs on a shared 2-core machine vary by 20-30 %%)",
    )
    ap.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=hasattr(os, "sched_setaffinity"),
        help="pin each Ray run's process tree to N cores for num_cpus=N (machines of 1 and 2 cores; "
        "default on Linux), plus one unpinned 1-CPU run; --no-pin: Ray's num_cpus only",
    )
    ap.add_argument("--variant", choices=["ray", "pandas"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error(f"--repeat must be >= 1 (got {args.repeat})")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if args.pin and len(cores) < max(args.cpus):
        ap.error(
            f"--pin needs {max(args.cpus)} cores, this process may use {len(cores)}: lower --cpus or pass --no-pin"
        )
    if args.variant:  # child process
        res = (
            ray_variant(
                args.events,
                args.out,
                args.cpus[0],
                args.batch_mb,
                args.compression,
                args.engine,
                args.partition_mb,
                args.retain_worker_memory,
            )
            if args.variant == "ray"
            else pandas_variant(args.events, args.out)
        )
        print(json.dumps(res, default=str))
        return
    reps: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        events = os.path.abspath(args.events)
        if args.shards:  # the first K files, linked into one directory both variants read
            files = sorted(f for f in os.listdir(events) if f.endswith(".parquet"))[: args.shards]
            os.makedirs(f"{tmp}/input")
            for f in files:
                os.symlink(f"{events}/{f}", f"{tmp}/input/{f}")
            events = f"{tmp}/input"
        if args.limit:  # the same first N rows for both variants (a parallel read's limit picks any N)
            import pyarrow.dataset as pads
            import pyarrow.parquet as pq

            os.makedirs(f"{tmp}/head")
            pq.write_table(pads.dataset(events).head(args.limit), f"{tmp}/head/part-0.parquet")
            events = f"{tmp}/head"
        base = [
            sys.executable,
            __file__,
            "--events",
            events,
            "--batch-mb",
            str(args.batch_mb),
            "--compression",
            args.compression,
            "--engine",
            args.engine,
            "--partition-mb",
            str(args.partition_mb),
            "--retain-worker-memory" if args.retain_worker_memory else "--no-retain-worker-memory",
        ]
        from recsys.runtime import WORKER_MEMORY_ENV

        pandas_env = (
            WORKER_MEMORY_ENV if args.retain_worker_memory else None
        )  # same allocators as the Ray workers
        for r in range(args.repeat):  # interleaved, so that a slow spell of the machine hits every variant
            results = {}
            os.makedirs(f"{tmp}/pandas{r}")
            results["pandas"] = measure(
                base + ["--variant", "pandas", "--out", f"{tmp}/pandas{r}"], pandas_env
            )
            for c in args.cpus:
                results[f"ray_{c}cpu"] = measure(
                    base + ["--variant", "ray", "--cpus", str(c), "--out", f"{tmp}/ray{c}_{r}"],
                    cores=set(cores[:c]) if args.pin else None,
                )
            if args.pin and 1 in args.cpus:  # Ray's num_cpus=1 on the whole machine, for comparison
                results["ray_1cpu_unpinned"] = measure(
                    base + ["--variant", "ray", "--cpus", "1", "--out", f"{tmp}/ray1u_{r}"]
                )
            reps.append(results)
            if args.repeat > 1:
                print(
                    f"repetition {r + 1}/{args.repeat}: "
                    + ", ".join(f"{k} {v['elapsed_s']:.1f} s" for k, v in results.items()),
                    flush=True,
                )
    report(reps, args.cpus)


def report(reps: list[dict], cpus: list[int]) -> None:
    """Per repetition and as medians: events/s, outputs vs the baseline, the ratio to pandas, the scaling."""
    import statistics

    results = reps[-1]
    n = results["pandas"]["rows_in"]
    print(f"events: {n:,}  (shared 2-core machine: timings are noisy, compare ratios from this run)")
    for r, res in enumerate(reps):
        for name, v in res.items():
            busy = f"  cores busy {v['cores_busy']:.2f}" if v.get("cores_busy") is not None else ""
            pinned = f" (pinned to {v['pinned_cores']})" if v.get("pinned_cores") else ""
            print(
                f"[{r + 1}] {name:17s} {v['elapsed_s']:8.1f} s  {n / v['elapsed_s']:>12,.0f} events/s  peak RSS "
                f"{v['peak_rss_gb']:.2f} GB (driver {v['peak_driver_rss_gb']:.2f} GB){busy}{pinned}"
            )
        for name, v in res.items():  # the same output as the baseline (rows, users, items)
            diff = {
                k: (v.get(k), res["pandas"][k])
                for k in ("rows_clean", "rows_quarantined", "rows_duplicate", "users", "items")
                if v.get(k) != res["pandas"][k]
            }
            print(
                f"[{r + 1}] {name:17s} outputs vs pandas: "
                + (
                    "identical counts (clean, quarantined, duplicate, users, items)"
                    if not diff
                    else f"differ {diff}"
                )
            )
    top = max(cpus)
    ratios = [res["pandas"]["elapsed_s"] / res[f"ray_{top}cpu"]["elapsed_s"] for res in reps]
    print(f"ratio Ray Data ({top} CPU) / pandas throughput: {_spread(ratios, 'x')}")
    if 1 in cpus and top > 1:  # each repetition's own 1-CPU and top-CPU runs, back to back
        pinned = bool(results[f"ray_{top}cpu"].get("pinned_cores"))
        what = (
            f"machines of 1 and {top} cores (process trees pinned)"
            if pinned
            else "Ray num_cpus on the whole machine"
        )
        _scaling(reps, "ray_1cpu", top, what)
        if pinned:
            busy = [res["ray_1cpu_unpinned"].get("cores_busy") for res in reps]
            extra = f", {statistics.median(busy):.2f} cores busy" if None not in busy else ""
            _scaling(reps, "ray_1cpu_unpinned", top, f"Ray num_cpus=1 unpinned{extra} -> {top} cores")
    print(
        "ds.stats() of the exchange (Ray, top CPUs, last repetition):\n"
        + results[f"ray_{top}cpu"].get("stats", "")
    )
    print(
        json.dumps(
            [{k: {kk: vv for kk, vv in v.items() if kk != "stats"} for k, v in res.items()} for res in reps]
        )
    )


def _scaling(reps: list[dict], one: str, top: int, what: str) -> None:
    """Efficiency = T(1 CPU) / (top * T(top CPUs)), per repetition, as median (range)."""
    import statistics

    eff = [res[one]["elapsed_s"] / (res[f"ray_{top}cpu"]["elapsed_s"] * top) for res in reps]
    print(
        f"scaling 1 -> {top} CPUs, {what}: efficiency {_spread([100 * e for e in eff], ' %', 0)}"
        f" (speed-up {statistics.median(e * top for e in eff):.2f}x)"
    )


def _spread(values: list[float], unit: str, digits: int = 2) -> str:
    """``median (min-max over N)`` of per-repetition values; the single value for one repetition."""
    import statistics

    def f(v: float) -> str:
        return f"{v:.{digits}f}"

    if len(values) == 1:
        return f(values[0]) + unit
    return (
        f"median {f(statistics.median(values))}{unit} "
        f"({f(min(values))}-{f(max(values))}{unit} over {len(values)} repetitions)"
    )


if __name__ == "__main__":
    main()
