"""Every shared set, by config alone: inventory -> clean -> features on each set of ../shared/data.

    .venv/bin/python benchmarks/data_sets.py [--sets games-6k taobao ...] [--jobs inventory clean features] [--table]

For each set (in order) and each job (in order: features reads clean's output) this runs
`.venv/bin/recsys run <job> --config configs/<job>/<set>.yaml` as a subprocess. The only overrides
move outputs under runs/data-sets/<set>/<job> (`output_dir=`, and for features `data=` pointing at
that clean output); the script first checks that each shipped features config's `data:` names its
own clean config's `output_dir`, so the shipped configs chain by themselves too.
Records wall seconds, exit code and the key counts of each job's report.json, prints a markdown
table and writes runs/data-sets/summary.json (merged with earlier runs of other sets/jobs).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SETS = ["abt-buy", "amazon-google", "beauty", "games-6k", "online-retail", "taobao", "video"]
JOBS = ["inventory", "clean", "features"]
OUT = "runs/data-sets"


def config_path(job: str, name: str) -> Path:
    return ROOT / "configs" / job / f"{name}.yaml"


def check_chain(name: str) -> str | None:
    """The shipped features config must read the shipped clean config's output (chaining by config alone)."""
    clean = yaml.safe_load(config_path("clean", name).read_text())
    feats = yaml.safe_load(config_path("features", name).read_text())
    if feats.get("data") != clean.get("output_dir"):
        return (
            f"configs/features/{name}.yaml data={feats.get('data')!r} does not name configs/clean/{name}.yaml "
            f"output_dir={clean.get('output_dir')!r}"
        )
    return None


def overrides(job: str, name: str) -> list[str]:
    out = [f"output_dir={OUT}/{name}/{job}"]
    if job == "features":
        out.append(f"data={OUT}/{name}/clean")
    return out


def parquet_rows(folder: Path) -> int | None:
    """Row count of a Parquet dataset folder from file footers (nothing is read)."""
    import pyarrow.parquet as pq

    files = [f for f in folder.rglob("*.parquet") if not f.name.startswith((".", "_"))]
    if not files:
        return None
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def tables_under(root: Path) -> dict[str, int | None]:
    """Every Parquet table (a folder holding *.parquet files directly) under root -> rows."""
    found = {}
    for folder in sorted({f.parent for f in root.rglob("*.parquet")}):
        found[str(folder.relative_to(root))] = parquet_rows(folder)
    return found


def summarize(job: str, report: dict, out_dir: Path) -> dict:
    counts = report.get("counts", {})
    if job == "inventory":
        inv = out_dir / "inventory.json"
        if not inv.exists():  # failed before profiling: nothing was checked
            return {"tables": counts, "contract": [], "contract_ok": None}
        contract = json.loads(inv.read_text()).get("contract", [])
        return {
            "tables": counts,
            "contract": [f"{r['label']}: {'ok' if r['ok'] else 'VIOLATED'} ({r['value']})" for r in contract],
            "contract_ok": all(r["ok"] for r in contract) and not report.get("contract_violations"),
        }
    if job == "clean":
        keys = ("rows_in", "rows_clean", "rows_quarantined", "rows_duplicate")
        exact = bool(counts) and counts["rows_in"] == sum(counts[k] for k in keys[1:])
        per_table_exact = all(
            t["rows_in"] == t["rows_clean"] + t["rows_quarantined"] + t["rows_duplicate"]
            for t in report.get("tables", {}).values()
        )
        return {k: counts.get(k) for k in keys} | {
            "reconciled": bool(report.get("reconciled")) and exact and per_table_exact,
            "reasons": report.get("reasons", {}),
            "per_table": {t: {k: v[k] for k in keys} for t, v in report.get("tables", {}).items()},
        }
    return {"tables": tables_under(out_dir), "counts": counts, "cutoffs": report.get("cutoffs")}


def run_one(job: str, name: str) -> dict:
    out_dir = ROOT / OUT / name / job
    cmd = [
        str(ROOT / ".venv/bin/recsys"),
        "run",
        job,
        "--config",
        str(config_path(job, name).relative_to(ROOT)),
        *overrides(job, name),
    ]
    log = ROOT / OUT / name / f"{job}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT).returncode
    wall = round(time.perf_counter() - t0, 1)
    rep_path = out_dir / "report.json"
    report = json.loads(rep_path.read_text()) if rep_path.exists() else {}
    row = {
        "set": name,
        "job": job,
        "command": " ".join(cmd[1:]),
        "exit_code": rc,
        "wall_s": wall,
        "status": report.get("status"),
        "error": report.get("error"),
        "log": str(log.relative_to(ROOT)),
    }
    if (
        report.get("status") == "succeeded" or job == "inventory"
    ):  # a contract failure still writes the profile
        row["summary"] = summarize(job, report, out_dir)
    return row


