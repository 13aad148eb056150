"""Protocols and the evaluator: splits, seeded candidates, block-size and Ray invariance."""

from __future__ import annotations

import sys
import zlib
from typing import get_args

import numpy as np
import pandas as pd
import pytest

from recsys.config import InputConfig
from recsys.evaluation import RankingEvaluator, leave_one_out, sample_negatives, time_split, with_candidates
from recsys.evaluation.config import EvaluateConfig, ProtocolConfig
from recsys.evaluation.data import load_pairs
from recsys.evaluation.prepare import prepare
from recsys.experiments import RUNNERS, run_matching, run_ranking


def _seqs(n_users=30, n_items=60, length=9):
    return {f"u{u}": [f"i{(u * 7 + j * 5) % n_items}" for j in range(length)] for u in range(n_users)}


class HashScorer:
    """Deterministic pseudo-random scores per (query, item), independent of batching."""

    def score(self, batch, item_ids):
        out = np.empty((len(batch), item_ids.shape[1]))
        for b, q in enumerate(batch.query_ids):
            row = item_ids[b if item_ids.shape[0] > 1 else 0]
            out[b] = [
                (zlib.crc32(f"{q}|{i}".encode()) % 10007) / 10007 if i is not None else 0.0 for i in row
            ]
        return out


def test_leave_one_out_split():
    split = leave_one_out({"a": ["1", "2", "3", "4"], "b": ["5", "6"]})
    assert list(split.test.query_ids) == ["a"] and split.test.targets == [["4"]]
    assert split.test.histories == [["1", "2", "3"]] and split.valid.targets == [["3"]]
    assert split.valid.histories == [["1", "2"]]
    train = dict(zip(split.train.user_id, split.train["items"]))
    assert train == {"a": ["1", "2"], "b": ["5", "6"]}


def test_sampled_candidates_are_seeded_and_valid():
    es = leave_one_out(_seqs()).test
    a, b = sample_negatives(es, 20, seed=3), sample_negatives(es, 20, seed=3)
    assert (a.candidates == b.candidates).all()
    assert not (sample_negatives(es, 20, seed=4).candidates == a.candidates).all()
    # a query's candidates do not depend on which other queries are evaluated
    assert (sample_negatives(es.subset([5, 2]), 20, seed=3).candidates[0] == a.candidates[5]).all()
    for q in range(len(es)):
        row = list(a.candidates[q])
        assert es.targets[q][0] in row and len(set(row)) == 21
        assert not set(row[1:]) & set(es.histories[q])
    # targets are shuffled into the rows: their column carries no information
    assert len({list(a.candidates[q]).index(es.targets[q][0]) for q in range(len(es))}) > 5
    with pytest.raises(ValueError, match="n_negatives"):
        sample_negatives(es, 59, seed=0)


def test_full_ranking_block_size_invariance_and_exclusion():
    es = leave_one_out(_seqs()).test
    small = RankingEvaluator(es, ["ndcg@10", "recall@20", "auc"], block_size=60).evaluate(HashScorer())
    big = RankingEvaluator(es, ["ndcg@10", "recall@20", "auc"], block_size=10**6).evaluate(HashScorer())
    pd.testing.assert_frame_equal(small.per_query, big.per_query)
    # 60 items, 8 seen items excluded (none is the target)
    assert (small.per_query["n_candidates"] == 60 - 8).all()


def test_ray_parallel_equals_local(ray_session):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    es = sample_negatives(leave_one_out(_seqs()).test, 10, seed=0)
    local = RankingEvaluator(es, ["ndcg@5", "mrr"]).evaluate(HashScorer()).per_query
    par = RankingEvaluator(es, ["ndcg@5", "mrr"], num_workers=2).evaluate(HashScorer()).per_query
    pd.testing.assert_frame_equal(local, par)


