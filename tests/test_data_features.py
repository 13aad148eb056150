"""Features: exact LOO / time splits, no leakage past a split's cut-off, smoothing, e2e job on tiny."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from recsys.data import features as F
from recsys.data.schema import TS

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _events() -> pa.Table:
    """u1: a,b,c,d bought at day 0..3; u2: a,e at day 1,2 (too short for LOO); plus impressions."""
    rows = [
        ("u1", "a", "view", 0),
        ("u1", "b", "click", 1),
        ("u1", "c", "buy", 2),
        ("u1", "d", "buy", 3),
        ("u1", "z", "impression", 3),
        ("u2", "a", "click", 1),
        ("u2", "e", "buy", 2),
    ]
    return pa.table(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "timestamp": pa.array([T0 + dt.timedelta(days=r[3]) for r in rows], TS),
            "price": [1.0, 2.0, 30.0, 40.0, 5.0, 2.0, 8.0],
            "source_row": list(range(len(rows))),
        }
    )


def _params(protocol="loo", t1=None) -> F.FeatureParams:
    return F.FeatureParams(
        protocol=protocol,
        t1_us=t1 or 0,
        seq_types=None,
        min_len=3,
        ref_us=int((T0 + dt.timedelta(days=4)).timestamp() * 1e6),
        event_types=["buy", "click", "impression", "view"],
        last_n=2,
        half_life_days=14.0,
        price_bands=(0, 10, 25, 50, np.inf),
        max_pairs=5,
        item_category=None,
        titles={},
    )


def test_sequences_and_loo_exact():
    tl = F.timelines(_events())
    seq = F.sequences(tl, None).to_pylist()
    assert {r["user_id"]: r["items"] for r in seq} == {
        "u1": ["a", "b", "c", "d"],
        "u2": ["a", "e"],
    }  # no impression
    s = pa.Table.from_pylist(seq, schema=F.sequences(tl, None).schema)
    assert F.loo_split(s, "train", 3).to_pylist()[0]["items"] == ["a", "b"]
    valid, test = F.loo_split(s, "valid", 3).to_pylist(), F.loo_split(s, "test", 3).to_pylist()
    assert (valid[0]["history"], valid[0]["target"]) == (["a", "b"], "c")
    assert (test[0]["history"], test[0]["target"]) == (["a", "b", "c"], "d")
    assert len(valid) == 1  # u2 has 2 items < min_sequence


def test_no_leakage_loo():
    """Features of u1 use only events before its validation target (c, day 2)."""
    tl = F.timelines(_events())
    uf = {r["user_id"]: r for r in F.user_features(tl, _params()).to_pylist()}
    assert uf["u1"]["n_events"] == 2 and uf["u1"]["frequency"] == 0  # a, b only: the buys c, d are held out
    assert uf["u1"]["last_items"] == ["a", "b"] and uf["u1"]["monetary"] == 0
    assert uf["u2"]["n_events"] == 2  # short users: everything is training
    te = F.training_events(tl, _params())
    assert set(zip(te["user_id"].to_pylist(), te["item_id"].to_pylist())) == {
        ("u1", "a"),
        ("u1", "b"),
        ("u2", "a"),
        ("u2", "e"),
    }
    ic = {r["item_id"]: r for r in F.item_counts(te, ["buy", "click", "view"]).to_pylist()}
    assert "c" not in ic and "d" not in ic and ic["a"]["n_users"] == 2


def _partials_case() -> tuple[pa.Table, pa.Table, list[str]]:
    """4,000 events over 200 users and 40 items, and their item_partials from 3 user-disjoint blocks."""
    rng = np.random.default_rng(0)
    n = 4000
    price = rng.uniform(1, 100, n)
    t = pa.table(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, 200, n)],
            "item_id": [f"i{i}" for i in rng.integers(0, 40, n)],
            "event_type": rng.choice(["view", "click", "buy"], n),
            "price": pa.array(price, mask=rng.random(n) < 0.2),
        }
    )
    types = ["buy", "click", "view"]
    block = np.array([int(u[1:]) % 3 for u in t["user_id"].to_pylist()])
    return (
        t,
        pa.concat_tables([F.item_partials(t.filter(pa.array(block == k)), types) for k in range(3)]),
        types,
    )


def test_item_partials_combine_exactly_across_user_blocks():
    """Map-side combine: per-block partials of user-disjoint blocks, summed by item_totals, equal item_counts
    of the whole table and pyarrow's direct aggregates (counts exactly; price mean / population std to 1e-9)."""
    t, parts, types = _partials_case()
    ref = {
        r["item_id"]: r
        for r in t.group_by("item_id")
        .aggregate([("user_id", "count_distinct"), ([], "count_all"), ("price", "mean"), ("price", "stddev")])
        .to_pylist()
    }
    assert parts.num_rows > len(ref)  # items seen in several blocks
    whole = {r["item_id"]: r for r in F.item_counts(t, types).to_pylist()}
    for got in ({r["item_id"]: r for r in F.item_totals(parts, types).to_pylist()}, whole):
        assert got.keys() == ref.keys()
        for item, r in ref.items():
            g = got[item]
            assert (g["n_users"], g["popularity"]) == (r["user_id_count_distinct"], r["count_all"])
            assert sum(g[f"n_{e}"] for e in types) == r["count_all"]
            assert g["price_mean"] == pytest.approx(r["price_mean"], abs=1e-9)
            assert g["price_std"] == pytest.approx(r["price_stddev"], abs=1e-9)
    # one schema whatever the block: empty, or without prices (moments null)
    assert F.item_partials(pa.table({}), types).schema == F.item_partials(t, types).schema
    no_price = F.item_counts(t.drop_columns(["price"]), types)
    assert (
        no_price["price_mean"].null_count == no_price.num_rows
        and no_price.schema == F.item_totals(pa.table({}), types).schema
    )


