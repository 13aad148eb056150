"""Replay benchmark of the online user-state store: live state vs the static snapshot, on real logs.

    nice -n 5 .venv/bin/python -m benchmarks.replay --out runs/bench/replay.json

For each log (Taobao UserBehavior, UCI Online Retail; ../shared/data) the events are split in time: the
first ``--train-frac`` builds the snapshot exactly as the index job does (``recsys.retrieval.features``:
per-user recent / purchased items, country, category affinity, popularity lists) and an item embedding
(truncated SVD of the item-user co-occurrence of that period: the logs carry no text for an encoder).
The held-out slice is then replayed in time order through the serving code: each event goes through the
ingress's write path (``OnlineState.record``: the same call /feedback makes, embedded Valkey server,
appendfsync always); before it is written, the event's item is scored as the next item of its user by
``RecommenderCore.recommend`` (the /recommend core) twice: with the snapshot only (``static``) and with the
live state read from the store (``live``). Scored targets are *novel* items (not in the user's earlier
history: /recommend excludes seen items) that the snapshot catalog holds. Metrics: NDCG@10 and HR@10 per
target, paired tests (``recsys.evaluation.stats.compare``: bootstrap CI of the difference, t-test,
permutation test).

Then, against the same server: store throughput (events/s through ``OnlineState.record`` at
concurrency 32, one-event requests and 20-event requests) and freshness (an acknowledged /feedback
event -> a /recommend response that reflects it: p50 / p99 of the read + recommend, and the store
read that /recommend adds). In-process (no HTTP / Serve hops): those add the same time to both arms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
K = 10


@dataclass
class Log:
    name: str
    events: (
        pd.DataFrame
    )  # user_id, item_id, event_type (click/cart/buy), timestamp, [category, country, price]
    items: pd.DataFrame  # item_id, title, [category, price]


def taobao() -> Log:
    df = pd.read_csv(
        DATA / "taobao-user-behavior" / "UserBehavior.csv",
        names=["user_id", "item_id", "category", "behavior", "ts"],
        dtype={"user_id": str, "item_id": str, "category": str},
    )
    kind = {"pv": "click", "fav": "click", "cart": "cart", "buy": "buy"}
    ev = pd.DataFrame(
        {
            "user_id": df["user_id"],
            "item_id": df["item_id"],
            "event_type": df["behavior"].map(kind),
            "timestamp": pd.to_datetime(df["ts"], unit="s", utc=True),
            "category": df["category"],
        }
    ).dropna(subset=["event_type"])
    items = ev.drop_duplicates("item_id")[["item_id", "category"]].assign(
        title=lambda d: "item " + d["item_id"]
    )
    return Log("taobao", ev, items)


def online_retail() -> Log:
    df = pd.read_excel(DATA / "online-retail" / "online_retail_sample.xlsx", dtype={"StockCode": str})
    df = df.dropna(subset=["CustomerID"])
    df = df[(df["Quantity"] > 0) & ~df["InvoiceNo"].astype(str).str.startswith("C")]
    ev = pd.DataFrame(
        {
            "user_id": df["CustomerID"].astype(int).astype(str),
            "item_id": df["StockCode"].astype(str),
            "event_type": "buy",
            "timestamp": pd.to_datetime(df["InvoiceDate"]).dt.tz_localize("UTC"),
            "country": df["Country"].astype(str),
            "price": df["UnitPrice"].astype(float),
        }
    )
    items = (
        df.assign(item_id=df["StockCode"].astype(str))
        .drop_duplicates("item_id")
        .rename(columns={"Description": "title", "UnitPrice": "price"})[["item_id", "title", "price"]]
    )
    return Log("online_retail", ev, items)


def split(log: Log, train_frac: float, max_users: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    ev = log.events.sort_values("timestamp", kind="stable").reset_index(drop=True)
    cut = ev["timestamp"].quantile(train_frac)
    train, test = ev[ev["timestamp"] < cut], ev[ev["timestamp"] >= cut]
    users = test["user_id"].drop_duplicates()
    if len(users) > max_users:
        users = users.sample(max_users, random_state=seed)
    return train, test[test["user_id"].isin(set(users))]


def build_artifacts(log: Log, train: pd.DataFrame, dim: int, seed: int) -> Any:
    """The snapshot: catalog = items seen in training, SVD item vectors, the index job's user lookup."""
    from scipy.sparse import csr_matrix
    from sklearn.decomposition import TruncatedSVD

    from recsys.retrieval.ann import build_index
    from recsys.retrieval.artifacts import IndexArtifacts
    from recsys.retrieval.features import item_popularity, popular_lists, user_lookup

    items = log.items[log.items["item_id"].isin(set(train["item_id"]))].reset_index(drop=True)
    row_of = {iid: i for i, iid in enumerate(items["item_id"])}
    uids = {u: j for j, u in enumerate(train["user_id"].unique())}
    m = csr_matrix(
        (
            np.ones(len(train)),
            (train["item_id"].map(row_of).to_numpy(), train["user_id"].map(uids).to_numpy()),
        ),
        shape=(len(items), len(uids)),
    )
    m.data = np.log1p(m.data)  # repeated interactions count, sub-linearly
    behaviour = TruncatedSVD(n_components=min(dim, len(uids) - 1), random_state=seed).fit_transform(m)
    emb = np.hstack([_unit(behaviour), _unit(content_vectors(items, dim, seed))])
    emb = _unit(emb).astype(np.float32)
    weights = {"click": 1.0, "cart": 3.0, "buy": 5.0}
    pop = item_popularity(items, train, weights)
    items = items.assign(popularity=pop)
    popular = popular_lists(items, train, pop, weights, top_n=200)
    users = user_lookup(items, train.assign(order=np.arange(len(train))), None, 50, ["buy"])
    lookup = {}
    for rec in users.to_dict("records"):
        rec["purchased"] = set(rec["purchased"])
        rec["category_affinity"] = json.loads(rec["category_affinity"] or "{}")
        lookup[rec["user_id"]] = rec
    return IndexArtifacts(
        path=Path("."),
        manifest={"version": "replay"},
        items=items,
        embeddings=emb,
        ann=build_index(emb, "exact"),
        bm25=None,
        autocomplete=None,
        users=lookup,
        popular={
            (t, s): list(i) for t, s, i in zip(popular["segment_type"], popular["segment"], popular["items"])
        },
        row_of=row_of,
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def content_vectors(items: pd.DataFrame, dim: int, seed: int) -> np.ndarray:
    """What the index's text encoder gives a real catalog: Taobao has only a category id per item (a
    random vector per category), Online Retail a title (TF-IDF + SVD)."""
    if items["title"].str.startswith("item ").all() and "category" in items:
        rng = np.random.default_rng(seed)
        cats = items["category"].astype(str)
        table = {c: rng.normal(size=dim) for c in cats.unique()}
        return np.stack([table[c] for c in cats])
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(min_df=1).fit_transform(items["title"].fillna("").astype(str))
    return TruncatedSVD(n_components=min(dim, tfidf.shape[1] - 1), random_state=seed).fit_transform(tfidf)


def ndcg_hr(rows: list[int], target: int) -> tuple[float, float]:
    if target in rows[:K]:
        return 1.0 / math.log2(rows.index(target) + 2), 1.0
    return 0.0, 0.0


def feedback_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One replayed event as /feedback's event rows (``recsys.serving.feedback.to_events``)."""
    from recsys.serving.feedback import to_events

    ev = {"item_id": r["item_id"], "event_type": r["event_type"], "timestamp": r["timestamp"].to_pydatetime()}
    if isinstance(r.get("price"), float) and not math.isnan(r["price"]):
        ev["price"] = r["price"]
    body = {"user_id": r["user_id"], "events": [ev], "session_id": None, "query": None, "request_id": None}
    body["country"] = r.get("country") if isinstance(r.get("country"), str) else None
    return to_events(body, "A")


async def replay(log: Log, args: argparse.Namespace, url: str) -> dict[str, Any]:
    from recsys.evaluation.stats import compare
    from recsys.online.batch import item_attributes
    from recsys.online.config import OnlineStoreArgs
    from recsys.online.service import OnlineState
    from recsys.search.settings import PersonalizeWeights
    from recsys.search.stages import PersonalizerCore
    from recsys.serving.core import RecommenderCore

    t0 = time.perf_counter()
    train, test = split(log, args.train_frac, args.max_users, args.seed)
    a = build_artifacts(log, train, args.dim, args.seed)
    w = PersonalizeWeights(1.0, 0.2, 0.1, 0.15, 0.1, 0.05)
    rec = RecommenderCore(
        a, PersonalizerCore(a, w), None, candidates=200, diversity=0.0, max_per_category=None,
        history_items=args.history_items,
    )  # fmt: skip
    settings = OnlineStoreArgs(key_prefix=f"replay-{log.name}-{int(time.time())}", timeout_ms=2000).settings()

    async def url_source() -> str:
        return url

    state = OnlineState(settings, url_source, item_attributes(a.items))
    seen: dict[str, set[str]] = {u: set(v["recent_items"]) | v["purchased"] for u, v in a.users.items()}
    static, live, skipped = (
        {"ndcg": [], "hr": []},
        {"ndcg": [], "hr": []},
        {"unknown_item": 0, "not_novel": 0},
    )
    rows = test.to_dict("records")
    step = 1
    scored = 0
    for i, r in enumerate(rows):
        user, item = r["user_id"], r["item_id"]
        user_seen = seen.setdefault(user, set())
        if i % step == 0 and scored < args.max_targets:
            if item not in a.row_of:
                skipped["unknown_item"] += 1
            elif item in user_seen:
                skipped["not_novel"] += 1
            else:
                target = a.row_of[item]
                s = rec.recommend(user, [], K, False, None)
                ctx, _ = await state.context(user, None)
                li = rec.recommend(user, [], K, False, None, ctx)
                for out, acc in ((s, static), (li, live)):
                    n, h = ndcg_hr(out["rows"], target)
                    acc["ndcg"].append(n)
                    acc["hr"].append(h)
                scored += 1
        user_seen.add(item)
        _, degraded = await state.record(feedback_rows(r))
        assert not degraded, "the store stopped answering during the replay"
    await state.aclose()
    out: dict[str, Any] = {
        "train_events": len(train),
        "test_events_replayed": len(rows),
        "catalog_items": len(a.items),
        "targets": scored,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for metric in ("ndcg", "hr"):
        c = compare(np.array(live[metric]), np.array(static[metric]), n_resamples=2000, seed=args.seed)
        rel = c["diff"] / c["mean_b"] if c["mean_b"] > 0 else float("inf")
        out[f"{metric}@{K}"] = {**{k: round(v, 5) for k, v in c.items()}, "relative_gain": round(rel, 4)}
    return out


async def throughput(url: str, seconds: float, per_request: int, concurrency: int = 32) -> dict[str, float]:
    """Events/s through OnlineState.record (the /feedback write path), ``concurrency`` requests in flight."""
    from recsys.online.config import OnlineStoreArgs
    from recsys.online.service import OnlineState

    s = OnlineStoreArgs(
        key_prefix=f"tput-{per_request}-{int(time.time())}", timeout_ms=5000, connect_timeout_ms=5000
    ).settings()
    import logging

    logging.basicConfig(level=logging.WARNING)

    async def url_source() -> str:
        return url

    state = OnlineState(s, url_source, {})
    done, failed, lat = 0, 0, []
    stop = time.perf_counter() + seconds
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()

    async def worker(w: int) -> None:
        nonlocal done, failed
        n = 0
        while time.perf_counter() < stop:
            rows = [
                {"user_id": f"u{w}-{n % 50}", "item_id": f"i{(n * 7 + j) % 1000}", "event_type": "click",
                 "timestamp": now, "session_id": None, "query": None, "country": None, "price": None}
                for j in range(per_request)
            ]  # fmt: skip
            t = time.perf_counter()
            written, degraded = await state.record(rows)
            lat.append(time.perf_counter() - t)
            failed += degraded
            done += written
            n += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await state.aclose()
    return {
        "events_per_s": round(done / elapsed, 1),
        "requests_per_s": round(len(lat) / elapsed, 1),
        "degraded_requests": failed,
        "p50_ms": round(1000 * float(np.percentile(lat, 50)), 2),
        "p99_ms": round(1000 * float(np.percentile(lat, 99)), 2),
    }


async def freshness(log: Log, args: argparse.Namespace, url: str, n: int = 300) -> dict[str, float]:
    """Acknowledged feedback -> a /recommend answer that reflects it (read + recommend), and the store read
    alone (what /recommend pays for live state), on the Taobao snapshot."""
    from recsys.online.batch import item_attributes
    from recsys.online.config import OnlineStoreArgs
    from recsys.online.service import OnlineState
    from recsys.search.settings import PersonalizeWeights
    from recsys.search.stages import PersonalizerCore
    from recsys.serving.core import RecommenderCore

    train, _ = split(log, args.train_frac, args.max_users, args.seed)
    a = build_artifacts(log, train, args.dim, args.seed)
    rec = RecommenderCore(
        a, PersonalizerCore(a, PersonalizeWeights(1.0, 0.2, 0.1, 0.15, 0.1, 0.05)), None,
        candidates=200, diversity=0.0, max_per_category=None, history_items=50,
    )  # fmt: skip
    s = OnlineStoreArgs(key_prefix=f"fresh-{int(time.time())}", timeout_ms=2000).settings()

    async def url_source() -> str:
        return url

    state = OnlineState(s, url_source, item_attributes(a.items))
    rng = np.random.default_rng(args.seed)
    ids = a.items["item_id"].tolist()
    visible, reads, static_rec = [], [], []
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    for k in range(n):
        user, item = f"fresh-{k % 60}", ids[int(rng.integers(len(ids)))]
        row = {"user_id": user, "item_id": item, "event_type": "click", "timestamp": now,
               "session_id": None, "query": None, "country": None, "price": None}  # fmt: skip
        await state.record([row])  # acknowledged here
        t = time.perf_counter()
        ctx, _ = await state.context(user, None)
        t_read = time.perf_counter()
        out = rec.recommend(user, [], K, False, None, ctx)
        t_done = time.perf_counter()
        assert (
            ctx is not None and ctx.recent[-1] == item and a.row_of[item] not in out["rows"]
        )  # reflected: seen
        visible.append(t_done - t)
        reads.append(t_read - t)
        t = time.perf_counter()
        rec.recommend(user, [], K, False, None)
        static_rec.append(time.perf_counter() - t)
    await state.aclose()

    def ms(x: list[float], q: float) -> float:
        return round(1000 * float(np.percentile(x, q)), 3)

    return {
        "feedback_to_visible_p50_ms": ms(visible, 50),
        "feedback_to_visible_p99_ms": ms(visible, 99),
        "store_read_p50_ms": ms(reads, 50),
        "store_read_p99_ms": ms(reads, 99),
        "recommend_static_p50_ms": ms(static_rec, 50),
        "n": n,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--logs", default="taobao,online_retail")
    p.add_argument("--train-frac", type=float, default=0.8)
    p.add_argument("--max-users", type=int, default=400, help="held-out users replayed per log")
    p.add_argument("--max-targets", type=int, default=2000, help="next-item targets scored per log")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--history-items", type=int, default=10, help="recommend.history_items of both arms")
    p.add_argument("--throughput-s", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sections", default="replay,throughput,freshness")
    p.add_argument("--per-request", default="1,20,100", help="events per /feedback request (throughput)")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    from recsys.online.server import EmbeddedServer

    results: dict[str, Any] = {"args": vars(args)}
    loaders = {"taobao": taobao, "online_retail": online_retail}
    with tempfile.TemporaryDirectory(prefix="replay-valkey-") as d:
        srv = EmbeddedServer(d, "always")
        url = srv.start()
        try:
            sections = args.sections.split(",")
            wanted = [n for n in args.logs.split(",") if n] if {"replay", "freshness"} & set(sections) else []
            logs = {name: loaders[name]() for name in wanted}
            for name, log in logs.items() if "replay" in sections else []:
                results[name] = asyncio.run(replay(log, args, url))
                print(name, json.dumps(results[name], indent=1), flush=True)
            for per in [int(x) for x in args.per_request.split(",")] if "throughput" in sections else []:
                results[f"throughput_{per}_per_request"] = asyncio.run(
                    throughput(url, args.throughput_s, per)
                )
                print(f"throughput {per}/request", results[f"throughput_{per}_per_request"], flush=True)
            if "freshness" in sections and logs:
                results["freshness"] = asyncio.run(freshness(next(iter(logs.values())), args, url))
                print("freshness", results["freshness"], flush=True)
        finally:
            srv.stop()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