def cell(row: dict) -> str:
    s = row.get("summary", {})
    if row["job"] == "inventory" and s and s["contract_ok"] is not None:
        tables = ", ".join(f"{t} {n:,}" for t, n in s["tables"].items())
        return f"{tables}; contract {'ok' if s['contract_ok'] else 'VIOLATED'}"
    if row["job"] == "clean" and s:
        return (
            f"in {s['rows_in']:,} = clean {s['rows_clean']:,} + quarantined {s['rows_quarantined']:,} + "
            f"duplicate {s['rows_duplicate']:,} ({'exact' if s['reconciled'] else 'NOT RECONCILED'})"
        )
    if row["job"] == "features" and s:
        keep = (
            "items",
            "sequences",
            "splits/loo/train",
            "splits/loo/test",
            "splits/time/train",
            "splits/time/test",
            "pairs",
            "candidates",
            "user_features",
            "item_features",
            "text_features",
            "query_features",
        )
        return ", ".join(f"{t} {s['tables'][t]:,}" for t in keep if s["tables"].get(t) is not None)
    error = re.sub(r"\x1b\[[0-9;]*m", "", row.get("error") or "")  # Ray colours task names
    return " ".join(error.split())[:120].replace("|", "/")


def markdown(rows: list[dict]) -> str:
    lines = ["| set | job | exit | wall s | result |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['job']} | {r['exit_code']} | {r['wall_s']} | {cell(r)} |")
    return "\n".join(lines)


def write_summary(path: Path, rows: list[dict], problems: list[str]) -> list[dict]:
    previous = (
        json.loads(path.read_text())["runs"] if path.exists() else []
    )  # re-read: another run may have written
    done = {(r["set"], r["job"]) for r in rows}
    merged = [r for r in previous if (r["set"], r["job"]) not in done] + rows
    merged.sort(key=lambda r: (SETS.index(r["set"]), JOBS.index(r["job"])))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "chain_problems": problems,
                "runs": merged,
            },
            indent=2,
            default=str,
        )
    )
    return merged


def per_set(rows: list[dict]) -> str:
    """One line per set (the table in docs/DATA.md)."""
    keep = [
        ("sequences", "sequences"),
        ("splits/loo/test", "loo test"),
        ("splits/time/test", "time test"),
        ("pairs", "pairs"),
        ("candidates", "candidates"),
        ("user_features", "user_features"),
        ("item_features", "item_features"),
        ("text_features", "text_features"),
    ]
    by: dict[str, dict[str, dict]] = {}
    for r in rows:
        by.setdefault(r["set"], {})[r["job"]] = r
    lines = [
        "| set | inventory: rows (contract) | clean: in = clean + quarantined + duplicate "
        "| features: rows of the main tables "
        "| wall s (inventory / clean / features) |",
        "|---|---|---|---|---|",
    ]
    for name, jobs in by.items():
        inv, cln, fts = (jobs.get(j, {}).get("summary") or {} for j in JOBS)
        i = ", ".join(f"{t} {n:,}" for t, n in inv.get("tables", {}).items()) + {
            True: " (ok)",
            False: " (VIOLATED)",
        }.get(inv.get("contract_ok"), " (-)")
        c = (
            (
                f"{cln['rows_in']:,} = {cln['rows_clean']:,} + {cln['rows_quarantined']:,} + {cln['rows_duplicate']:,} "
                + ("exact" if cln["reconciled"] else "NOT RECONCILED")
            )
            if cln
            else "-"
        )
        f = ", ".join(
            f"{label} {fts['tables'][k]:,}" for k, label in keep if fts.get("tables", {}).get(k) is not None
        )
        failed = [j for j in JOBS if j in jobs and jobs[j]["exit_code"] != 0]
        wall = " / ".join(str(jobs[j]["wall_s"]) if j in jobs else "-" for j in JOBS)
        lines.append(
            f"| {name} | {i} | {c} | {f or '-'} | {wall}{' (failed: ' + ', '.join(failed) + ')' if failed else ''} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=SETS, choices=SETS)
    ap.add_argument("--jobs", nargs="+", default=JOBS, choices=JOBS)
    ap.add_argument(
        "--table", action="store_true", help="Only print the table of runs/data-sets/summary.json."
    )
    args = ap.parse_args()
    summary_path = ROOT / OUT / "summary.json"
    if args.table:
        runs = json.loads(summary_path.read_text())["runs"]
        print(markdown(runs) + "\n\n" + per_set(runs))
        return 0
    rows, problems = [], [p for p in map(check_chain, args.sets) if p]
    for p in problems:
        print("CHAIN:", p, file=sys.stderr)
    for name in args.sets:
        for job in [j for j in JOBS if j in args.jobs]:
            row = run_one(job, name)
            rows.append(row)
            print(f"{name} {job}: exit {row['exit_code']} in {row['wall_s']} s  {cell(row)}", flush=True)
            merged = write_summary(
                summary_path, rows, problems
            )  # after each job: a cut-off run keeps its rows
    print(markdown(merged) + "\n\n" + per_set(merged))
    return 0 if not problems and all(r["exit_code"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
