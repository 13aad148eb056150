"""Every preset on a slice of its real file; generic readers, mapping, timestamps, globs."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from recsys.config import InputConfig
from recsys.data.adapters import _convert, _parse, open_source, read_input, tables_of
from recsys.data.schema import TABLES


def _slice(src, lines: int) -> pa.Table:
    """Parse + convert the first ``lines`` lines of each file of a source, without Ray (like a task)."""
    tables = []
    for f in src.files:
        data = Path(f).read_bytes() if not f.endswith(".xlsx") else Path(f).read_bytes()
        if not f.endswith(".xlsx"):
            data = b"\n".join(data.split(b"\n")[:lines]) + b"\n"
        raw = _parse(pa.table({"bytes": [data], "path": [f]}), src.fmt, src.spec, src.post)
        tables.append(_convert(raw, src.spec, "raise", False))
    return pa.concat_tables(tables)


CASES = [
    (
        "taobao",
        "taobao-user-behavior",
        "events",
        {"user_id": "1", "item_id": "2268318", "event_type": "view"},
    ),
    ("amazon-games-6k", "amazon-games-6k", "events", {"user_id": "0", "item_id": "0", "event_type": "rate"}),
    (
        "amazon-games-6k",
        "amazon-games-6k",
        "items",
        {"item_id": "0", "title": "Fire Emblem: The Sacred Stones"},
    ),
    ("amazon-video-games", "amazon-video-games", "events", {"user_id": "1", "item_id": "6393"}),
    ("amazon-beauty", "amazon-beauty", "events", {"user_id": "1", "item_id": "1"}),
]


@pytest.mark.parametrize("preset,folder,table,first", CASES)
def test_preset_slices(shared_data, preset, folder, table, first):
    src = open_source(InputConfig(path=str(shared_data / folder), preset=preset), table)
    out = _slice(src, 200)
    assert out.num_rows > 0
    for name in out.column_names:
        if name in TABLES[table].names:
            assert out.schema.field(name).type == TABLES[table].field(name).type, name
    assert {k: out[k][0].as_py() for k in first} == first


def test_sequence_presets_keep_order(shared_data):
    src = open_source(InputConfig(path=str(shared_data / "amazon-beauty"), preset="beauty"))
    out = _slice(src, 1).to_pylist()  # "1 1 2 3 4 5"
    assert [r["item_id"] for r in out] == ["1", "2", "3", "4", "5"]
    assert [r["timestamp"].timestamp() for r in out] == [0, 1, 2, 3, 4]
    g = _slice(
        open_source(InputConfig(path=str(shared_data / "amazon-games-6k"), preset="games-6k")), 2
    ).to_pylist()
    assert [r["item_id"] for r in g] == [str(i) for i in range(15)]  # 14 history items + the test target


def test_games_candidates_and_ditto_pairs(shared_data):
    cand = _slice(
        open_source(InputConfig(path=str(shared_data / "amazon-games-6k"), preset="games-6k"), "candidates"),
        3,
    )
    assert set(cand["source"].to_pylist()) == {"pop", "bpr", "sasrec"}
    assert all(len(x) == 100 for x in cand["items"].to_pylist())
    pairs = _slice(
        open_source(InputConfig(path=str(shared_data / "product-matching/abt-buy"), preset="ditto")), 5
    )
    row = pairs.to_pylist()[0]
    assert row["left"].startswith("name: ") and "COL" not in row["left"] and row["label"] in (0, 1)
    assert set(pairs["split"].to_pylist()) == {"train", "valid", "test"}


@pytest.mark.slow
def test_online_retail_excel(ray_session, shared_data):
    cfg = InputConfig(path=str(shared_data / "online-retail"), preset="uci")
    assert tables_of(cfg) == ["events", "items", "users"]
    ev = read_input(cfg, on_error="mark", keep_meta=True).limit(2000).to_pandas()
    assert ev["event_type"].eq("buy").all() and ev["_error"].isna().all()
    cancelled = ev[ev["order_id"].str.startswith("C")]
    assert (cancelled["quantity"] < 0).all()
    assert (
        str(ev["timestamp"].dt.tz) == "UTC" and ev["user_id"].dropna().str.fullmatch(r"\d+").all()
    )  # no "17850.0"


def test_generic_csv_mapping_glob_and_errors(ray_session, tmp_path):
    for i in range(2):
        (tmp_path / f"log{i}.csv").write_text(
            f"uid,sku,act,t\na{i},x,PV,1700000000000\nb{i},y,addtocart,1700000060000\n"
        )
    cfg = InputConfig(
        path=str(tmp_path / "log*.csv"),
        columns={"uid": "user_id", "sku": "item_id", "act": "event_type", "t": "timestamp"},
        event_map={"pv": "view", "addtocart": "cart"},
    )
    rows = sorted(read_input(cfg).take_all(), key=lambda r: r["user_id"])
    assert [(r["user_id"], r["event_type"]) for r in rows] == [
        ("a0", "view"),
        ("a1", "view"),
        ("b0", "cart"),
        ("b1", "cart"),
    ]
    assert rows[0]["timestamp"].isoformat() == "2023-11-14T22:13:20+00:00"  # ms epoch inferred
    (tmp_path / "bad.csv").write_text("uid,sku,act,t\na,x,pv,yesterday-ish\n")
    bad = InputConfig(path=str(tmp_path / "bad.csv"), columns=cfg.columns)
    with pytest.raises(Exception, match="bad_timestamp"):
        read_input(bad).take_all()
    with pytest.raises(Exception, match="map them with input.columns"):
        read_input(InputConfig(path=str(tmp_path / "bad.csv"))).take_all()


def test_unknown_preset_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'taobao'"):
        open_source(InputConfig(path=str(tmp_path), preset="taobau"))


def test_parquet_reads_split_for_the_cluster(tmp_path, monkeypatch):
    """Parquet read tasks: ~2 per CPU of the input (Ray bin-packs 128 MiB otherwise), within [16, 128] MiB;
    the size reaches Ray only while the read is planned, and an explicit RAY_DATA_PARQUET_BIN_PACKING_BYTES wins."""
    import os

    import pyarrow.parquet as pq

    from recsys.data import adapters

    for i in range(4):
        pq.write_table(
            pa.table({"user_id": [f"u{i}"] * 10, "item_id": ["a"] * 10}), tmp_path / f"p{i}.parquet"
        )
    files = sorted(str(p) for p in tmp_path.glob("*.parquet"))
    assert adapters._parquet_read_unit(files, None) == 16 * 2**20  # small input: the floor
    seen = []
    monkeypatch.setattr(
        "ray.data.read_parquet", lambda *a, **k: seen.append(os.environ.get(adapters._read_unit_bytes.VAR))
    )
    monkeypatch.delenv(adapters._read_unit_bytes.VAR, raising=False)
    src = open_source(
        InputConfig(
            path=str(tmp_path), format="parquet", columns={"user_id": "user_id", "item_id": "item_id"}
        )
    )
    src.read_raw()
    assert seen == [str(16 * 2**20)] and adapters._read_unit_bytes.VAR not in os.environ
    monkeypatch.setenv(adapters._read_unit_bytes.VAR, "1234")
    src.read_raw()
    assert seen[-1] == "1234" and os.environ[adapters._read_unit_bytes.VAR] == "1234"


def test_configure_exchange_sets_ray_data_shuffle():
    from ray.data import DataContext

    from recsys.data.config import ExchangeConfig
    from recsys.data.shuffle import configure_exchange

    ctx = DataContext.get_current()
    old = (ctx.shuffle_input_batch_bytes, ctx.shuffle_compression, ctx.op_resource_reservation_enabled)
    try:
        cfg = ExchangeConfig()
        configure_exchange(cfg.input_batch_mb, cfg.compression, cfg.reserve_per_operator)
        assert (ctx.shuffle_input_batch_bytes, ctx.shuffle_compression) == (64 * 2**20, "lz4")
        assert ctx.op_resource_reservation_enabled is True
        configure_exchange(None, "none")  # None leaves a setting alone
        assert (ctx.shuffle_input_batch_bytes, ctx.shuffle_compression) == (64 * 2**20, "none")
        assert ctx.op_resource_reservation_enabled is True
        # the features job shares the cluster between its operators by default
        from recsys.data.config import FeaturesConfig

        assert (
            FeaturesConfig.model_fields["exchange"]
            .get_default(call_default_factory=True)
            .reserve_per_operator
            is False
        )
        configure_exchange(None, None, False)
        assert ctx.op_resource_reservation_enabled is False
    finally:
        ctx.shuffle_input_batch_bytes, ctx.shuffle_compression, ctx.op_resource_reservation_enabled = old
    with pytest.raises(ValueError, match="compression"):
        ExchangeConfig(compression="gzip")
