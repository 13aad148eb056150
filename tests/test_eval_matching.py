"""Product matching: the pair-feature matcher (hand-checked features, a slice of real Abt-Buy), the learned
fusion of matchers, and the evaluate job's matching protocol with both, end to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recsys.baselines.pair_features import (
    FEATURE_NAMES,
    PairFeatureMatcher,
    PairFeaturizer,
    attributes,
    product_codes,
)
from recsys.config import load_config
from recsys.config.loader import ConfigError
from recsys.ensemble.stacking import StackedMatcher
from recsys.jobs_registry import get_job


def test_attributes_and_product_codes():
    assert attributes("name: sony bravia kdl-40v4100; description: 40' lcd; price: 999.0") == {
        "name": "sony bravia kdl-40v4100",
        "description": "40' lcd",
        "price": "999.0",
    }
    assert attributes("plain offer text") == {"text": "plain offer text"}
    assert attributes("Sony TV: 40 inch") == {
        "text": "Sony TV: 40 inch"
    }  # a colon in free text is no attribute
    # separators removed, adjacent words joined when that makes a code; pure words and short tokens are not codes
    assert product_codes("Sony KDL-40V4100 40 inch") == {
        "kdl40v4100",
        "sonykdl40v4100",
        "kdl40v410040",
        "40inch",
    }
    assert {"davis50", "davis50b"} <= product_codes("sony dav-is50 / b") and "davis50" in product_codes(
        "sony dav is50"
    )
    assert product_codes("black hdtv 42 in") == {"hdtv42"} and product_codes("sony tv 40 in") == set()


def test_featurizer_hand_checked_pair():
    left = "name: sony bravia 40' lcd kdl40v4100; price: 1000"
    right = "name: sony kdl-40v4100 bravia hdtv; description: 40 inch; price: 800"
    other = "name: samsung ln40a650 lcd hdtv"
    f = PairFeaturizer().fit([left, right, other])
    x = f.transform([left, left], [right, other])
    assert x.shape == (2, len(FEATURE_NAMES))
    row = dict(zip(FEATURE_NAMES, x[0]))
    assert row["code_match_name"] == 1.0 and row["code_conflict"] == 0.0
    # name words: {sony, bravia, 40, lcd, kdl40v4100} vs {sony, kdl-40v4100, bravia, hdtv}: 2 shared of 7
    assert row["name_token_jaccard"] == pytest.approx(2 / 7) and row["name_token_overlap"] == pytest.approx(
        2 / 4
    )
    assert row["price_relative_diff"] == pytest.approx(0.2)
    assert row["left_name_tokens"] == 5 and row["right_name_tokens"] == 4
    mismatch = dict(zip(FEATURE_NAMES, x[1]))
    assert mismatch["code_match_name"] == 0.0 and mismatch["code_conflict"] == 1.0
    assert math.isnan(mismatch["price_relative_diff"])  # the other offer has no price
    assert 0 < mismatch["char_tfidf_cosine"] < row["char_tfidf_cosine"] <= 1


def _ditto(path, n):
    from recsys.data.presets import ditto_text

    rows = [ln.split("\t") for ln in path.read_text().splitlines()[:n]]
    return (
        [ditto_text(r[0]) for r in rows],
        [ditto_text(r[1]) for r in rows],
        np.array([int(r[2]) for r in rows]),
    )


@pytest.mark.slow
def test_pair_feature_matcher_learns_abt_buy_slice(shared_data):
    from recsys.evaluation.classification import best_threshold

    d = shared_data / "product-matching" / "abt-buy"
    train, valid = _ditto(d / "train.txt", 2000), _ditto(d / "valid.txt", 600)
    m = PairFeatureMatcher(seed=0).fit(*train)
    scores = m.score(*valid[:2])
    _, f1 = best_threshold(scores, valid[2])
    assert f1 > 0.7  # product codes separate most Abt-Buy pairs (full data: 0.87 on valid)
    assert np.array_equal(scores, PairFeatureMatcher(seed=0).fit(*train).score(*valid[:2]))  # deterministic
    with pytest.raises(ValueError, match="both labels"):
        PairFeatureMatcher().fit(train[0][:3], train[1][:3], [0, 0, 0])
    with pytest.raises(ValueError, match="model 'forest' is unknown"):
        PairFeatureMatcher(model="forest")


def test_stacked_matcher_beats_its_members_and_needs_both_labels():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.15).astype(int)
    a = y + rng.normal(0, 0.8, len(y))  # two independent noisy views of the label
    b = 1 / (1 + np.exp(-(3 * y - 1.5 + rng.normal(0, 1.5, len(y)))))  # a probability: enters as log-odds
    fit_rows, test_rows = slice(0, 1000), slice(1000, None)
    stack = StackedMatcher(folds=5, seed=0).fit(np.column_stack([a, b])[fit_rows], y[fit_rows])
    assert all(w > 0 for w in stack.coefficients)

    def f1(scores, t):
        pred, yt = scores >= t, y[test_rows].astype(bool)
        return 2 * (pred & yt).sum() / (pred.sum() + yt.sum())

    from recsys.evaluation.classification import best_threshold

    members = [f1(s[test_rows], best_threshold(s[fit_rows], y[fit_rows])[0]) for s in (a, b)]
    fused = f1(stack.score(np.column_stack([a, b])[test_rows]), stack.threshold)
    assert fused > max(members)
    with pytest.raises(ValueError, match="needs >= 5 pairs of each label"):
        StackedMatcher(folds=5).fit(np.ones((10, 2)), np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0]))


@pytest.mark.slow
def test_matching_job_with_pair_features_and_learned_fusion(
    ray_session, tmp_path, shared_data, tiny_bert_dir
):
    from recsys.cli.entry import run_parsed
    from recsys.data.presets import ditto_text

    rows = []
    for split, n in (("train", 1500), ("valid", 400), ("test", 300)):
        for ln in (
            (shared_data / "product-matching" / "abt-buy" / f"{split}.txt").read_text().splitlines()[:n]
        ):
            left, right, label = ln.split("\t")
            rows.append(
                {"left": ditto_text(left), "right": ditto_text(right), "label": int(label), "split": split}
            )
    pd.DataFrame(rows).to_parquet(tmp_path / "pairs.parquet")
    spec = get_job("evaluate")
    cfg = load_config(
        spec.config_cls,
        None,
        data={
            "output_dir": str(tmp_path / "out"),
            "data": {"pairs": {"path": str(tmp_path / "pairs.parquet")}},
            "protocol": {"task": "matching"},
            "bootstrap": 50,
            "significance_resamples": 200,
            "models": [
                {"name": "zeroshot", "kind": "zeroshot", "params": {"model": str(tiny_bert_dir)}},
                {"name": "features", "kind": "pair_features", "params": {"max_iter": 100}},
            ],
            "ensembles": [
                {"name": "fused", "members": ["zeroshot", "features"], "method": "learned", "folds": 3}
            ],
        },
    )
    report = run_parsed(spec, cfg)
    lb = {r["model"]: r for r in report["leaderboard"]}
    assert set(lb) == {"zeroshot", "features", "fused"}
    assert lb["features"]["f1"] > lb["zeroshot"]["f1"]  # a random tiny encoder vs code features
    info = lb["fused"]["info"]
    assert info["folds"] == 3 and set(info["weights"]) == {"zeroshot", "features"}
    assert all(r["n_pairs"] == 300 and len(r["ci95"]["f1"]) == 2 for r in lb.values())
    assert {s["model"] for s in report["significance"]} >= {"zeroshot", "fused"} - {
        report["summary"]["reference"]
    }

    # retrieval on the same pairs: the matcher ranks every right-hand product, alone and as a re-ranker
    cfg = load_config(
        spec.config_cls,
        None,
        data={
            "output_dir": str(tmp_path / "r"),
            "data": {"pairs": {"path": str(tmp_path / "pairs.parquet")}},
            "protocol": {"task": "retrieval", "candidates": "full"},
            "metrics": ["recall@10", "mrr"],
            "bootstrap": 0,
            "significance_resamples": 200,
            "models": [
                {"name": "bm25", "kind": "bm25"},
                {"name": "features", "kind": "pair_features", "params": {"max_iter": 100}},
            ],
            "ensembles": [
                {"name": "bm25+features", "members": ["bm25", "features"], "method": "rerank", "top_n": 10}
            ],
        },
    )
    lb = {r["model"]: r for r in run_parsed(spec, cfg)["leaderboard"]}
    assert lb["features"]["info"]["train_pairs"] == 1500 and lb["features"]["mrr"] > 0.5
    assert lb["bm25+features"]["recall@10"] == pytest.approx(
        lb["bm25"]["recall@10"]
    )  # re-ranks the top 10 only


def test_matching_config_errors_name_the_fix():
    spec = get_job("evaluate")
    pairs = {"pairs": {"path": __file__}}
    with pytest.raises(
        ConfigError,
        match=r"kind pair_features scores offer pairs by their texts; use it with protocol.task: matching or retrieval",
    ):
        load_config(
            spec.config_cls,
            None,
            data={
                "data": {"events": {"path": __file__}},
                "protocol": {"task": "recommendation"},
                "models": [{"name": "f", "kind": "pair_features"}],
            },
        )
    with pytest.raises(
        ConfigError, match=r"ensembles \['e'\]: matching fuses pair scores with method: learned"
    ):
        load_config(
            spec.config_cls,
            None,
            data={
                "data": pairs,
                "protocol": {"task": "matching"},
                "models": [{"name": "f", "kind": "pair_features"}, {"name": "z", "kind": "zeroshot"}],
                "ensembles": [{"name": "e", "members": ["f", "z"], "method": "rrf"}],
            },
        )
