"""Synthetic logs: shard generation is deterministic, position-biased, funnel-shaped and dirty as configured."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys.data.schema import EVENTS
from recsys.data.synth import catalog_arrays, examination, generate_shard, query_variants


def _params(**kw):
    p = {
        "seed": 0,
        "shards": 2,
        "events_per_shard": 20_000,
        "users": 300,
        "page_size": 10,
        "decay": 1.0,
        "cart_rate": 0.3,
        "buy_rate": 0.5,
        "dirty_share": 0.0,
        "start_us": 1_700_000_000_000_000,
        "span_us": 86400 * 10**6,
    }
    return p | kw


def _catalog():
    items = pa.table(
        {"item_id": [str(i) for i in range(200)], "title": [f"Game {i} Deluxe Edition" for i in range(200)]}
    )
    return catalog_arrays(items, 1.1, 0)


def test_shard_deterministic_schema_and_size():
    a = generate_shard({"id": np.array([0])}, _catalog(), _params())
    b = generate_shard({"id": np.array([0])}, _catalog(), _params())
    assert a.equals(b) and a.num_rows == 20_000
    assert all(a.schema.field(f.name).type == f.type for f in EVENTS if f.name in a.column_names)


def test_position_bias_and_funnel():
    t = generate_shard({"id": np.array([1])}, _catalog(), _params(events_per_shard=200_000))
    clicks = t.filter(pc.equal(t["event_type"], "click"))["position"].to_numpy()
    per_pos = np.bincount(clicks, minlength=10)
    assert per_pos[0] > 2 * per_pos[4] > 0  # examination 1/(p+1)
    n = {e: pc.sum(pc.equal(t["event_type"], e)).as_py() for e in ("click", "cart", "buy")}
    assert n["click"] > n["cart"] > n["buy"] > 0
    assert examination(3, 1.0) == [1.0, 0.5, 1 / 3]


def test_dirt_share():
    t = generate_shard({"id": np.array([0])}, _catalog(), _params(dirty_share=0.07))
    assert t["user_id"].null_count > 0
    assert pc.sum(pc.equal(t["event_type"], "clickk")).as_py() > 0
    assert pc.sum(pc.fill_null(pc.match_substring(t["query"], "@example.com"), False)).as_py() > 0
    assert pc.sum(pc.less(t["price"], 0)).as_py() > 0


def test_queries_from_titles():
    assert query_variants("Fire Emblem: The Sacred Stones")[0] == "fire emblem the"