def test_evaluator_dict_and_bad_scorer():
    es = sample_negatives(leave_one_out(_seqs()).test, 10, seed=0)
    out = RankingEvaluator(es, ["hr@10", "ndcg@10"], primary_metric="ndcg@10")(HashScorer())
    assert out["primary_metric"] == "ndcg@10" and out["n_queries"] == 30 and 0 <= out["ndcg@10"] <= 1
    with pytest.raises(ValueError, match="shape"):
        RankingEvaluator(es)(lambda b, items: np.zeros((1, 1)))
    with pytest.raises(ValueError, match="NaN"):
        RankingEvaluator(es)(lambda b, items: np.full(items.shape, np.nan))
    with pytest.raises(TypeError, match="not a scorer"):
        RankingEvaluator(es)(42)


def test_file_candidates_and_time_split():
    es = leave_one_out(_seqs(5)).test
    cand = {"u0": ["i1", "i2"], "u1": [es.targets[1][0], "i3"]}
    fc = with_candidates(es, cand)
    assert list(fc.query_ids) == ["u0", "u1"] and es.targets[0][0] in fc.candidates[0]
    assert sorted(fc.candidates[1][:2]) == sorted([es.targets[1][0], "i3"]) and fc.candidates[1][2] is None
    ev = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b"],
            "item_id": ["1", "2", "2", "3", "1"],
            "timestamp": pd.to_datetime(
                ["2020-01-01", "2020-02-01", "2020-02-02", "2020-01-05", "2020-03-01"]
            ),
        }
    )
    sp = time_split(ev, test_start="2020-01-15")
    assert list(sp.test.query_ids) == ["a", "b"] and sp.test.targets == [["2"], ["1"]]
    assert sp.test.gains == [[2.0], [1.0]] and sp.test.histories == [["1"], ["3"]]


def test_pairs_table_checks_and_retrieval_protocol(tmp_path):
    path = tmp_path / "pairs.parquet"
    pd.DataFrame({"left": ["a1"], "right": ["b1"]}).to_parquet(path)
    with pytest.raises(ValueError, match=r"data.pairs lacks \['label'\]"):
        load_pairs(InputConfig(path=str(path)))
    pd.DataFrame({"left": ["a1"], "right": ["b1"], "label": [1]}).to_parquet(path)
    with pytest.raises(ValueError, match="data.pairs has no split column"):
        load_pairs(InputConfig(path=str(path)))
    pd.DataFrame(
        {
            "left": ["tv x", "tv x", "cam y", "tv x", "cam y"],
            "right": ["TV X", "CAM Y", "CAM Y", "TV X", "TV X"],
            "label": [1, 0, 1, 1, 0],
            "split": ["test", "test", "test", "valid", "train"],
        }
    ).to_parquet(path)
    cfg = EvaluateConfig.model_validate(
        {
            "data": {"pairs": {"path": str(path)}},
            "models": [{"name": "b", "kind": "bm25"}],
            "protocol": {"task": "retrieval", "candidates": "full"},
        }
    )
    prep = prepare(cfg)  # each left text with a positive pair -> its right ids (ids default to the texts)
    assert list(prep.test.query_ids) == ["cam y", "tv x"] and prep.test.targets == [["CAM Y"], ["TV X"]]
    assert list(prep.valid.query_ids) == ["tv x"] and sorted(prep.test.catalog) == ["CAM Y", "TV X"]
    assert prep.counts == {"right_products": 2, "test_queries": 2, "valid_queries": 1}
    assert prep.train.pairs["left"].tolist() == ["cam y"] and prep.train.items["title"].tolist() == [
        "TV X",
        "CAM Y",
    ]


def test_every_protocol_task_has_a_runner():
    assert set(RUNNERS) == set(get_args(ProtocolConfig.model_fields["task"].annotation))
    assert (
        RUNNERS["recommendation"] is RUNNERS["retrieval"] is run_ranking
        and RUNNERS["matching"] is run_matching
    )


def test_package_exports_are_listed_and_resolve():
    import recsys.evaluation as E

    assert E.__all__ == sorted(E._EXPORTS)
    assert [getattr(E, n).__name__ for n in E.__all__] == E.__all__
