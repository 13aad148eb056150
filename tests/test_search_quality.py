"""Search quality pieces (issue #30), in-process, no Ray: the judgments adapter (every row accounted for,
the split by normalised query), graded metrics of the search protocol (hand-computed), query
understanding (units table, spelling from a real catalog slice, mined synonyms) and `exact` through the
one search pipeline."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest

from recsys.evaluation.judged import (
    JudgedQuery,
    JudgmentsSpec,
    load_judged_queries,
    normalize_query,
    query_split,
)
from recsys.experiments.search import score_rankings
from recsys.search.pipeline import InProcess, SearchPipeline, SearchRequest
from recsys.search.query import QueryRewriter, SpellCorrector, normalize_units, vocabulary
from recsys.search.settings import QuerySettings
from recsys.search.synonyms import load_synonyms, mine_synonyms, save_synonyms
from recsys.serving.config import RerankArgs

HD = "home-depot-search"


@pytest.fixture(scope="module")
def titles(shared_data):
    """The first 3,000 real Home Depot titles (a slice, read at run time)."""
    with open(shared_data / HD / "products.csv", encoding="utf-8") as f:
        lines = list(itertools.islice(f, 1, 3001))
    import csv

    return [row[1] for row in csv.reader(lines)]


def test_adapter_counts_every_bad_row_and_splits_by_normalised_query(tmp_path, shared_data):
    with open(shared_data / HD / "judgments.csv", encoding="utf-8") as f:
        real = list(itertools.islice(f, 0, 201))  # header + 200 real rows
    bad = [
        "900001,100001,,2\n",  # empty query
        f"900002,100001,{'x' * 300},2\n",  # 300 characters
        "900003,100001,?!...,2\n",  # punctuation only
        "900004,999999999,angle bracket,3\n",  # product missing from the catalog
        "900005,100001,angle bracket,4.5\n",  # relevance outside 1-3
        "900006,100001,angle bracket,high\n",  # not a number
        "900007,100001,Angle  Bracket,2\n",  # the same query (normalised) and product: duplicate
        "900008,100001,angle bracket,2.5\n",
        "900009,100002,2x4,3\n",  # numbers only: kept
    ]
    path = tmp_path / "judgments.csv"
    path.write_bytes(
        "".join(real + bad).encode("utf-8") + "900010,100002,caf\xe9 table,2\n".encode("latin-1")
    )
    catalog = {line.split(",")[1] for line in real[1:]} | {"100001", "100002"}
    spec = JudgmentsSpec(
        columns={"search_term": "query", "product_uid": "item_id"},
        split="all",
        min_relevance=1,
        max_relevance=3,
    )
    queries, report = load_judged_queries(path, spec, catalog)
    r = report.to_dict()
    assert r["rows"] == 210 and r["reconciles"] and r["latin1_lines"] == 1
    assert r["skipped"] == {
        "empty_query": 1,
        "query_too_long": 1,
        "punctuation_only_query": 1,
        "relevance_not_a_number": 1,
        "relevance_out_of_range": 1,
        "product_not_in_catalog": 1,
        "duplicate_judgment": 1,
    }
    assert r["numbers_only_queries"] == 1
    by_text = {q.query_id: q for q in queries}
    assert by_text["angle bracket"].relevance == {
        "100001": 2.0
    }  # the first of duplicates and "café table" in by_text
    assert sum(r["queries_per_split"].values()) == len(queries)
    test_only, _ = load_judged_queries(path, JudgmentsSpec(**{**spec.__dict__, "split": "test"}), catalog)
    assert {q.query_id for q in test_only} == {
        q.query_id for q in queries if query_split(q.query_id, spec.fractions, spec.salt) == "test"
    }
    assert normalize_query(" Toilet\tSEAT ") == "toilet seat"
    assert query_split("toilet seat", (0.7, 0.1, 0.2), "s") == query_split(
        "toilet seat", (0.7, 0.1, 0.2), "s"
    )
    shares = [query_split(f"q{i}", (0.7, 0.1, 0.2), "s") for i in range(2000)]
    assert abs(shares.count("test") / 2000 - 0.2) < 0.04 and abs(shares.count("train") / 2000 - 0.7) < 0.04


def test_graded_search_metrics_match_a_hand_computation():
    """relevant = judged >= 2.67 (recall, MRR); NDCG gain = relevance - 1 over judged items, unjudged 0."""
    qs = [
        JudgedQuery("a", "a", None, None, {"x": 3.0, "y": 2.0, "z": 1.0}),
        JudgedQuery("b", "b", None, None, {"x": 2.67, "y": 3.0}),
        JudgedQuery("c", "c", None, None, {"x": 3.0}),
    ]
    served = [["u", "y", "x"], ["y", "x"], ["u", "v"]]  # 'u', 'v' unjudged
    rankings = [[(i, 1.0 - j / 10) for j, i in enumerate(r)] for r in served]
    sc = SimpleNamespace(relevant_min=2.67, gain_offset=1.0)
    out = score_rankings(qs, rankings, ["recall@2", "mrr@100", "ndcg@10"], sc)
    assert out["recall@2"].tolist() == [0.0, 1.0, 0.0]
    assert out["mrr@100"].tolist() == pytest.approx([1 / 3, 1.0, 0.0])
    ideal_a = 2 + 1 / math.log2(3)  # gains 2 (x), 1 (y)
    dcg_a = 1 / math.log2(3) + 2 / math.log2(4)  # y at rank 2, x at rank 3
    ideal_b = 2 + 1.67 / math.log2(3)
    dcg_b = 2 + 1.67 / math.log2(3)
    assert out["ndcg@10"].tolist() == pytest.approx([dcg_a / ideal_a, dcg_b / ideal_b, 0.0])


@pytest.mark.parametrize(
    ("typed", "normal"),
    [
        ("1/2 in. pvc elbow", "1/2 in. pvc elbow"),
        ("0.5 inch pvc elbow", "1/2 in. pvc elbow"),
        ('1/2" pvc elbow', "1/2 in. pvc elbow"),
        ("1/2 in pvc elbow", "1/2 in. pvc elbow"),
        ("1 1/2 inch pipe", "1-1/2 in. pipe"),
        ("1.5 inches pipe", "1-1/2 in. pipe"),
        ("10 ft ladder", "10 ft. ladder"),
        ("5 gallon bucket", "5 gal. bucket"),
        ("50 lbs sand", "50 lb. sand"),
        ("100 square feet tile", "100 sq. ft. tile"),
        ("0.3 in gap", "0.3 in. gap"),  # no common fraction: the number stays
        ("in sink disposal", "in sink disposal"),  # a word, not a unit
        ("2x4", "2x4"),
    ],
)
def test_unit_normalisation_table(typed, normal):
    assert normalize_units(typed) == normal


def test_spelling_leaves_catalog_words_and_fixes_a_planted_typo(titles):
    counts = vocabulary(titles)
    assert counts["toilet"] > 0 and counts["bracket"] > 0
    sp = SpellCorrector(counts)
    assert sp.correct("toliet bracket") == "toilet bracket"
    known = [w for w, _ in counts.most_common(300) if w.isalpha() and len(w) >= 4]
    assert all(sp.correct_word(w) == w for w in known)  # never "corrects" a word the catalog has
    assert sp.correct_word("xqzv") == "xqzv" and sp.correct_word("abc") == "abc"  # no match / too short


def test_rewriter_reports_each_change_and_mined_synonyms_expand(titles, tmp_path):
    pairs = [("fridge", "Frigidaire 18 cu. ft. Top Freezer Refrigerator")] * 3 + [
        ("fridge", "GE Refrigerator Water Filter")
    ]
    syn = mine_synonyms(pairs, min_support=3)
    assert syn["fridge"][0] == "refrigerator"
    save_synonyms(tmp_path / "syn.json", syn)
    settings = QuerySettings(
        spelling=True,
        units=True,
        synonyms=True,
        max_edit_distance=2,
        min_word_length=4,
        synonyms_path=str(tmp_path / "syn.json"),
    )
    rw = QueryRewriter(titles, settings, load_synonyms(tmp_path / "syn.json")).rewrite(
        "toliet  fridge 1/2 inch"
    )
    assert rw.query.startswith("toilet fridge 1/2 in.") and "refrigerator" in rw.query.split()
    assert [c.split(":")[0] for c in rw.changes] == ["units", "spelling", "synonyms"]
    (tmp_path / "bad.json").write_text('["not", "a", "map"]')
    with pytest.raises(ValueError, match="word: \\[expansion"):
        load_synonyms(tmp_path / "bad.json")


class _Retriever:
    def __init__(self):
        self.exact = []

    def retrieve(self, query, filters, n, exact=False):
        self.exact.append(exact)
        rewritten = query if exact else query.replace("toliet", "toilet")
        changes = [] if rewritten == query else [f"spelling: {query} -> {rewritten}"]
        cands = [{"item_id": "i0", "row": 0, "text": "t", "fused": 1.0}]
        return {"version": "v1", "candidates": cands, "rewrite": {"query": rewritten, "changes": changes}}


class _Reranker:
    def __init__(self):
        self.queries = []

    def rerank(self, query, texts, rows, version):
        self.queries.append(query)
        return {"scores": [1.0] * len(texts), "batch_size": 1}


class _Personalizer:
    def personalize(self, cands, user_id, country, offset, k):
        return {
            "items": [dict(c, score=c["relevance"]) for c in cands][offset : offset + k],
            "cold_start": True,
        }


def test_pipeline_reports_the_rewritten_query_and_exact_turns_it_off():
    ret, rer = _Retriever(), _Reranker()
    p = SearchPipeline(
        InProcess(ret),
        InProcess(rer),
        InProcess(_Personalizer()),
        RerankArgs(max_length=32, top_n=5, weight=1.0).settings(),
    )
    res = p.search_sync(SearchRequest(query="toliet seat"))
    assert res.rewritten_query == "toilet seat" and res.query_changes == (
        "spelling: toliet seat -> toilet seat",
    )
    assert rer.queries == ["toilet seat"]  # the reranker scores what was searched for
    res = p.search_sync(SearchRequest(query="toliet seat", exact=True))
    assert res.rewritten_query is None and res.query_changes == () and ret.exact == [False, True]


# ----------------------------------------------------------------------------- the learned ranker


def _planted(n_queries: int, seed: int):
    """Groups of 20 candidates; the label is a planted feature's rank within its group, the rest noise."""
    import numpy as np

    from recsys.search.features import FEATURES
    from recsys.search.ltr import RankingSet

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_queries * 20, len(FEATURES))).astype(np.float32)
    planted = FEATURES.index("word_coverage")
    y = np.zeros(len(x), np.int32)
    for g in range(n_queries):
        s = slice(g * 20, (g + 1) * 20)
        order = np.argsort(-x[s, planted])
        y[s][order[:2]] = 4
        y[s][order[2:5]] = 2
    return RankingSet(x, y, np.full(n_queries, 20), [f"q{g}" for g in range(n_queries)])


