"""Role inference that states its confidence and refuses to guess (issue #28), in-process, no Ray:
offset columns, logs without event names, null-token ids, adapter.yaml comments, the verdict, and the
contract's parse_rate / null-token checks."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest
import yaml

from recsys.config.base import InputConfig
from recsys.data.config import DEFAULT_CONTRACT, QualityRule
from recsys.data.inventory import PassSpec, _null_and_parse, check_contract, partial_pass
from recsys.data.inventory_job import default_rules, reader_options, verdict
from recsys.data.roles import adapter_yaml, infer_roles, propose


def session_log(sorted_offsets: bool = True) -> pd.DataFrame:
    """8 sessions x 5 clicks; users 'NA' in sessions 1-4 and 8 (25 of 40 rows); a ms offset per click."""
    rows = []
    for s in range(1, 9):
        user = "NA" if s % 8 < 5 else str(1000 + s)
        offs = [s * 7 + 1000 * k + k * k for k in range(5)]
        for k, off in enumerate(offs if sorted_offsets else offs[::-1]):
            rows.append((str(s), user, str((s * 13 + k * 7) % 23), str(off), f"2016-05-{s:02d}"))
    return pd.DataFrame(rows, columns=["sessionId", "userId", "itemId", "timeframe", "eventdate"])


def by_column(roles: list[dict]) -> dict[str, tuple]:
    return {r["column"]: (r["role"], r["confidence"]) for r in roles}


def test_offset_within_session_is_offset_not_category():
    roles = infer_roles(session_log())
    assert by_column(roles) == {
        "sessionId": ("session_id", 0.6),
        "userId": ("user_id", 0.6),
        "itemId": ("item_id", 0.6),
        "timeframe": ("offset", 1.0),
        "eventdate": ("timestamp", 1.0),
    }
    assert roles[3]["why"] == (
        "name matches an offset; values are integers >= 0, not epochs; "
        "never decreases within sessionId (100% of 32 consecutive pairs)"
    )
    # without names: the monotony within the session column alone makes it an offset, not a category
    anon = session_log()
    anon.columns = [f"col{i}" for i in range(5)]
    assert by_column(infer_roles(anon))["col3"] == ("offset", 0.8)
    # the same values in reverse order within each session are no offset, and not a category either
    shuffled = session_log(sorted_offsets=False)
    shuffled.columns = [f"col{i}" for i in range(5)]
    assert by_column(infer_roles(shuffled))["col3"] == (None, 0.0)
    # a date + the offset: the proposal's timestamp is composite; the date is no longer a column
    p = propose(roles, session_log(), {"path": "clicks.csv"})
    assert p.input["timestamp"] == {"date": "eventdate", "offset_ms": "timeframe"}
    assert "eventdate" not in p.input["columns"] and "timeframe" not in p.input["columns"]


def test_a_named_position_growing_within_a_session_stays_a_position():
    rows = [
        (f"s{s}", f"i{(s + k) % 7}", str(k), str(1_700_000_000 + 60 * k)) for s in range(6) for k in range(5)
    ]
    df = pd.DataFrame(rows, columns=["session_id", "item_id", "position", "ts"])
    assert by_column(infer_roles(df))["position"] == ("position", 0.6)


def test_sequence_number_without_a_date_is_the_timestamp_in_seconds():
    rows = [(f"u{u}", f"i{(u * 3 + k) % 7}", str(k)) for u in range(6) for k in range(5)]
    df = pd.DataFrame(rows, columns=["visitor", "sku", "step"])
    roles = infer_roles(df)
    assert by_column(roles)["step"] == ("sequence", 1.0)
    p = propose(roles, df, {"path": "x.csv"})
    assert p.input["columns"] == {"visitor": "user_id", "sku": "item_id", "step": "timestamp"}
    assert p.input["timestamp_unit"] == "s"
    assert p.warnings[0] == (
        "timestamp: no date column; sequence column 'step' is the timestamp in s from 1970-01-01 "
        "(order kept, dates and durations meaningless)"
    )


def test_log_without_event_names_is_view_with_a_warning_never_buy():
    """A purchases log (customer, date, quantity, amount) and a 'type' column of codes."""
    df = pd.DataFrame(
        {
            "customer": [f"c{i % 4}" for i in range(40)],
            "product": [f"p{i % 9}" for i in range(40)],
            "type": ["A", "B"] * 20,
            "date": [f"1997-01-{i % 28 + 1:02d}" for i in range(40)],
            "quantity": [str(i % 3 + 1) for i in range(40)],
            "amount": [f"{i % 7 + 0.5:.2f}" for i in range(40)],
        }
    )
    roles = infer_roles(df)
    # named like an event type, values are not event names: at most a category, on the review list
    assert by_column(roles)["type"] == ("category", 0.3)
    p = propose(roles, df, {"path": "buys.csv"})
    assert p.input["defaults"] == {"event_type": "view"}
    assert "event_map" not in p.input and p.input["columns"]["type"] == "category"
    why = "no column of event names; 'type' is named like one but holds A, B"
    assert p.warnings == [
        f"event_type: {why}; input.defaults.event_type is view - set it if these are not views"
    ]
    assert p.unfilled == [f"event_type ({why}: every row proposed as a view, never guessed as buy)"]
    assert p.verdict == "review needed"
    # a column of event names is proposed with its map
    df["type"] = ["pv", "buy"] * 20
    p = propose(infer_roles(df), df, {"path": "buys.csv"})
    assert p.input["columns"]["type"] == "event_type" and p.input["event_map"] == {"pv": "view"}
    assert "defaults" not in p.input


def test_space_aligned_purchases_without_names():
    """customer, yyyymmdd date, quantity, amount (whatever reader split them): no item column, no events."""
    rows = [
        (
            f"{c:05d}",
            f"1997{c % 12 + 1:02d}{k % 28 + 1:02d}",
            str(1 + (c + k) % 3),
            f"{(c * 7 + k) % 50 + 0.77:.2f}",
        )
        for c in range(1, 60)
        for k in range(4)
    ]
    df = pd.DataFrame(rows, columns=["col0", "col1", "col2", "col3"])
    roles = infer_roles(df)
    assert by_column(roles) == {
        "col0": ("user_id", 0.4),
        "col1": ("timestamp", 0.5),
        "col2": ("quantity", 0.35),  # a count, not guessed as the item id
        "col3": ("price", 0.4),
    }
    p = propose(roles, df, {"path": "cd.txt"})
    assert p.input["timestamp_format"] == "%Y%m%d"
    # no item column: the rows are kept under one constant item (said, never silent), not quarantined
    assert p.input["defaults"] == {"event_type": "view", "item_id": "unspecified"}
    assert p.warnings[-1] == (
        "item_id: no column of item ids; input.defaults.item_id is 'unspecified' for every row (user-level "
        "models only) - map a column with input.columns.<source>=item_id if there is one"
    )
    assert p.verdict == "review needed"


def test_null_token_ids_are_reported_and_not_users():
    df = pd.DataFrame(
        {
            "user_id": ["NA", "NA", "null", "NA"] * 10,
            "item_id": [f"i{i % 5}" for i in range(40)],
            "ts": [str(1_700_000_000 + 60 * i) for i in range(40)],
        }
    )
    roles = infer_roles(df)
    u = roles[0]
    assert (u["role"], u["null_share"], u["null_tokens"]) == (None, 1.0, {"NA": 0.75, "null": 0.25})
    assert u["why"] == "100% null: nothing to infer from"
    p = propose(roles, df, {"path": "x.csv"})
    assert "user_id" not in p.input["columns"].values()
    assert p.input["table"] == "items"  # no users: the proposal does not invent them
    # 62 % 'NA' users (no session column to stand in): user_id kept, its null share reported
    df2 = session_log().drop(columns=["sessionId"])
    roles = infer_roles(df2)
    assert roles[0]["null_share"] == 0.625 and roles[0]["null_tokens"] == {"NA": 0.625}
    p = propose(roles, df2, {"path": "x.csv"})
    assert p.input["columns"]["userId"] == "user_id"
    assert p.warnings[0] == (
        "user_id column 'userId': 62% null (NA 62%); those rows have no user and are not counted as one"
    )
    # custom null_values: '?' counts, 'NA' then is a value
    roles = infer_roles(pd.DataFrame({"user_id": ["?", "NA", "u1", "u2"]}), null_values=["?"])
    assert roles[0]["null_tokens"] == {"?": 0.25} and roles[0]["null_share"] == 0.25


def test_a_mostly_null_user_column_keeps_its_users_and_keys_the_rest_by_session():
    """62 % 'NA' users beside a complete session column: known users stay themselves, the anonymous
    rows become the pseudo-user of their session (input.anonymous_key), flagged for review."""
    df = session_log()
    p = propose(infer_roles(df), df, {"path": "clicks.csv", "delimiter": ";"})
    assert p.input["columns"] == {"sessionId": "session_id", "userId": "user_id", "itemId": "item_id"}
    assert p.input["anonymous_key"] == "session_id"
    assert p.review[0] == (
        "user_id column 'userId': 62% null (NA 62%); those rows are kept as the pseudo-user "
        "'session_id:<sessionId>' (input.anonymous_key: session_id), remove anonymous_key to quarantine them instead"
    )
    assert InputConfig.model_validate(p.input, context={"check_paths": False}).anonymous_key == "session_id"


def test_anonymous_key_turns_null_users_into_their_session():
    import pyarrow as pa

    from recsys.data.convert import to_canonical

    raw = pa.table(
        {
            "s": ["1", "1", "2", None],
            "u": ["7", "NA", "NA", "NA"],
            "i": ["a", "b", "c", "d"],
            "t": ["1700000000"] * 4,
            "source_file": ["f"] * 4,
            "source_row": pa.array([0, 1, 2, 3], pa.int64()),
            "_error": pa.nulls(4, pa.string()),
            "_raw": pa.nulls(4, pa.string()),
        }
    )
    spec = {
        "table": "events",
        "columns": {"s": "session_id", "u": "user_id", "i": "item_id", "t": "timestamp"},
        "null_values": ["", "NA"],
        "anonymous_key": "session_id",
    }
    out = to_canonical(raw, spec)
    # a known user stays; NA rows with a session become its pseudo-user; without a session they stay null
    assert out["user_id"].to_pylist() == ["7", "session_id:1", "session_id:2", None]
    assert to_canonical(raw, {**spec, "anonymous_key": None})["user_id"].to_pylist() == [
        "7",
        None,
        None,
        None,
    ]


def test_adapter_yaml_comments_every_role_with_its_confidence():
    df = session_log()
    p = propose(infer_roles(df), df, {"path": "clicks.csv", "delimiter": ";"})
    text = adapter_yaml(p, "Proposed by a test")
    assert yaml.safe_load(text) == {"input": p.input}  # the comments do not change the section
    lines = text.splitlines()
    assert lines[0] == "# Proposed by a test"
    assert lines[1].startswith("# verdict: review needed")
    assert (
        "# could not fill: event_type (no column of event names: every row proposed as a view, "
        "never guessed as buy)" in lines
    )
    assert "  anonymous_key: session_id  # 'userId' is 62% null (NA 62%); 'sessionId' is complete" in lines
    assert "    itemId: item_id  # confidence 0.60: name matches item_id" in lines
    assert lines[lines.index("  timestamp:  # " + p.notes["timestamp"]) + 1] == "    date: eventdate"
    assert p.notes["timestamp"].startswith("date 'eventdate' (confidence 1.00: name matches timestamp;")
    assert "    event_type: view  # assumed: no column of event names; set buy for a purchases log" in lines
    mapped = [ln for ln in lines if ln.startswith("    ") and ": " in ln and "date:" not in ln]
    assert all("# " in ln for ln in mapped if "offset_ms" not in ln)


def test_verdict_review_needed_on_low_confidence_and_ok_when_sure():
    anon = pd.DataFrame({"col0": [f"{i % 6}" for i in range(60)], "col1": [f"{i % 11}" for i in range(60)]})
    p = propose(infer_roles(anon), anon, {"path": "x.txt"})
    assert [r for r in p.review if "confidence" in r] == [
        "col0 -> user_id: confidence 0.40 < 0.5 (unnamed identifier: position in the usual layout (user_id))",
        "col1 -> item_id: confidence 0.40 < 0.5 (unnamed identifier: position in the usual layout (item_id))",
    ]
    # no time column: file order per user is the clock, said on the review list
    assert p.input["ordinal_timestamps"] is True
    assert p.review[-1] == (
        "timestamp: no time column; input.ordinal_timestamps orders each user's events by file order (dates and "
        "durations meaningless) - map a column with input.columns.<source>=timestamp if there is one"
    )
    assert verdict(p, []) == ("review needed", p.review)
    sure = pd.DataFrame(
        {
            "user_id": [f"u{i % 6}" for i in range(60)],
            "item_id": [f"i{i % 11}" for i in range(60)],
            "event_type": ["view", "cart", "buy"] * 20,
            "timestamp": [str(1_700_000_000 + 60 * i) for i in range(60)],
        }
    )
    p = propose(infer_roles(sure), sure, {"path": "x.csv"})
    assert (p.verdict, p.review, p.unfilled) == ("ok", [], [])
    assert p.input["timestamp_unit"] == "s"
    warn = [
        {"ok": False, "severity": "warn", "label": "null_rate(events.user_id) <= 0.05 (warn)", "value": 0.5}
    ]
    assert verdict(p, warn) == (
        "review needed",
        ["contract warning: null_rate(events.user_id) <= 0.05 (warn) (got 0.5)"],
    )
    assert verdict(None, [{**warn[0], "severity": "error"}]) == ("ok", [])  # errors fail the job instead


def test_reader_options_written_into_the_proposal():
    cls = __import__("recsys.config.base", fromlist=["InputConfig"]).InputConfig
    spec = {"delimiter": ";", "header": "auto", "encoding": "utf-8", "fixed_width": None}
    assert reader_options(spec, {"path": "x"}, cls) == {"delimiter": ";"}
    assert reader_options(spec, {"path": "x", "delimiter_regex": r"\s*\|\s*"}, cls) == {}
    both = {"delimiter": ",", "fixed_width": [3, 4], "header": False}
    assert reader_options(both, {}, cls) == {"delimiter": ",", "header": False}


def _block() -> pa.Table:
    return pa.table(
        {
            "user_id": ["u1", "NA", " NA ", "u2", None, "null"],
            "price": [1.0, None, 2.0, None, 3.0, 4.0],
            "timestamp": pa.array([1, 2, None, 4, 5, 6], pa.timestamp("us", tz="UTC")),
            "_error": [None, "bad_type:price", None, "bad_type:price", None, "bad_timestamp"],
        }
    )


def test_null_tokens_and_parse_rate_from_the_full_pass():
    p = PassSpec(
        bins={},
        fences={},
        time_col=None,
        text_cols=["user_id"],
        dup_cols=[],
        funnel_col=None,
        refs={},
        null_tokens=("NA", "null"),
    )
    parts = [json.loads(partial_pass(_block(), p)["json"][0].as_py())]
    cols = {
        "user_id": {"kind": "text", "non_null": 5},
        "price": {"kind": "number", "non_null": 4},
        "timestamp": {"kind": "time", "non_null": 5},
    }
    errors = _null_and_parse(parts, cols, 6)
    assert errors == {"bad_type:price": 2, "bad_timestamp": 1}
    assert cols["user_id"]["null_tokens"] == {
        "NA": {"rows": 2, "share": 2 / 6},
        "null": {"rows": 1, "share": 1 / 6},
    }
    assert cols["user_id"]["null_share"] == pytest.approx(4 / 6)  # 1 null + 3 tokens
    assert cols["user_id"]["parse_rate"] == 1.0
    assert cols["price"]["parse_rate"] == pytest.approx(4 / 6) and cols["price"]["parse_failures"] == 2
    assert cols["timestamp"]["parse_rate"] == pytest.approx(5 / 6)


def test_parse_rate_and_null_token_rules_pass_and_fail():
    prof = {
        "events": {
            "rows": 6,
            "duplicate_rate": 0.0,
            "referential_integrity": {},
            "columns": {
                "user_id": {"null_rate": 1 / 6, "null_share": 4 / 6, "distinct": 2, "parse_rate": 1.0},
                "price": {"null_rate": 2 / 6, "null_share": 2 / 6, "distinct": 4, "parse_rate": 4 / 6},
                "query": {"null_rate": 1.0, "null_share": 1.0, "distinct": 0, "parse_rate": None},
            },
        }
    }
    rules = [
        QualityRule(metric="parse_rate", column="price", min=0.6),
        QualityRule(metric="parse_rate", column="price", min=0.98),
        QualityRule(metric="null_rate", column="user_id", max=0.5, severity="warn"),
        QualityRule(metric="parse_rate", column="query", min=0.5),
    ]
    res = check_contract(prof, [dict(r.model_dump(), label=r.label()) for r in rules])
    assert [(r["ok"], r["severity"]) for r in res] == [
        (True, "error"),
        (False, "error"),
        (False, "warn"),
        (False, "error"),
    ]
    assert res[1]["why"] == "value 0.666667 out of bounds"
    assert res[2]["value"] == pytest.approx(4 / 6)  # null tokens count, not only nulls
    assert res[2]["label"] == "null_rate(events.user_id) <= 0.5 (warn)"
    assert res[3]["why"] == "no values to check"
    with pytest.raises(ValueError, match="metric parse_rate needs column"):
        QualityRule(metric="parse_rate", min=0.9)


def test_default_contract_applies_to_profiled_columns_only():
    profiles = {
        "events": {"columns": {"user_id": {}, "timestamp": {}}},
        "items": {"columns": {"item_id": {}}},
    }
    assert [r.label() for r in default_rules(profiles, DEFAULT_CONTRACT)] == [
        "null_rate(events.user_id) <= 0.05 (warn)",
        "parse_rate(events.timestamp) >= 0.98 (warn)",
    ]


# --------------------------------------------------------------------------- sequence lines
def test_sequence_lines_proposal_reads_every_item(shared_data, tmp_path):
    """The first 200 lines of Beauty.txt ('user item1 item2 ...'), given by path alone: the proposal
    reads them with max_fields 2 + item_list, validates as InputConfig, and converts one event per item."""
    from recsys.config import InputConfig
    from recsys.data.adapters import _convert, _parse, open_source
    from recsys.data.inventory_job import infer_adapter

    lines = (shared_data / "amazon-beauty" / "Beauty.txt").read_text().splitlines(keepends=True)[:200]
    path = tmp_path / "Beauty.txt"
    path.write_text("".join(lines))
    proposal = infer_adapter(InputConfig(path=str(path)), 100_000)
    cfg = proposal.input
    assert {
        k: cfg[k] for k in ("delimiter", "max_fields", "header", "column_names", "item_list", "columns")
    } == {
        "delimiter": "whitespace",
        "max_fields": 2,
        "header": False,
        "column_names": ["user", "items"],
        "item_list": "items",
        "columns": {"user": "user_id"},
    }
    assert (cfg["table"], cfg["defaults"], cfg["timestamp_unit"]) == ("events", {"event_type": "view"}, "s")
    text = adapter_yaml(proposal, "inventory")
    assert "item_list: items  # confidence 0.90: 200 sampled lines" in text
    assert proposal.verdict == "review needed"  # no event names, no times: said, not guessed
    src = open_source(InputConfig.model_validate(cfg))
    raw = _parse(pa.table({"bytes": [path.read_bytes()], "path": [str(path)]}), src.fmt, src.spec, src.post)
    out = _convert(raw, src.spec, "mark", True)
    expected = [
        (line.split()[0], item, k, row)
        for row, line in enumerate(lines)
        for k, item in enumerate(line.split()[1:])
    ]
    got = list(
        zip(
            out["user_id"].to_pylist(),
            out["item_id"].to_pylist(),
            [t.timestamp() for t in out["timestamp"].to_pylist()],
            out["source_row"].to_pylist(),
        )
    )
    assert got == [(u, i, float(k), r) for u, i, k, r in expected]
    assert out["_error"].null_count == out.num_rows


def test_sequence_lines_not_proposed_for_a_plain_table():
    from recsys.data.roles import sequence_line_evidence

    assert sequence_line_evidence("1 10 5.0 881250949\n2 11 3.5 881250950\n3 12 4.0 881250951\n" * 5) is None
    assert sequence_line_evidence("1 2.5 3\n4 5\n6 7 8 9\n" * 5) is None  # decimals are not ids
    assert sequence_line_evidence("1 2 3\n4 5\n6 7 8 9\n" * 5) is not None
