"""The one search pipeline without Ray: the RRF tie rule (one implementation for retrieval and the
ensemble, numbers unchanged), minmax, SearchPipeline's ordering logic over stub stages, and the
``search`` evaluate protocol's judged-query readers, ranks and config checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from recsys.retrieval.fusion import average_ranks, reciprocal_rank_fusion, rrf_scores
from recsys.search import (
    InProcess,
    SearchPipeline,
    SearchRejected,
    SearchRequest,
    SearchResult,
)
from recsys.search.scores import minmax
from recsys.serving.config import RerankArgs

FIXTURES = Path(__file__).parent / "fixtures" / "search"


def test_rrf_tie_rule_exact_order():
    # a: 1/2 + 1/4, c: 1/4 + 1/2 (tie: a appears first, in list 0); b: 1/3 and d: 1/3 (tie: b first)
    assert reciprocal_rank_fusion([["a", "b", "c"], ["c", "d", "a"]], k=1) == [
        ("a", 0.75),
        ("c", 0.75),
        ("b", 1 / 3),
        ("d", 1 / 3),
    ]
    # ids ranked by one list only tie at equal ranks: every id of list 0 precedes list 1's new ids
    assert [d for d, _ in reciprocal_rank_fusion([["x", "y"], ["z", "w"]])] == ["x", "z", "y", "w"]
    # within a member, tied scores share their average rank; an unranked (inf) item contributes nothing
    np.testing.assert_array_equal(average_ranks(np.array([[3.0, 1.0, 3.0, 2.0]])), [[1.5, 4.0, 1.5, 3.0]])
    np.testing.assert_array_equal(
        rrf_scores([np.array([1.0, np.inf]), np.array([np.inf, 2.0])], [1.0, 2.0], k=1), [0.5, 2 / 3]
    )
    assert reciprocal_rank_fusion([]) == []


def _old_retrieval_rrf(rankings, weights, k):
    """The served fusion before it called rrf_scores (the reference its numbers must keep)."""
    scores: dict[str, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def test_served_fusion_is_unchanged_bit_for_bit():
    rng = np.random.default_rng(0)
    for _ in range(200):
        dense = [str(i) for i in rng.permutation(60)[: rng.integers(0, 40)]]
        lex = [str(i) for i in rng.permutation(60)[: rng.integers(0, 40)]]
        w = (float(rng.choice([1.0, 0.5, 2.0])), float(rng.choice([1.0, 0.5, 0.0])))
        assert reciprocal_rank_fusion([dense, lex], w, 60.0) == _old_retrieval_rrf([dense, lex], w, 60.0)


def test_ensemble_rrf_calls_the_one_rrf_and_keeps_its_numbers():
    from scipy.stats import rankdata

    from recsys.ensemble import RRFScorer
    from recsys.evaluation import QueryBatch

    class Fixed:
        def __init__(self, table):
            self.table = np.asarray(table, dtype=float)

        def score(self, batch, item_ids):
            return self.table

    # tied member scores share their average rank: a ranks [1.5, 1.5, 3], b ranks [3, 2, 1]
    a, b = Fixed([[1.0, 1.0, 0.0]]), Fixed([[0.0, 1.0, 2.0]])
    batch, items = QueryBatch(["u"], [[]]), np.array([["x", "y", "z"]], dtype=object)
    np.testing.assert_array_equal(
        RRFScorer([a, b], k=1).score(batch, items), [[1 / 2.5 + 1 / 4, 1 / 2.5 + 1 / 3, 1 / 4 + 1 / 2]]
    )
    # a cell a member cannot score ranks last (C + 1 = 4); a cell no member scores stays -inf
    c = Fixed([[-np.inf, 5.0, -np.inf]])
    np.testing.assert_array_equal(
        RRFScorer([c, Fixed([[1.0, 0.0, -np.inf]])], k=1).score(batch, items),
        [[1 / 5 + 1 / 2, 1 / 2 + 1 / 3, -np.inf]],
    )
    rng = np.random.default_rng(1)  # the pre-refactor expression, bit for bit, with many ties
    m = [Fixed(rng.integers(0, 4, size=(5, 9)).astype(float)) for _ in range(3)]
    batch5 = QueryBatch([str(i) for i in range(5)], [[]] * 5)
    old = sum(w / (60.0 + rankdata(-x.table, method="average", axis=1)) for w, x in zip([1.0, 0.5, 2.0], m))
    np.testing.assert_array_equal(
        RRFScorer(m, weights=[1.0, 0.5, 2.0]).score(batch5, np.zeros((5, 9), object)), old
    )


def test_one_minmax():
    out = minmax(np.array([2.0, 4.0, 3.0], dtype=np.float32))
    assert out.dtype == np.float32 and out.tolist() == [0.0, 1.0, 0.5]
    out = minmax([1, 3])
    assert out.dtype == np.float64 and out.tolist() == [0.0, 1.0]
    assert minmax([5.0, 5.0]).tolist() == [0.0, 0.0] and minmax([]).size == 0


class StubRetriever:
    def __init__(self):
        self.calls = []

    def retrieve(self, query, filters, n):
        self.calls.append((query, filters, n))
        if filters.get("brand"):
            return {"error": {"field": "filters.brand", "message": "no brand column"}}
        fused = [0.5, 0.4, 0.3, 0.2, 0.1][:n]
        return {
            "version": "v7",
            "candidates": [
                {"item_id": f"i{j}", "row": j, "text": f"t{j}", "fused": f} for j, f in enumerate(fused)
            ],
        }


class StubReranker:
    def __init__(self):
        self.calls = []

    async def rerank(self, query, texts, rows, version):  # async, as the Serve deployment's method
        self.calls.append((query, texts, rows, version))
        return {"scores": [1.0, 3.0, 2.0][: len(texts)], "batch_size": 1}


class StubPersonalizer:
    """Orders by relevance (stable), pages like the deployment."""

    def __init__(self):
        self.seen = None

    def personalize(self, candidates, user_id, country, offset, k):
        self.seen = [(c["item_id"], c["relevance"]) for c in candidates]
        ranked = sorted(candidates, key=lambda c: -c["relevance"])
        items = [
            {"item_id": c["item_id"], "score": round(c["relevance"], 6), "position": offset + i}
            for i, c in enumerate(ranked[offset : offset + k])
        ]
        return {"items": items, "cold_start": user_id is None, "version": "v7"}


def _pipeline(top_n=3, weight=0.5):
    stages = StubRetriever(), StubReranker(), StubPersonalizer()
    rr = RerankArgs(max_length=32, top_n=top_n, weight=weight).settings()
    return SearchPipeline(*(InProcess(s) for s in stages), rr), stages


def test_pipeline_blends_reranked_head_above_the_fused_tail():
    pipe, (ret, rer, pers) = _pipeline()
    res = pipe.search_sync(SearchRequest(query="q", user_id="u1", k=2))
    assert (
        isinstance(res, SearchResult)
        and res.version == "v7"
        and res.rerank_batch_size == 1
        and not res.cold_start
    )
    assert ret.calls == [("q", {}, 3)]  # n = max(top_n, (page + 1) * k)
    assert rer.calls == [("q", ["t0", "t1", "t2"], [0, 1, 2], "v7")]
    # head: 0.5 * minmax([1, 3, 2]) + 0.5 * minmax([.5, .4, .3]); tail (none here)
    assert pers.seen == [("i0", 0.5), ("i1", 0.75), ("i2", 0.25)]
    assert [(i["item_id"], i["position"]) for i in res.items] == [("i1", 0), ("i0", 1)]


def test_pipeline_pages_rank_the_tail_below_every_reranked_item():
    pipe, (ret, rer, pers) = _pipeline(top_n=2, weight=1.0)
    res = pipe.search_sync(SearchRequest(query="q", k=2, page=1))
    assert ret.calls == [("q", {}, 4)] and rer.calls[0][1] == ["t0", "t1"]
    # head: minmax([1, 3]); tail: minmax([.3, .2]) - 1, so in [-1, 0]
    assert pers.seen == [("i0", 0.0), ("i1", 1.0), ("i2", 0.0), ("i3", -1.0)]
    assert [(i["item_id"], i["position"]) for i in res.items] == [("i2", 2), ("i3", 3)] and res.cold_start


def test_pipeline_rejects_what_the_index_cannot_filter():
    pipe, (_, rer, pers) = _pipeline()
    res = asyncio.run(pipe.search(SearchRequest(query="q", filters={"brand": "sony"})))
    assert res == SearchRejected("filters.brand", "no brand column") and rer.calls == [] and pers.seen is None


def test_judged_queries_read_the_same_from_csv_and_trec():
    from recsys.experiments.search import load_judgments, load_trec

    csv, trec = (
        load_judgments(str(FIXTURES / "judgments.csv")),
        load_trec(str(FIXTURES / "queries.tsv"), str(FIXTURES / "qrels.txt")),
    )
    assert [q.query_id for q in csv] == [f"q{i}" for i in range(1, 12)]
    assert (
        csv[0].query == "fire emblem"
        and csv[0].user_id == "0"
        and csv[0].relevance == {"0": 2.0, "5": 2.0, "134": 1.0}
    )
    assert csv[5].country == "US" and csv[1].user_id is None
    assert [(q.query_id, q.query, q.user_id, q.relevance) for q in csv] == [
        (q.query_id, q.query, q.user_id, q.relevance) for q in trec
    ]


def test_target_ranks_follow_the_served_order():
    from recsys.evaluation import metrics as M
    from recsys.experiments.search import JudgedQuery, target_ranks

    qs = [
        JudgedQuery("a", "x", None, None, {"i2": 2.0, "i9": 1.0, "i0": 0.0}),
        JudgedQuery("b", "y", None, None, {"i0": 1.0}),
    ]
    tr = target_ranks(qs, [[("i0", 0.9), ("i1", 0.9), ("i2", 0.1)], [("i0", 0.5)]])
    assert tr.ranks.tolist() == [[2, M.NOT_RANKED], [0, M.NOT_RANKED]] and tr.gains.tolist() == [
        [2.0, 1.0],
        [1.0, 0.0],
    ]
    assert tr.n_candidates.tolist() == [3, 1]
    assert M.per_query(tr, "recall@10").tolist() == [0.5, 1.0] and M.per_query(tr, "mrr@100").tolist() == [
        1 / 3,
        1.0,
    ]


def test_search_protocol_config_errors():
    from pydantic import ValidationError

    from recsys.evaluation.config import EvaluateConfig

    serve = "configs/serve/tiny.yaml"
    ok = EvaluateConfig.model_validate(
        {
            "data": {},
            "protocol": {"task": "search"},
            "search": {"serve_config": serve, "judgments": str(FIXTURES / "judgments.csv")},
        }
    )
    assert ok.models == [] and ok.search.depth == 100 and ok.search.arm is None
    with pytest.raises(ValidationError, match="not both"):
        EvaluateConfig.model_validate(
            {
                "data": {},
                "protocol": {"task": "search"},
                "search": {
                    "serve_config": serve,
                    "judgments": str(FIXTURES / "judgments.csv"),
                    "queries": str(FIXTURES / "queries.tsv"),
                },
            }
        )
    with pytest.raises(ValidationError, match="queries .TSV. and qrels .TREC. go together"):
        EvaluateConfig.model_validate(
            {
                "data": {},
                "protocol": {"task": "search"},
                "search": {"serve_config": serve, "queries": str(FIXTURES / "queries.tsv")},
            }
        )
    with pytest.raises(ValidationError, match="protocol.task search and the search section go together"):
        EvaluateConfig.model_validate({"data": {}, "protocol": {"task": "search"}})
    with pytest.raises(ValidationError, match="models: list at least one model"):
        EvaluateConfig.model_validate({"data": {"events": {"path": serve}}})


def test_search_package_stays_in_its_layer():
    """recsys.search (layer 4) never imports the layers above it, even in a function."""
    import ast

    above = (
        "recsys.serving",
        "recsys.tuning",
        "recsys.pipeline",
        "recsys.experiments",
        "recsys.cli",
        "recsys.evaluation",
        "recsys.baselines",
        "recsys.ensemble",
        "recsys.registry",
        "recsys.demo",
    )
    for path in (Path(__file__).parents[1] / "recsys" / "search").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            bad = [n for n in names if n.startswith(above)]
            assert not bad, f"{path.name} imports {bad}"


class VersionedRetriever(StubRetriever):
    """Serves index ``version`` (a hot reload changes it) and answers ``served_version`` like the deployment."""

    def __init__(self):
        super().__init__()
        self.version = "v7"

    async def served_version(self):
        return self.version

    def retrieve(self, query, filters, n):
        return dict(super().retrieve(query, filters, n), version=self.version) | (
            {"error": {"field": "filters.brand", "message": "no brand column"}}
            if filters.get("brand")
            else {}
        )


class UserPersonalizer(StubPersonalizer):
    """Scores depend on the user (so a cached answer for another user would be wrong)."""

    def __init__(self):
        super().__init__()
        self.version = None  # None: the retriever's version (the personalizer has reloaded too)

    def personalize(self, candidates, user_id, country, offset, k):
        bonus = {
            c["item_id"]: (0.5 if user_id == "fan-of-i2" and c["item_id"] == "i2" else 0.0)
            for c in candidates
        }
        for c in candidates:
            c["relevance"] += bonus[c["item_id"]]
        out = super().personalize(candidates, user_id, country, offset, k)
        return dict(out, version=self.version or self.retriever.version)


def _cached_pipeline(entries=8, ttl_s=0.0):
    from recsys.search.cache import maybe_cache

    stages = VersionedRetriever(), StubReranker(), UserPersonalizer()
    stages[2].retriever = stages[0]
    rr = RerankArgs(max_length=32, top_n=3, weight=0.5).settings()
    return SearchPipeline(*(InProcess(s) for s in stages), rr, cache=maybe_cache(entries, ttl_s)), stages


def _ranking(res):
    return [(i["item_id"], i["score"], i["position"]) for i in res.items], res.version, res.cold_start


def test_response_cache_hits_a_repeated_request_with_the_identical_answer():
    cached, (_, rer, _) = _cached_pipeline()
    plain, _ = _pipeline()
    plain.personalizer = cached.personalizer  # the same user-dependent ranking without a cache
    reqs = [SearchRequest(query="q", user_id="u1", k=2), SearchRequest(query="q", user_id="fan-of-i2", k=3)]
    for req in reqs:
        first, again = cached.search_sync(req), cached.search_sync(req)
        assert _ranking(first) == _ranking(again) == _ranking(plain.search_sync(req))
        assert not first.cached and again.cached and again.rerank_batch_size is None
    assert cached.cache.stats() == {"hits": 2, "misses": 2, "size": 2, "capacity": 8}
    assert len(rer.calls) == 2  # the hits reranked nothing
    # the normalized request: whitespace in the query and None filters change nothing, so they hit
    assert cached.search_sync(SearchRequest(query="  q ", user_id="u1", k=2, filters={"brand": None})).cached
    # a hit is a copy: a caller mutating it does not change what the cache serves next
    hit = cached.search_sync(reqs[0])
    hit.items[0]["score"] = -1.0
    assert _ranking(cached.search_sync(reqs[0])) == _ranking(plain.search_sync(reqs[0]))
    # every request field is in the key: page, k, country, filters, another user -> misses
    misses = cached.cache.misses
    for other in (
        SearchRequest(query="q", user_id="u1", k=2, page=1),
        SearchRequest(query="q", user_id="u1", k=3),
        SearchRequest(query="q", user_id="u1", k=2, country="US"),
        SearchRequest(query="q", user_id="u2", k=2),
        SearchRequest(query="q", user_id="u1", k=2, filters={"category": "x"}),
        SearchRequest(query="Q", user_id="u1", k=2),
    ):
        assert not cached.search_sync(other).cached
    assert cached.cache.misses == misses + 6
    # a rejected request is answered, never cached
    assert isinstance(cached.search_sync(SearchRequest(query="q", filters={"brand": "x"})), SearchRejected)
    assert isinstance(cached.search_sync(SearchRequest(query="q", filters={"brand": "x"})), SearchRejected)


def test_response_cache_key_holds_the_index_version_and_a_reload_empties_it():
    pipe, (ret, rer, pers) = _cached_pipeline()
    req = SearchRequest(query="q", user_id="u1", k=2)
    assert not pipe.search_sync(req).cached and pipe.search_sync(req).cached
    ret.version = "v8"  # hot reload
    res = pipe.search_sync(req)
    assert not res.cached and res.version == "v8" and len(rer.calls) == 2
    assert pipe.cache.stats()["size"] == 1  # v7's entry was dropped with the reload
    assert pipe.search_sync(req).cached
    # mid-reload the personalizer may still serve the old version: that answer is not stored
    ret.version, pers.version = "v9", "v8"
    assert not pipe.search_sync(req).cached and not pipe.search_sync(req).cached
    assert pipe.cache.stats()["size"] == 0
    pers.version = None
    assert not pipe.search_sync(req).cached and pipe.search_sync(req).cached


def test_response_cache_is_bounded_and_evicts_the_least_recently_used():
    pipe, _ = _cached_pipeline(entries=2)
    a, b, c = (SearchRequest(query=q) for q in "abc")
    for req in (a, b):
        pipe.search_sync(req)
    assert pipe.search_sync(a).cached  # a is now the most recently used
    pipe.search_sync(c)  # evicts b
    assert pipe.cache.stats()["size"] == 2
    assert pipe.search_sync(a).cached and not pipe.search_sync(b).cached
    assert pipe.cache.stats() == {"hits": 2, "misses": 4, "size": 2, "capacity": 2}


def test_response_cache_off_and_ttl():
    import time

    from recsys.search.cache import CountingCache, maybe_cache

    assert maybe_cache(0) is None
    with pytest.raises(ValueError, match="entries >= 1"):
        CountingCache(0)
    pipe, (_, rer, _) = _cached_pipeline(entries=4, ttl_s=0.05)
    req = SearchRequest(query="q")
    assert not pipe.search_sync(req).cached and pipe.search_sync(req).cached
    time.sleep(0.1)
    assert not pipe.search_sync(req).cached and len(rer.calls) == 2


def test_query_embedding_cache_keys_on_model_and_text_and_is_bounded():
    import pandas as pd

    from recsys.search.stages import RetrieverCore

    class Encoder:
        calls: list = []

        def encode(self, texts, kind):
            self.calls.append(list(texts))
            return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)

    class Artifacts:
        items = pd.DataFrame({"title": ["x"]})

    def core(entries, model_id="m:32"):
        return RetrieverCore(
            Artifacts(),
            Encoder(),
            ann_top_n=1,
            bm25_top_n=0,
            ann_weight=1.0,
            bm25_weight=0.0,
            rrf_k=60.0,
            query_cache=entries,
            model_id=model_id,
        )

    r = core(2)
    first = r.encode_query("zelda")
    np.testing.assert_array_equal(first, Encoder().encode(["zelda"], "query"))
    Encoder.calls.clear()
    assert r.encode_query("zelda") is first and Encoder.calls == []
    assert not first.flags.writeable  # shared with every later hit
    r.encode_query("mario"), r.encode_query("kirby")  # evicts zelda (least recently used)
    r.encode_query("zelda")
    assert Encoder.calls == [["mario"], ["kirby"], ["zelda"]]
    assert r.query_cache.stats() == {"hits": 1, "misses": 4, "size": 2, "capacity": 2}
    assert ("m:32", "zelda") in r.query_cache and ("other:32", "zelda") not in r.query_cache
    assert core(0).query_cache is None  # off: every query encoded