def test_lambdamart_learns_a_planted_feature_and_round_trips(tmp_path):
    import numpy as np

    from recsys.search.features import FEATURES
    from recsys.search.ltr import LambdaRanker, fit_to_text, save_ranker

    text, info = fit_to_text(_planted(40, 0), _planted(10, 1), {"min_data_in_leaf": 5}, rounds=30)
    assert max(info["importance_gain"], key=info["importance_gain"].get) == "word_coverage"
    ranker = LambdaRanker.load(save_ranker(text, tmp_path / "m", info))
    test = _planted(20, 2)
    scores = ranker.predict(test.features)
    top = [int(np.argmax(scores[g * 20 : (g + 1) * 20])) for g in range(20)]
    assert (
        np.mean([test.labels[g * 20 + t] == 4 for g, t in enumerate(top)]) >= 0.9
    )  # it ranks by the feature
    meta = (tmp_path / "m" / "ranker.json").read_text().replace(FEATURES[0], "other")
    (tmp_path / "m" / "ranker.json").write_text(meta)
    with pytest.raises(ValueError, match="retrain it"):
        LambdaRanker.load(tmp_path / "m")


class _HashEncoder:
    """A deterministic stand-in for the bi-encoder: a normalised random vector per text."""

    def encode(self, texts, kind="query"):
        import zlib

        import numpy as np

        out = np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=16) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def small_retriever(titles):
    """A real bm25s + exact faiss index over 3,000 Home Depot titles (hash embeddings), no Ray."""
    import numpy as np
    import pandas as pd

    from recsys.retrieval.ann import build_index
    from recsys.retrieval.lexical import BM25Index

    items = pd.DataFrame({"item_id": [str(100001 + i) for i in range(len(titles))], "title": titles})
    emb = _HashEncoder().encode(titles, kind="item")
    a = SimpleNamespace(
        items=items,
        embeddings=emb,
        ann=build_index(emb, "exact"),
        bm25=BM25Index.build(titles),
        allowed_rows=lambda filters: None,
    )
    return a, np.asarray(emb)


