"""Bootstrap CI coverage, paired tests under the null and under a real difference, k-fold folds."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from recsys.evaluation.classification import f1_bootstrap_ci
from recsys.evaluation.kfold import user_folds
from recsys.evaluation.stats import (
    bootstrap_ci,
    compare,
    paired_bootstrap_test,
    paired_tests,
    paired_ttest,
    permutation_test,
)


def test_bootstrap_ci_covers_true_mean_about_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    for rep in range(200):
        x = rng.binomial(1, 0.3, size=300).astype(float)  # like per-user hit@10
        lo, hi = bootstrap_ci(x, n_resamples=400, seed=rep)
        hits += lo <= 0.3 <= hi
    assert 0.89 <= hits / 200 <= 0.99


def test_pvalues_uniform_under_null_and_small_under_difference():
    rng = np.random.default_rng(1)
    p_t, p_perm = [], []
    for rep in range(150):
        a, b = rng.normal(size=120), rng.normal(size=120)
        p_t.append(paired_ttest(a, b))
        p_perm.append(permutation_test(a, b, n_resamples=300, seed=rep))
    assert sps.kstest(p_t, "uniform").pvalue > 0.01
    assert sps.kstest(p_perm, "uniform").pvalue > 0.01
    assert 0.02 <= np.mean(np.array(p_t) < 0.05) <= 0.1
    a = rng.normal(size=400)
    b = a - 0.3 + 0.5 * rng.normal(size=400)
    assert paired_ttest(a, b) < 1e-6
    assert permutation_test(a, b, n_resamples=2000) < 0.001
    assert paired_bootstrap_test(a, b, n_resamples=2000) < 0.001
    c = compare(a, b, n_resamples=1000)
    assert c["diff_ci_low"] > 0 and c["diff"] > 0 and c["n"] == 400


def test_user_folds_balanced_and_stable():
    users = [f"u{i}" for i in range(103)]
    f = user_folds(users, 5, seed=0)
    assert sorted(np.bincount(f).tolist()) == [20, 20, 21, 21, 21]
    f2 = user_folds(users[::-1], 5, seed=0)[::-1]
    assert (f == f2).all()


def test_paired_tests_compare_every_model_with_the_reference_only():
    a, b, ref = np.array([1.0, 0.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0, 0.0]), np.array([0.5, 0.5, 0.5, 0.5])
    rows = paired_tests({"a": a, "ref": ref, "b": b}, "ref", "ndcg@10", n_resamples=200, seed=3)
    assert [(r["model"], r["vs"], r["metric"]) for r in rows] == [
        ("a", "ref", "ndcg@10"),
        ("b", "ref", "ndcg@10"),
    ]
    assert rows[0]["diff"] == 0.25 and rows[1]["diff"] == -0.25 and rows[0]["n"] == 4
    assert rows[1] == {
        "model": "b",
        "vs": "ref",
        "metric": "ndcg@10",
        **compare(b, ref, n_resamples=200, seed=3),
    }


def test_f1_bootstrap_ci_of_perfect_and_of_wrong_predictions():
    labels = np.array([1, 0, 1, 0, 1])
    assert f1_bootstrap_ci(labels.astype(float), labels, 0.5, 100, 0) == [1.0, 1.0]  # every resample: F1 = 1
    assert f1_bootstrap_ci(1.0 - labels, labels, 0.5, 100, 0) == [
        0.0,
        0.0,
    ]  # no true positive in any resample
