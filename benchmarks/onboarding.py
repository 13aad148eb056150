"""Onboarding logs recsys has never seen, by config alone: `inventory` with only `input.path`, then `clean`
with the proposed adapter and no hand edits (issue #28's target).

    .venv/bin/python -m benchmarks.onboarding [--logs purchases clicks beauty taobao ...] [--out runs/onboarding]

Three layouts unlike any preset, written under --out from the shared data (never copied into the repo):

- ``purchases``: space-aligned text with CRLF line ends and no header (customer, yyyymmdd, quantity, amount:
  the CDNOW layout), one record per customer and day of UCI Online Retail's purchases; no item ids.
- ``clicks``: a semicolon CSV ``sessionId;userId;itemId;timeframe;eventdate`` (the DIGINETICA layout): Taobao's
  events cut into sessions (user x day), the user given as the literal ``NA`` in 60 % of the sessions,
  ``timeframe`` = milliseconds since the session's first event, ``eventdate`` = its day; no event names.
- ``beauty``: ``Beauty.txt`` as it is (one line per user: ``user item1 item2 ...``).

and the shared sets' own files read without their presets (``taobao``, ``online-retail``, ``video``).

For each log: ``recsys run inventory --config configs/inventory/onboard.yaml input.path=FILE``, then
``recsys run clean --config <inventory output>/clean.yaml`` (the ready-to-run clean config the inventory
writes next to ``adapter.yaml``). Reported per log: the inventory's verdict, records in, clean,
quarantined, duplicates, **clean share of the non-duplicate records** (target >= 98 %), whether the counts
reconcile exactly, users in the source vs users in the clean output (target: none lost), the clean job's
exit code; and one negative check: the clicks log with a wrong delimiter must make ``clean`` exit non-zero.
Prints a markdown table and writes ``<out>/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RECSYS_DATA_ROOT", ROOT.parent / "shared" / "data")).resolve()
RECSYS = str(Path(sys.executable).parent / "recsys")


def write_purchases(out: Path) -> dict[str, Any]:
    """CDNOW-style records from UCI Online Retail: one per customer and day with its units and amount."""
    df = pd.read_excel(DATA / "online-retail" / "online_retail_sample.xlsx")
    df = df[df.CustomerID.notna() & (df.Quantity > 0)].copy()
    df["day"] = df.InvoiceDate.dt.strftime("%Y%m%d")
    df["amount"] = df.Quantity * df.UnitPrice
    g = df.groupby(["CustomerID", "day"], as_index=False).agg(
        qty=("Quantity", "sum"), amount=("amount", "sum")
    )
    g = g.sort_values(["CustomerID", "day"])
    lines = [
        f"{int(r.CustomerID):>7} {r.day} {int(r.qty):>3} {r.amount:>8.2f}\r\n"
        for r in g.itertuples(index=False)
    ]
    path = out / "purchases.txt"
    path.write_text("".join(lines), newline="")
    return {"path": str(path), "records": len(g), "users": int(g.CustomerID.nunique())}


def write_clicks(out: Path) -> dict[str, Any]:
    """DIGINETICA-style clicks from Taobao: sessions = user x day, 'NA' user in 60 % of them, ms offsets."""
    df = pd.read_csv(
        DATA / "taobao-user-behavior" / "UserBehavior.csv",
        header=None,
        names=["user", "item", "cat", "b", "ts"],
    )
    df["day"] = pd.to_datetime(df.ts, unit="s", utc=True).dt.strftime("%Y-%m-%d")
    df = df.sort_values(["user", "ts", "item"], kind="stable")
    sessions = df.groupby(["user", "day"], sort=False).ngroup() + 1
    df["sessionId"] = sessions
    df["timeframe"] = (df.ts - df.groupby("sessionId").ts.transform("min")) * 1000
    anonymous = (sessions * 2654435761 % 100) < 60  # a fixed pseudo-random 60 % of the sessions
    df["userId"] = df.user.astype(str).where(~anonymous, "NA")
    # nullable ints: Taobao's last line is truncated (no timestamp)
    df["sessionId"], df["timeframe"] = df.sessionId.astype("Int64"), df.timeframe.astype("Int64")
    cols = ["sessionId", "userId", "item", "timeframe", "day"]
    out_df = df[cols].rename(columns={"item": "itemId", "day": "eventdate"})
    path = out / "clicks.csv"
    out_df.to_csv(path, sep=";", index=False)
    known = df.loc[~anonymous, "user"].nunique()
    return {
        "path": str(path),
        "records": len(out_df),
        "users": int(
            known + df.loc[anonymous, "sessionId"].nunique()
        ),  # anonymous sessions are their own users
        "note": f"{int(anonymous.mean() * 100)} % of rows anonymous",
    }


def beauty(out: Path) -> dict[str, Any]:
    path = DATA / "amazon-beauty" / "Beauty.txt"
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    return {"path": str(path), "records": sum(len(p) - 1 for p in lines), "users": len(lines)}


def taobao(out: Path) -> dict[str, Any]:
    path = DATA / "taobao-user-behavior" / "UserBehavior.csv"
    df = pd.read_csv(path, header=None)
    return {"path": str(path), "records": len(df), "users": int(df[0].nunique())}


def online_retail(out: Path) -> dict[str, Any]:
    path = DATA / "online-retail" / "online_retail_sample.xlsx"
    df = pd.read_excel(path)
    return {
        "path": str(path),
        "records": len(df),
        "users": int(df.CustomerID.nunique()),
        "note": "rows without CustomerID are guest checkouts",
    }


def video(out: Path) -> dict[str, Any]:
    path = DATA / "amazon-video-games" / "Video.txt"
    df = pd.read_csv(path, sep=" ", header=None)
    return {"path": str(path), "records": len(df), "users": int(df[0].nunique())}


LOGS = {
    "purchases": write_purchases,
    "clicks": write_clicks,
    "beauty": beauty,
    "taobao": taobao,
    "online-retail": online_retail,
    "video": video,
}


def run(args: list[str], log: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.run(
            [RECSYS, "run", *args, "--quiet"], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT
        ).returncode
    return rc, time.perf_counter() - t0


def clean_users(clean_dir: Path) -> int | None:
    files = sorted((clean_dir / "events").rglob("*.parquet"))
    if not files:
        return None
    return int(
        pd.concat([pq.read_table(f, columns=["user_id"]).to_pandas() for f in files]).user_id.nunique()
    )


def onboard(name: str, truth: dict[str, Any], out: Path) -> dict[str, Any]:
    inv, cln = out / name / "inventory", out / name / "clean"
    row: dict[str, Any] = {
        "log": name,
        **{k: truth[k] for k in ("records", "users")},
        "note": truth.get("note", ""),
    }
    rc, secs = run(
        [
            "inventory",
            "--config",
            "configs/inventory/onboard.yaml",
            f"input.path={truth['path']}",
            f"output_dir={inv}",
        ],
        out / name / "inventory.log",
    )
    report = json.loads((inv / "report.json").read_text()) if (inv / "report.json").exists() else {}
    row.update(inventory_rc=rc, inventory_s=round(secs, 1), verdict=report.get("verdict"))
    if not (inv / "clean.yaml").exists():
        return row | {"error": "inventory wrote no clean.yaml"}
    rc, secs = run(
        ["clean", "--config", str(inv / "clean.yaml"), f"output_dir={cln}"], out / name / "clean.log"
    )
    row.update(clean_rc=rc, clean_s=round(secs, 1))
    rep = json.loads((cln / "report.json").read_text()) if (cln / "report.json").exists() else {}
    counts = rep.get("counts") or {}
    rows_in, ok = counts.get("rows_in"), counts.get("rows_clean")
    quarantined, dups = counts.get("rows_quarantined"), counts.get("rows_duplicate")
    row["gate"] = (rep.get("data_gate") or {}).get("summary")
    row.update(rows_in=rows_in, clean=ok, quarantined=quarantined, duplicates=dups)
    if None not in (rows_in, ok, quarantined, dups):
        row["reconciles"] = rows_in == ok + quarantined + dups
        row["clean_share"] = round(ok / max(1, rows_in - dups), 4)
    row["users_clean"] = clean_users(cln)
    row["users_lost"] = None if row["users_clean"] is None else max(0, truth["users"] - row["users_clean"])
    return row


def wrong_delimiter(out: Path, clicks: dict[str, Any]) -> dict[str, Any]:
    """The clicks log read as commas with the proposed columns: clean must refuse it (non-zero exit)."""
    proposed = yaml.safe_load((out / "clicks" / "inventory" / "clean.yaml").read_text())
    proposed["input"]["delimiter"] = ","
    proposed["output_dir"] = str(out / "clicks-wrong-delimiter")
    path = out / "clicks-wrong-delimiter.yaml"
    path.write_text(yaml.safe_dump(proposed, sort_keys=False))
    rc, _ = run(["clean", "--config", str(path)], out / "clicks-wrong-delimiter.log")
    tail = (out / "clicks-wrong-delimiter.log").read_text().strip().splitlines()[-3:]
    return {"check": "clicks log with delimiter ','", "clean_rc": rc, "message": " | ".join(tail)[-400:]}


def markdown(rows: list[dict[str, Any]]) -> str:
    cols = [
        "log", "verdict", "records", "rows_in", "clean", "quarantined", "duplicates", "clean_share",
        "reconciles", "users", "users_clean", "users_lost", "clean_rc", "inventory_s", "clean_s",
    ]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--logs", nargs="+", default=list(LOGS), choices=list(LOGS))
    ap.add_argument("--out", default="runs/onboarding")
    a = ap.parse_args()
    out = (ROOT / a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows, truths = [], {}
    for name in a.logs:
        (out / name).mkdir(exist_ok=True)
        truths[name] = LOGS[name](out)
        rows.append(onboard(name, truths[name], out))
        print(json.dumps(rows[-1]), flush=True)
    checks = [wrong_delimiter(out, truths["clicks"])] if "clicks" in truths else []
    print(markdown(rows))
    for c in checks:
        print(f"negative check: {c['check']}: clean exit code {c['clean_rc']} ({c['message']})")
    (out / "summary.json").write_text(json.dumps({"logs": rows, "checks": checks}, indent=2))
    ok = all(
        r.get("clean_rc") == 0
        and r.get("reconciles")
        and (r.get("clean_share") or 0) >= 0.98
        and not r.get("users_lost")
        for r in rows
    ) and all(c["clean_rc"] != 0 for c in checks)
    print("target met" if ok else "target NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