def test_item_totals_do_not_depend_on_the_order_of_the_partials():
    """The exchange delivers partials in any order; the totals (float sums included) are bit-identical."""
    _, parts, types = _partials_case()
    want = F.item_totals(parts, types).sort_by("item_id").to_pylist()
    rng = np.random.default_rng(1)
    for _ in range(5):
        assert (
            F.item_totals(parts.take(rng.permutation(parts.num_rows)), types).sort_by("item_id").to_pylist()
            == want
        )


def test_task_exchange_combines_partials_like_the_ray_data_exchange(ray_session):
    """by_key_tasks keeps by_key's contract (each output block holds every row of its keys), so the
    partials it combines give exactly the item totals of the whole table, for 1 and 3 partitions."""
    import ray

    from recsys.data.shuffle import _bucket_split, by_key_tasks

    _, parts, types = _partials_case()
    want = sorted(F.item_totals(parts, types).to_pylist(), key=lambda r: r["item_id"])
    ds = ray.data.from_arrow([parts.slice(i, 50) for i in range(0, parts.num_rows, 50)])
    for n in (1, 3):
        out = by_key_tasks(ds, "item_id", F.item_totals, partitions=n, fn_kwargs={"event_types": types})
        blocks = [ray.get(r) for r in out.to_arrow_refs()]
        assert len(blocks) == n and sum(b.num_rows for b in blocks) == len(want)
        assert sorted((r for b in blocks for r in b.to_pylist()), key=lambda r: r["item_id"]) == want
    # data-sized partitions (a tiny target: one per bucket that has rows): still every key in exactly one
    out = by_key_tasks(ds, "item_id", F.item_totals, partition_mb=1e-6, fn_kwargs={"event_types": types})
    blocks = [ray.get(r) for r in out.to_arrow_refs()]
    assert (
        len(blocks) > 3
        and sorted((r for b in blocks for r in b.to_pylist()), key=lambda r: r["item_id"]) == want
    )
    # the split is a function of the key alone (the same bucket in every block and process)
    a, b = _bucket_split(parts.slice(0, 60), ["item_id"], 4), _bucket_split(parts.slice(60), ["item_id"], 4)
    buckets = [{k for part in (a[i], b[i]) for k in part["item_id"].to_pylist()} for i in range(4)]
    assert sum(len(x) for x in buckets) == len({k for x in buckets for k in x})
    assert [sum(p.num_rows for p in a[:4]), sum(p.num_rows for p in b[:4])] == [60, parts.num_rows - 60]
    assert list(a[4]) == [
        p.num_rows * parts.slice(0, 60).nbytes // 60 for p in a[:4]
    ]  # sizes: rows x mean row bytes


def test_coalesce_groups_consecutive_buckets_by_size():
    from recsys.data.shuffle import coalesce

    sizes = np.array([10, 10, 10, 10, 40, 0, 20, 0])
    assert coalesce(sizes, 25, 1) == [[0, 1], [2, 3], [4, 5], [6, 7]]  # empty buckets join the current one
    assert coalesce(sizes, 1000, 2) == [[0, 1, 2, 3], [4, 5], [6, 7]]  # 2 partitions minimum: target 50
    assert coalesce(sizes, 1, 1) == [
        [0],
        [1],
        [2],
        [3],
        [4, 5],
        [6, 7],
    ]  # tiny target: one per non-empty bucket
    assert coalesce(np.zeros(3), 10, 2) == [[0, 1, 2]]  # no bytes: one partition
    rng = np.random.default_rng(0)
    sizes = rng.integers(0, 100, 64)
    groups = coalesce(sizes, 200, 4)
    assert sum(groups, []) == list(range(64)) and all(sizes[g].sum() <= 200 for g in groups)


def test_no_leakage_time_split():
    t1 = int((T0 + dt.timedelta(days=2)).timestamp() * 1e6)
    tl = F.timelines(_events())
    te = F.training_events(tl, _params("time", t1))
    assert (np.asarray(te["timestamp"].cast(pa.int64())) < t1).all()
    uf = {r["user_id"]: r for r in F.user_features(tl, _params("time", t1)).to_pylist()}
    assert uf["u1"]["n_events"] == 2 and uf["u2"]["n_events"] == 1
    tt = F.time_targets(tl, t1, 2**62, None).to_pylist()
    assert {r["user_id"]: (r["history"], r["targets"]) for r in tt} == {
        "u1": (["a", "b"], ["c", "d"]),
        "u2": (["a"], ["e"]),
    }


