"""Inventory: numbers against a hand computation, quality-contract failures, role inference on the shared sets."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from recsys.data.inventory import check_contract, profile_table
from recsys.data.schema import TS

NOW = dt.datetime(2024, 1, 11, tzinfo=dt.timezone.utc)


def _events() -> pa.Table:
    t = [dt.datetime(2024, 1, d, tzinfo=dt.timezone.utc) for d in (1, 1, 2, 3, 3, 10)]
    return pa.table(
        {
            "user_id": ["u1", "u1", "u2", None, "u3", "u1"],
            "item_id": ["a", "a", "b", "c", "zz", "a"],
            "event_type": ["view", "view", "buy", "view", "cart", "view"],
            "timestamp": pa.array([t[0], t[0], t[2], t[3], t[4], t[5]], TS),
            "price": [1.0, 1.0, 3.0, 5.0, 7.0, 100.0],
            "query": ["red shoes", "red shoes", "mail bob@example.com", None, "x", "y"],
        }
    )


def test_profile_matches_hand_computation(ray_session):
    import ray

    refs = {"events.item_id -> items": ("item_id", pa.array(["a", "b", "c"]))}
    p = profile_table(ray.data.from_arrow(_events()), "events", 3, 5, NOW, refs)
    c = p["columns"]
    assert p["rows"] == 6
    assert c["user_id"]["null_rate"] == pytest.approx(1 / 6) and c["user_id"]["distinct"] == 3
    assert (c["price"]["min"], c["price"]["max"]) == (1.0, 100.0)
    assert c["timestamp"]["coverage_days"] == pytest.approx(9.0)
    assert c["timestamp"]["freshness_days"] == pytest.approx(1.0)
    assert p["duplicate_rate"] == pytest.approx(1 / 6)  # row 2 repeats row 1
    assert p["referential_integrity"]["events.item_id -> items"]["orphans"] == 1  # "zz"
    assert c["query"]["pii"]["email"]["rows"] == 1
    assert c["event_type"]["top"][0] == {"value": "view", "count": 4}
    assert p["funnel"] == {"view": 4, "buy": 1, "cart": 1}
    assert sum(p["daily_events"].values()) == 6 and p["daily_events"]["2024-01-01"] == 2
    assert sum(c["price"]["histogram"]["counts"]) <= 6


def test_contract_names_every_violation():
    prof = {
        "events": {
            "rows": 6,
            "duplicate_rate": 1 / 6,
            "referential_integrity": {},
            "columns": {"user_id": {"null_rate": 1 / 6, "distinct": 3}, "timestamp": {"freshness_days": 3.0}},
        }
    }
    rules = [
        {"metric": "null_rate", "table": "events", "column": "user_id", "max": 0.01, "min": None},
        {"metric": "duplicate_rate", "table": "events", "max": 0.05, "min": None, "column": None},
        {"metric": "freshness_days", "table": "events", "max": 2, "min": None, "column": None},
        {"metric": "min_rows", "table": "events", "min": 5, "max": None, "column": None},
        {"metric": "null_rate", "table": "events", "column": "nope", "max": 0.1, "min": None},
    ]
    res = check_contract(prof, rules)
    assert [r["ok"] for r in res] == [False, False, False, True, False]
    assert res[4]["why"] == "table/column not found"


@pytest.mark.slow
def test_inventory_job_contract_failure_and_adapter(ray_session, tmp_path):
    """Unknown file: roles inferred, adapter.yaml written; a violated contract fails the job naming the rule."""
    from recsys.cli.entry import parse_job, run_parsed

    (tmp_path / "log.csv").write_text(
        "customer,product,behavior,ts,amount\n"
        + "\n".join(
            f"c{i % 7},p{i % 11},{'pv' if i % 3 else 'buy'},{1700000000 + 60 * i},{i % 5 + 0.5}"
            for i in range(300)
        )
        + "\n,p1,pv,1700000000,1\n"
    )
    spec, cfg = parse_job(
        "inventory",
        "tiny",
        [
            f"input.path={tmp_path / 'log.csv'}",
            "input.preset=null",
            "limit=null",
            f"output_dir={tmp_path / 'inv'}",
            "contract=[{metric: null_rate, table: events, column: user_id, max: 0.0}, "
            "{metric: min_rows, table: events, min: 100}]",
        ],
    )
    with pytest.raises(RuntimeError, match=r"null_rate\(events.user_id\) <= 0.0"):
        run_parsed(spec, cfg)
    report = json.loads((tmp_path / "inv" / "report.json").read_text())
    assert report["status"] == "failed"
    inv = json.loads((tmp_path / "inv" / "inventory.json").read_text())
    assert {r["column"]: r["role"] for r in inv["roles"]} == {
        "customer": "user_id",
        "product": "item_id",
        "behavior": "event_type",
        "ts": "timestamp",
        "amount": "price",
    }
    assert (inv["verdict"], inv["review"]) == ("ok", [])  # every role named, none unfilled
    assert inv["tables"]["events"]["columns"]["user_id"]["null_share"] == pytest.approx(1 / 301)
    assert inv["tables"]["events"]["columns"]["timestamp"]["parse_rate"] == 1.0
    adapter = (tmp_path / "inv" / "adapter.yaml").read_text()
    assert "pv: view" in adapter and "timestamp_unit: s" in adapter
    assert "    customer: user_id  # confidence 0.60: name matches user_id\n" in adapter
    assert "# verdict: ok" in adapter
    html = (tmp_path / "inv" / "inventory.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "FAIL" in html
    # the proposed adapter is accepted by the clean job
    import yaml

    from recsys.config import InputConfig

    InputConfig.model_validate(yaml.safe_load(adapter)["input"])
    # no contract: the default one warns; 30 % 'NA' customers make the verdict "review needed", status succeeded
    (tmp_path / "na.csv").write_text(
        "customer,product,behavior,ts\n"
        + "\n".join(
            f"{'NA' if i % 10 < 3 else f'c{i % 7}'},p{i % 11},pv,{1700000000 + 60 * i}" for i in range(300)
        )
        + "\n"
    )
    spec, cfg = parse_job(
        "inventory",
        "tiny",
        [
            f"input.path={tmp_path / 'na.csv'}",
            "input.preset=null",
            "limit=null",
            f"output_dir={tmp_path / 'na'}",
        ],
    )
    cfg.contract = []
    report = run_parsed(spec, cfg)
    assert report["status"] == "succeeded" and report["verdict"] == "review needed"
    assert report["review"] == [
        "user_id column 'customer': 30% null (NA 30%); those rows have no user and are not counted as one",
        "contract warning: null_rate(events.user_id) <= 0.05 (warn) (got 0.3)",
    ]
    assert report["contract_violations"] == [] and len(report["contract_warnings"]) == 1


def test_role_inference_on_shared_sets(shared_data):
    from recsys.data.roles import evaluate_shared

    res = evaluate_shared(str(shared_data), rows=2000)
    assert res["columns"] == 17 and res["right"] >= 16, res["per_file"]


def test_daily_counts_skip_null_timestamps():
    """Taobao rows with an unparsable time are null: they must not turn the day keys into floats."""
    from recsys.data.inventory import PassSpec, partial_pass

    ts = pa.array(
        [
            dt.datetime(2017, 11, 25, 1, tzinfo=dt.timezone.utc),
            None,
            dt.datetime(2017, 11, 25, 9, tzinfo=dt.timezone.utc),
            dt.datetime(2017, 11, 26, tzinfo=dt.timezone.utc),
        ],
        TS,
    )
    block = pa.table({"timestamp": ts})
    p = PassSpec(
        bins={}, fences={}, time_col="timestamp", text_cols=[], dup_cols=[], funnel_col=None, refs={}
    )
    out = json.loads(partial_pass(block, p)["json"][0].as_py())
    assert out["daily"] == {"17495": 2, "17496": 1}
