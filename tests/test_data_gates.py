"""Data-loss gates of the clean job and the pipeline: bounds, the failure summary, business-loss numbers.

Plain functions on hand-made numbers (no Ray); the clean run that fails the gate end to end is the hostile
CSV of tests/test_data_clean.py."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from recsys.data.clean import REASON, STATUS, business_loss, data_gate, loss_counts


def _tables(quarantined: int, null_users: int) -> dict:
    """One events table of 1,000 rows (5 duplicates) and one items table of 200 clean rows."""
    return {
        "events": {
            "rows_in": 1000,
            "rows_quarantined": quarantined,
            "rows_duplicate": 5,
            "reasons": {
                "bot_burst": quarantined - 10,
                "exact_duplicate": 5,
                "missing_key:user_id": 7,
                "bad_timestamp": 3,
            },
            "nulls": {"user_id": null_users, "item_id": 0},
        },
        "items": {
            "rows_in": 200,
            "rows_quarantined": 0,
            "rows_duplicate": 0,
            "reasons": {},
            "nulls": {"item_id": 0},
        },
    }


BOUNDS = {"user_id": 0.05, "item_id": 0.05}


def test_gate_passes_at_the_bounds():
    gate = data_gate(_tables(quarantined=50, null_users=50), 0.05, BOUNDS)  # 5.0 % each: inclusive
    assert gate["passed"] and gate["failures"] == []
    assert [(c["table"], c["check"], c["value"]) for c in gate["checks"]] == [
        ("events", "quarantine_fraction", 0.05),
        ("events", "null_fraction:item_id", 0.0),
        ("events", "null_fraction:user_id", 0.05),
        ("items", "quarantine_fraction", 0.0),
        ("items", "null_fraction:item_id", 0.0),
    ]
    assert gate["summary"] == "data-loss gate passed"


def test_gate_fails_on_quarantine_share_naming_the_top_reasons():
    gate = data_gate(_tables(quarantined=51, null_users=7), 0.05, BOUNDS)
    assert not gate["passed"]
    assert gate["failures"] == ["events: quarantine_fraction 5.10% > 5.00% (51 of 1,000 rows)"]
    assert gate["top_reasons"] == [["bot_burst", 41], ["missing_key:user_id", 7], ["bad_timestamp", 3]]
    assert gate["summary"].startswith(
        "data-loss gate failed; top quarantine reasons: bot_burst 41, missing_key:user_id 7, bad_timestamp 3. "
        "Failed: events: quarantine_fraction 5.10% > 5.00% (51 of 1,000 rows). Check the input mapping"
    )
    assert "exact_duplicate" not in gate["summary"]  # duplicates are not a loss
    assert data_gate(_tables(quarantined=51, null_users=7), 0.06, BOUNDS)["passed"]  # a config raises it


def test_gate_fails_on_null_share_of_a_key_column():
    gate = data_gate(_tables(quarantined=20, null_users=62), 0.05, BOUNDS)
    assert gate["failures"] == ["events: null_fraction:user_id 6.20% > 5.00% (62 null)"]
    assert data_gate(_tables(quarantined=20, null_users=62), 0.05, {"user_id": 0.1, "item_id": 0.05})[
        "passed"
    ]
    assert data_gate(_tables(quarantined=20, null_users=62), 0.05, {})["passed"]  # no null bounds


def test_clean_config_bounds(tmp_path):
    from recsys.data.config import CleanConfig

    (tmp_path / "x.csv").write_text("a\n")
    inp = {"path": str(tmp_path / "x.csv")}
    cfg = CleanConfig.model_validate({"input": inp})
    assert cfg.max_quarantine_fraction == 0.05
    assert cfg.max_null_fraction == {"user_id": 0.05, "item_id": 0.05}
    with pytest.raises(ValueError, match="max_null_fraction"):
        CleanConfig.model_validate({"input": inp, "max_null_fraction": {"user_id": 1.5}})


def _done(rows: list[tuple]) -> pa.Table:
    """A partition after the keyed stage: (user, session, minute, price, quantity, status)."""
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    return pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.string()),
            "session_id": pa.array([r[1] for r in rows], pa.string()),
            "timestamp": pa.array([t0 + dt.timedelta(minutes=r[2]) for r in rows], pa.timestamp("us", "UTC")),
            "price": pa.array([r[3] for r in rows], pa.float64()),
            "quantity": pa.array([r[4] for r in rows], pa.int32()),
            STATUS: [r[5] for r in rows],
            REASON: [None if r[5] == "ok" else "x" for r in rows],
        }
    )


LOG = [
    ("a", "s1", 0, 10.0, 2, "ok"),  # a keeps s1, loses s2
    ("a", "s1", 1, 5.0, 1, "quarantine"),
    ("a", "s2", 100, 2.5, 4, "quarantine"),
    ("b", "s3", 0, 100.0, 1, "quarantine"),  # b lost entirely (one session)
    ("b", "s3", 0, 100.0, 1, "duplicate"),
    ("c", "s4", 0, None, 3, "ok"),  # no price: no revenue, quantity counts
    ("c", "s4", 50, 1.0, None, "quarantine"),  # no quantity: revenue = price
    (None, "s5", 0, 7.0, -2, "quarantine"),  # no user: not a user, not a session
]


def test_business_loss_exact_on_a_hand_made_log():
    got = loss_counts(_done(LOG), "events", gap_us=30 * 60 * 10**6, given_sessions=True)
    assert got == {
        "users_in": 3,
        "users_lost": 1,
        "rows_without_user": 1,
        "sessions_in": 4,
        "sessions_lost": 2,  # a:s2, b:s3
        # |price x quantity|, quantity 1 where absent: 20 + 5 + 10 + 100 + 100 + 1 + 14
        "revenue_in": 250.0,
        "revenue_quarantined": 5.0 + 10.0 + 100.0 + 1.0 + 14.0,
        "quantity_in": 2 + 1 + 4 + 1 + 1 + 3 + 2,
        "quantity_quarantined": 1 + 4 + 1 + 2,
    }
    loss = business_loss(got)
    assert loss["revenue_quarantined_share"] == 0.52  # 130 / 250
    assert loss["quantity_quarantined_share"] == round(8 / 14, 6)
    assert isinstance(loss["users_lost"], int)
    no_prices = business_loss({"users_in": 2.0, "revenue_in": 0.0, "revenue_quarantined": 0.0})
    assert no_prices == {"users_in": 2}  # a log without prices states no revenue share


def test_sessions_without_session_ids_are_cut_by_the_gap_over_every_input_row():
    log = [(u, None, m, 1.0, 1, s) for u, m, s in LOG_GAP]
    got = loss_counts(_done(log), "events", gap_us=30 * 60 * 10**6, given_sessions=False)
    assert (got["sessions_in"], got["sessions_lost"]) == (4, 2)


LOG_GAP = [
    ("a", 0, "ok"),
    ("a", 20, "quarantine"),  # same session as minute 0 (20 min gap)
    ("a", 60, "quarantine"),  # new session (40 min gap), all quarantined: lost
    ("a", 61, "quarantine"),
    ("b", 0, "quarantine"),  # b's only session: lost
    ("c", 5, "ok"),
]


def test_pipeline_data_loss_gate_reads_the_clean_verdict():
    """The pipeline's gate judges the clean report's own numbers by the same function and bounds."""
    from recsys.pipeline import gates as G

    for quarantined, passed in ((50, True), (80, False)):
        tables = _tables(quarantined=quarantined, null_users=7)
        recorded = data_gate(tables, 0.05, BOUNDS)
        report = {"status": "succeeded" if passed else "failed", "tables": tables, "data_gate": recorded}
        v = G.data_loss("no-data-loss", "clean", report, None)
        assert v.passed is recorded["passed"] is passed
        assert v.reason == recorded["summary"]
        assert v.details["top_reasons"] == recorded["top_reasons"]
    # bounds the clean config raised are the ones the pipeline applies
    report["data_gate"] = data_gate(tables, 0.1, BOUNDS)
    assert G.data_loss("g", "clean", report, None).passed
    missing = G.data_loss("g", "clean", {"status": "failed", "error": "ValueError: bad"}, None)
    assert not missing.passed and "ValueError: bad" in missing.reason


def test_pipeline_runner_reads_the_data_loss_gate_of_a_failed_clean_stage(tmp_path):
    """The clean job fails when its gate fails: the runner still records the data_loss verdict (the reason
    the stage stopped), while gates that need a succeeded stage (reconciliation) wait for it."""
    import logging

    from recsys.pipeline.config import PipelineConfig
    from recsys.pipeline.runner import PipelineRunner

    cfg = PipelineConfig.model_validate(
        {
            "stages": [{"name": "clean", "job": "clean", "config": "tiny"}],
            "gates": [
                {"name": "rows-reconcile", "kind": "reconciliation", "stage": "clean"},
                {"name": "no-data-loss", "kind": "data_loss", "stage": "clean"},
            ],
            "track": False,
        }
    )
    runner = PipelineRunner(cfg, tmp_path, logging.getLogger("test"))
    tables = _tables(quarantined=80, null_users=7)
    report = {"status": "failed", "tables": tables, "data_gate": data_gate(tables, 0.05, BOUNDS)}
    (v,) = runner._gates_after("clean", report, None)
    assert (v.gate, v.kind, v.passed) == ("no-data-loss", "data_loss", False)
    assert v.reason == report["data_gate"]["summary"]
    assert runner.lineage["gates"] == [v.as_dict()]