def test_smoothed_rates():
    counts = pa.table(
        {"item_id": ["x"], "n_impression": [10], "n_click": [5], "n_view": [0], "n_cart": [1], "n_buy": [0]}
    )
    r = F.smooth_rates(counts, 10.0, {"ctr": 0.1, "cart_rate": 0.2, "conversion_rate": 0.05}).to_pylist()[0]
    assert r["ctr"] == pytest.approx((5 + 10 * 0.1) / (10 + 10))
    assert r["cart_rate"] == pytest.approx((1 + 2.0) / (5 + 10))


@pytest.mark.slow
def test_features_job_tiny(ray_session, tmp_path, tiny_bert_dir):
    """synth tiny -> clean -> features, by config (paths overridden into tmp)."""
    from recsys.cli.entry import parse_job, run_parsed
    from recsys.data.layout import FEATURES, read_pandas

    spec, cfg = parse_job("synth", "tiny", [f"output_dir={tmp_path}/synth", "events=3000", "users=60"])
    assert run_parsed(spec, cfg)["status"] == "succeeded"
    spec, cfg = parse_job(
        "clean",
        "configs/clean/synth-tiny.yaml",
        [
            f"input.path={tmp_path}/synth/events",
            f"output_dir={tmp_path}/clean",
            f"more_inputs=[{{path: {tmp_path}/synth/items, format: parquet, table: items}}]",
        ],
    )
    assert run_parsed(spec, cfg)["status"] == "succeeded"
    spec, cfg = parse_job(
        "features",
        "tiny",
        [
            f"data={tmp_path}/clean",
            f"output_dir={tmp_path}/features",
            f"embeddings.model.name_or_path={tiny_bert_dir}",
            "embeddings.max_items=16",
        ],
    )
    report = run_parsed(spec, cfg)
    assert report["status"] == "succeeded"
    out = tmp_path / "features"
    seq = read_pandas(out, FEATURES.sequences)
    test = read_pandas(out, FEATURES.loo_test)
    assert len(test) > 0 and all(
        len(h) + 1 == len(s)
        for h, s in zip(test.merge(seq, on="user_id")["history"], test.merge(seq, on="user_id")["items"])
    )
    uf = read_pandas(out, FEATURES.user_features)
    assert {"segment", "pca_0", "recency_days", "last_items"} <= set(uf.columns)
    assert (out / FEATURES.manifest).exists() and (out / FEATURES.selection).exists()
    pairs = read_pandas(out, FEATURES.pairs)
    assert set(pairs["label"]) == {0, 1}


@pytest.mark.slow
def test_features_job_pairs_only_set(ray_session, tmp_path, shared_data):
    """A matching set (abt-buy: pairs, no events) chains clean -> features by its shipped configs."""
    from recsys.cli.entry import parse_job, run_parsed
    from recsys.data.layout import FEATURES, read_pandas

    spec, cfg = parse_job(
        "clean", "configs/clean/abt-buy.yaml", [f"output_dir={tmp_path}/clean", "limit=300"]
    )
    assert run_parsed(spec, cfg)["status"] == "succeeded"
    spec, cfg = parse_job(
        "features",
        "configs/features/abt-buy.yaml",
        [f"data={tmp_path}/clean", f"output_dir={tmp_path}/features"],
    )
    report = run_parsed(spec, cfg)
    assert report["status"] == "succeeded", report.get("error")
    pairs = read_pandas(tmp_path / "features", FEATURES.pairs)
    clean_pairs = read_pandas(tmp_path / "clean", "pairs")
    assert len(pairs) == len(clean_pairs) == report["counts"]["pairs"] > 0
    assert sum(v for k, v in report["counts"].items() if k.startswith("pairs_")) == len(pairs)
    assert (tmp_path / "features" / FEATURES.manifest).exists()


def test_item_titles_skip_missing():
    """Items without a title (UCI rows without Description) fall back to their id in pairs, never NaN."""
    import pandas as pd

    items = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "title": ["Mug", np.nan, None, "  "]})
    assert F.item_titles(items) == {"a": "Mug"}
    assert F.item_titles(pd.DataFrame({"item_id": ["a"]})) == {}


def test_bucket_of_hashes_distinct_values_like_every_row():
    """The dictionary shortcut for one string key gives the buckets of hashing every row (nulls included), so
    blocks split in any process agree."""
    import pandas as pd

    from recsys.data.shuffle import _bucket_of

    t = pa.table(
        {"user_id": pa.chunked_array([["u1", None, "u2"], ["u2", "u3", None, "u1"]]), "x": list(range(7))}
    )
    want = pd.util.hash_pandas_object(t.select(["user_id"]).to_pandas(), index=False).to_numpy() % 5
    assert _bucket_of(t, ["user_id"], 5).tolist() == want.tolist()
    assert (
        _bucket_of(t, ["user_id", "x"], 5).tolist()
        == (
            pd.util.hash_pandas_object(t.select(["user_id", "x"]).to_pandas(), index=False).to_numpy() % 5
        ).tolist()
    )
