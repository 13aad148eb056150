"""Session-aware ranking with the live store (a real embedded Valkey, no Ray): /feedback events
reach the recommender and the personalizer of the next request; explanations add up to the score."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pandas as pd
import pytest

from recsys.online.batch import item_attributes
from recsys.online.config import OnlineStoreArgs
from recsys.online.server import EmbeddedServer
from recsys.online.service import OnlineState
from recsys.retrieval.ann import build_index
from recsys.retrieval.artifacts import IndexArtifacts
from recsys.search.settings import PersonalizeWeights
from recsys.search.stages import PersonalizerCore
from recsys.serving.core import RecommenderCore
from recsys.serving.feedback import to_events

N, D, CATS = 60, 16, 6


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> IndexArtifacts:
    """60 items in 6 tight clusters (one per category); one known user; popularity lists."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(CATS, D))
    cat = np.arange(N) % CATS
    emb = centers[cat] + 0.3 * rng.normal(size=(N, D))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(N)],
            "title": [f"cat{c} gadget {j}" for j, c in enumerate(cat)],
            "category": [f"cat{c}" for c in cat],
            "brand": [f"brand{j % 4}" for j in range(N)],
            "price": rng.uniform(5, 500, N).round(2),
            "popularity": rng.integers(1, 100, N),
        }
    )
    ids = items["item_id"].tolist()
    users = {
        "known": {"user_id": "known", "recent_items": ["i0"], "purchased": set(), "country": "FR",
                  "category_affinity": {"cat0": 1.0}, "mean_price": 50.0},
    }  # fmt: skip
    popular = {("global", "*"): ids[::-1], ("country", "DE"): ids[10:30]}
    return IndexArtifacts(
        path=tmp_path_factory.mktemp("idx"),
        manifest={"version": "v1"},
        items=items,
        embeddings=emb,
        ann=build_index(emb, "exact"),
        bm25=None,
        autocomplete=None,
        users=users,
        popular=popular,
        row_of={iid: i for i, iid in enumerate(ids)},
    )


@pytest.fixture(scope="module")
def online(tmp_path_factory, artifacts):
    srv = EmbeddedServer(tmp_path_factory.mktemp("valkey"))
    srv.start()
    settings = OnlineStoreArgs(timeout_ms=5000, purchased="exclude").settings()

    async def url() -> str:
        return srv.url

    yield lambda: OnlineState(settings, url, item_attributes(artifacts.items))
    srv.stop()


WEIGHTS = PersonalizeWeights(
    relevance=1.0,
    category_affinity=0.2,
    price_band=0.1,
    recent_items=0.15,
    country_popularity=0.1,
    popularity=0.05,
)


def recommender(a: IndexArtifacts) -> RecommenderCore:
    return RecommenderCore(
        a,
        PersonalizerCore(a, WEIGHTS),
        None,
        candidates=50,
        diversity=0.0,
        max_per_category=None,
        history_items=50,
    )


def feedback(online, user_id, events, session_id=None, country=None):
    body = {
        "user_id": user_id,
        "session_id": session_id,
        "country": country,
        "query": None,
        "request_id": None,
    }
    rows = to_events(dict(body, events=events), "A")

    async def go():
        state = online()
        try:
            written = await state.record(rows)
            live = await state.context(user_id if not user_id.startswith("anon") else None, session_id)
            return written, live
        finally:
            await state.aclose()

    return asyncio.run(go())


def test_feedback_then_recommend_shows_the_new_items_neighbours(online, artifacts):
    rec = recommender(artifacts)
    before = rec.recommend("shopper-1", [], 5, True, None)
    assert before["cold_start"] and before["strategy"] == "popular"
    (written, degraded), (live, _) = feedback(online, "shopper-1", [{"item_id": "i7", "event_type": "click"}])
    assert (written, degraded) == (1, False) and live.recent == ("i7",)
    after = rec.recommend("shopper-1", [], 5, True, None, live)
    sims = artifacts.embeddings @ artifacts.embeddings[7]
    neighbours = [int(r) for r in np.argsort(-sims) if r != 7][:5]
    assert not after["cold_start"] and after["strategy"] == "embedding"
    assert after["rows"] == neighbours  # the clicked item's nearest neighbours, the item itself excluded
    assert all(artifacts.items["category"].iat[r] == "cat1" for r in after["rows"])