def test_ranker_features_are_bit_identical_in_training_and_serving(small_retriever, tmp_path):
    import numpy as np

    from recsys.search.ltr import collect, fit_to_text, save_ranker
    from recsys.search.settings import RankSettings
    from recsys.search.stages import RetrieverCore

    a, _ = small_retriever
    kw = dict(ann_top_n=30, bm25_top_n=30, ann_weight=1.0, bm25_weight=1.0, rrf_k=60.0)
    plain = RetrieverCore(a, _HashEncoder(), **kw)
    queries = [
        (t, " ".join(t.split()[:3]), {a.items["item_id"].iat[i]: 3.0})
        for i, t in enumerate(a.items["title"][:40])
    ]
    train = collect(plain, queries, n=20)
    text, info = fit_to_text(train, None, {"min_data_in_leaf": 5}, rounds=20)
    model = save_ranker(text, tmp_path / "ranker", info)
    served = RetrieverCore(a, _HashEncoder(), **kw, rank=RankSettings("lambdarank", str(model)))
    seen = []
    predict = served.ranker.predict
    served.ranker.predict = lambda f: seen.append(f) or predict(f)  # what Serve computed
    out = served.retrieve(queries[0][1], {}, 20)
    first = slice(0, int(train.groups[0]))
    assert np.array_equal(seen[0], train.features[first])  # bit for bit: one feature function
    scores = predict(train.features[first])
    assert [c["fused"] for c in out] == sorted(scores.tolist(), reverse=True)[:20]
    assert len({c["item_id"] for c in out}) == len(out) == 20


