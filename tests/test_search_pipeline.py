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
    RerankSettings,
    SearchPipeline,
    SearchRejected,
    SearchRequest,
    SearchResult,
)
from recsys.search.scores import minmax

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
    rr = RerankSettings(model=None, max_length=32, top_n=top_n, weight=weight)
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