def test_a_cold_user_is_served_from_the_session_then_by_location(online, artifacts):
    rec = recommender(artifacts)
    (_, _), (live, _) = feedback(
        online, "anon-x", [{"item_id": "i14", "event_type": "cart"}], session_id="sess-9"
    )
    out = rec.recommend(None, [], 4, True, None, live)
    assert not out["cold_start"] and all(artifacts.items["category"].iat[r] == "cat2" for r in out["rows"])
    # only an impression (not an interaction) but a country: popularity in that country
    (_, _), (live, _) = feedback(
        online, "anon-y", [{"item_id": "i3", "event_type": "impression"}], "sess-8", "DE"
    )
    assert live.recent == () and live.country == "DE"
    out = rec.recommend(None, [], 4, True, None, live, explain=True)
    assert out["cold_start"] and out["strategy"] == "popular_country"
    assert out["rows"] == [artifacts.row_of[i] for i in artifacts.popular[("country", "DE")][:4]]
    assert out["reasons"][0]["text"] == "popular in DE"


def test_search_personalization_uses_the_live_profile_and_purchases(online, artifacts):
    p = PersonalizerCore(artifacts, WEIGHTS)
    cands = [{"item_id": f"i{j}", "relevance": 0.5} for j in range(N)]  # equally relevant
    events = [{"item_id": f"i{j}", "event_type": "click"} for j in (4, 10, 16)]  # three cat4 items
    events.append({"item_id": "i22", "event_type": "buy"})
    (_, _), (live, _) = feedback(online, "shopper-2", events)
    ranked, cold = p.personalize(cands, "shopper-2", None, live, explain=True)
    assert not cold and "i22" not in {c["item_id"] for c in ranked}  # bought: excluded by the policy
    assert all(artifacts.items["category"].iat[c["row"]] == "cat4" for c in ranked[:5])
    boosted = dataclasses.replace(live, policy=dataclasses.replace(live.policy, purchased="boost"))
    ranked_b, _ = p.personalize(cands, "shopper-2", None, boosted, explain=True)
    bought = next(c for c in ranked_b if c["item_id"] == "i22")
    assert bought["reasons"]["components"]["purchased"] == pytest.approx(0.2)


def test_explanation_components_sum_to_the_score(online, artifacts):
    p = PersonalizerCore(artifacts, WEIGHTS)
    rng = np.random.default_rng(1)
    cands = [{"item_id": f"i{j}", "relevance": float(rng.uniform()), "matched": ["gadget"]} for j in range(N)]
    (_, _), (live, _) = feedback(online, "known", [{"item_id": "i5", "event_type": "click"}], country="DE")
    ranked, _ = p.personalize(cands, "known", None, live, explain=True)
    for c in ranked:
        comps = c["reasons"]["components"]
        assert sum(comps.values()) == pytest.approx(c["score"], abs=1e-9)
        assert set(comps) >= {
            "relevance",
            "popularity",
            "recent_items",
            "category_affinity",
            "brand_affinity",
        }
    texts = [c["reasons"]["text"] for c in ranked]
    assert all(t.startswith("matches 'gadget'") for t in texts)
    assert any("you viewed" in t for t in texts) and any("popular in DE" in t for t in texts)
    rec = recommender(artifacts).recommend("known", [], 5, True, None, live, explain=True)
    for s, r in zip(rec["scores"], rec["reasons"]):
        assert sum(r["components"].values()) == pytest.approx(s, abs=1e-6)
        assert "you viewed" in r["text"]


def test_suggest_puts_the_users_recent_queries_that_extend_the_prefix_first():
    from recsys.serving.app import personal_first

    auto = [
        {"text": "mario kart", "score": 3.0, "corrected": False},
        {"text": "mario party", "score": 2.0, "corrected": False},
    ]
    out = personal_first(auto, ("mario party 10", "zelda", "Mario Kart", "mar"), "mar", 5)
    assert [(s["text"], s.get("personal", False)) for s in out] == [
        ("mario party 10", True),  # newest first; "zelda" does not extend the prefix, "mar" is the prefix
        ("Mario Kart", True),
        ("mario party", False),  # the autocomplete's "mario kart" is the user's query already
    ]
    assert out[0]["score"] > out[1]["score"] > out[2]["score"]