def test_search_http_schema_carries_exact_and_the_rewrite():
    from recsys.serving import schemas as S

    assert S.SearchRequest(query="toliet seat", exact=True).to_search().exact is True
    assert S.SearchRequest(query="toliet seat").to_search().exact is False
    r = S.SearchResponse(
        request_id="r",
        arm="hd",
        version="v1",
        query="toliet",
        page=0,
        k=10,
        cold_start=True,
        items=[],
        rewritten_query="toilet",
        query_changes=["spelling: toliet -> toilet"],
    )
    assert r.model_dump()["rewritten_query"] == "toilet"


def test_serve_config_rank_and_query_sections_validate():
    from pydantic import ValidationError

    from recsys.serving.config import QueryArgs, RankArgs

    assert RankArgs().settings().kind == "blend"
    with pytest.raises(ValidationError, match="rank.model"):
        RankArgs(kind="lambdarank")
    with pytest.raises(ValidationError, match="synonyms_path"):
        QueryArgs(synonyms=True)
    assert not QueryArgs().settings().enabled and QueryArgs(units=True).settings().enabled


# ----------------------------------------------------------------------------- the protocol, end to end


@pytest.fixture(scope="module")
def hd_slice(tmp_path_factory, titles, shared_data):
    """An index version of 3,000 real titles built in-process (random vectors: the dense side is not what
    is checked; the query encoder is the packaged MiniLM), its serve config and the real judgments of
    those products plus bad rows."""
    import numpy as np
    import pandas as pd
    import yaml

    from recsys.models.hub import resolve_model_path
    from recsys.retrieval import features
    from recsys.retrieval.ann import build_index
    from recsys.retrieval.autocomplete import Autocomplete
    from recsys.retrieval.build import write_version
    from recsys.retrieval.lexical import BM25Index

    root = tmp_path_factory.mktemp("hd")
    products = pd.read_csv(shared_data / HD / "products.csv", dtype=str, nrows=len(titles))
    items = pd.DataFrame({"item_id": products["product_uid"], "title": titles})
    emb = np.random.default_rng(0).normal(size=(len(items), 384)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pop = features.item_popularity(items, None, {})
    items = items.assign(popularity=pop)
    write_version(
        root / "index",
        "v1",
        items=items,
        embeddings=emb,
        ann=build_index(emb, "exact"),
        bm25=BM25Index.build(titles),
        autocomplete=Autocomplete.from_sources(titles, pop, [], np.zeros(0), np.zeros(0)),
        users=features.user_lookup(items, None, None, 10, ["buy"]),
        popular=features.popular_lists(items, None, pop, {}, 10),
        manifest={
            "version": "v1",
            "model": {"path": resolve_model_path("all-MiniLM-L6-v2"), "max_length": 32},
        },
    )
    serve = yaml.safe_load((project_root_path() / "configs/serve/home-depot-search.yaml").read_text())
    args = serve["applications"][0]["args"]
    args["arms"][0]["artifacts"] = str(root / "index")
    args["rank"] = {"kind": "blend"}
    args["query"] = {"units": True, "spelling": True}
    args.pop("rules", None)  # no merchandising: the BM25 row is checked against bm25s itself
    args["retrieval"]["ann_weight"] = 0.0  # lexical rows: no query encoding (the vectors are random)
    (root / "serve.yaml").write_text(yaml.safe_dump(serve))
    judged = pd.read_csv(shared_data / HD / "judgments.csv", dtype=str, nrows=12000)
    judged = judged[judged["product_uid"].isin(set(items["item_id"]))]
    bad = pd.DataFrame(
        [["x1", "100001", "", "3"], ["x2", "100001", "toliet", "7"], ["x3", "1", "toliet", "3"]],
        columns=judged.columns,
    )
    pd.concat([judged, bad]).to_csv(root / "judgments.csv", index=False)
    return root, items


def project_root_path():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_search_protocol_ablation_through_the_served_pipeline(hd_slice, ray_session):
    """train_ranker on the slice's train queries, then three rows (BM25; + query understanding; + the trained
    LambdaMART) through the served pipeline: the BM25 row equals
    bm25s ranked directly (so the pipeline adds nothing to it), paired tests, slices, reports, adapter counts."""
    import json

    import numpy as np

    from recsys.config.loader import load_config
    from recsys.evaluation.config import EvaluateConfig
    from recsys.experiments.search import load_judged, run
    from recsys.retrieval.lexical import BM25Index
    from recsys.runtime import JobContext

    root, items = hd_slice
    from recsys.experiments.ranker import run as train_ranker
    from recsys.search.ltr_config import TrainRankerConfig

    tcfg = load_config(
        TrainRankerConfig,
        None,
        data={
            "output_dir": str(root / "ranker"),
            "serve_config": str(root / "serve.yaml"),
            "judgments": str(root / "judgments.csv"),
            "columns": {"search_term": "query", "product_uid": "item_id"},
            "relevance_range": [1, 3],
            "candidates": 30,
            "rounds": 20,
            "synonyms": {"min_support": 2},
            "params": {"min_data_in_leaf": 5},
        },
    )
    trained = train_ranker(tcfg, JobContext("train_ranker", root / "ranker"))  # the fit: one Ray task
    assert trained["counts"]["train_queries"] > 50 and trained["counts"]["train_positive_rows"] > 0
    assert (root / "ranker" / "model" / "model.txt").is_file() and (
        root / "ranker" / "synonyms.json"
    ).is_file()
    off = {"units": False, "spelling": False}
    cfg = load_config(
        EvaluateConfig,
        None,
        data={
            "output_dir": str(root / "eval"),
            "data": {},
            "protocol": {"task": "search"},
            "search": {
                "serve_config": str(root / "serve.yaml"),
                "judgments": str(root / "judgments.csv"),
                "columns": {"search_term": "query", "product_uid": "item_id"},
                "relevance_range": [1, 3],
                "relevant_min": 2.67,
                "gain_offset": 1.0,
                "variants": [
                    {"name": "bm25", "retrieval": {"ann_weight": 0.0}, "query": off},
                    {"name": "bm25_qu", "retrieval": {"ann_weight": 0.0}, "rerank": {"weight": 0.0}},
                    {
                        "name": "bm25_ltr",
                        "query": off,
                        "rank": {"kind": "lambdarank", "model": str(root / "ranker/model")},
                    },
                ],
            },
            "metrics": ["recall@10", "recall@100", "mrr@100", "ndcg@10"],
            "bootstrap": 50,
            "significance_resamples": 100,
        },
    )
    out = run(cfg, JobContext("evaluate", root / "eval"))
    assert [r["variant"] for r in out["ablation"]] == ["bm25", "bm25_qu", "bm25_ltr"]
    adapter = out["adapter"]
    assert adapter["reconciles"] and adapter["skipped"]["empty_query"] == 1
    assert (
        adapter["skipped"]["relevance_out_of_range"] == 1
        and adapter["skipped"]["product_not_in_catalog"] == 1
    )
    assert {(t["model"], t["metric"]) for t in out["paired_tests"]} == {
        (v, m) for v in ("bm25_qu", "bm25_ltr") for m in out["metrics"]
    }
    assert {s["slice"] for s in out["slices"]} == {"misspelled", "numeric", "length"}
    for name in ("report_html", "worst_queries_html", "results"):
        assert (root / "eval" / out["artifacts"][name].split("/")[-1]).is_file()
    assert json.loads((root / "eval" / "results.json").read_text())["ablation"][0]["variant"] == "bm25"
    # the BM25 row is bm25s itself: same per-query numbers as ranking with the index directly
    from types import SimpleNamespace

    from recsys.experiments.search import is_relevant, score_rankings

    judged, _ = load_judged(cfg.search, set(items["item_id"]))
    queries = [q for q in judged if is_relevant(q, cfg.search)]
    bm25 = BM25Index.build(items["title"].tolist())
    ids = items["item_id"].to_numpy()
    direct = [[(ids[r], float(s)) for r, s in zip(*bm25.search(q.query, 100))] for q in queries]
    ref = score_rankings(
        queries, direct, list(out["metrics"]), SimpleNamespace(relevant_min=2.67, gain_offset=1.0)
    )
    for m, values in ref.items():
        assert out["ablation"][0][m] == pytest.approx(float(np.mean(values)), abs=1e-12)
