"""Uncertainty of reported metrics: bootstrap confidence intervals and paired significance tests.

All functions take per-query metric values (one number per user/query, as in the per-user
metrics Parquet). Paired tests need both models evaluated on the same queries in the same order.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np


def bootstrap_ci(
    values: np.ndarray, *, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-query ``values`` (NaNs ignored)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, 200):  # bounded memory: 200 x Q indices at a time
        stop = min(start + 200, n_resamples)
        idx = rng.integers(0, len(v), size=(stop - start, len(v)))
        means[start:stop] = v[idx].mean(1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _paired(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"paired test: the two models were scored on different query sets ({a.shape} vs {b.shape}); "
            "evaluate both on the same EvalSet"
        )
    d = a - b
    return cast(np.ndarray, d[~np.isnan(d)])


def paired_ttest(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test p-value of mean(a) == mean(b)."""
    from scipy import stats  # lazy: scipy is slow to import and only the t-test needs it

    d = _paired(a, b)
    if len(d) < 2 or np.allclose(d, d[0]):
        return 1.0 if len(d) == 0 or d[0] == 0 else 0.0
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def permutation_test(a: np.ndarray, b: np.ndarray, *, n_resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided paired randomization (sign-flip) test p-value, with the +1 correction."""
    d = _paired(a, b)
    if len(d) == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    observed = abs(d.mean())
    extreme = 0
    for start in range(0, n_resamples, 500):
        m = min(500, n_resamples - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(m, len(d)))
        extreme += int((np.abs((signs * d).mean(1)) >= observed - 1e-12).sum())
    return (extreme + 1) / (n_resamples + 1)


def paired_bootstrap_test(a: np.ndarray, b: np.ndarray, *, n_resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided paired bootstrap p-value (resampled mean difference shifted to the null)."""
    d = _paired(a, b)
    if len(d) == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    observed = d.mean()
    centered = d - observed
    extreme = 0
    for start in range(0, n_resamples, 500):
        m = min(500, n_resamples - start)
        idx = rng.integers(0, len(d), size=(m, len(d)))
        extreme += int((np.abs(centered[idx].mean(1)) >= abs(observed) - 1e-12).sum())
    return (extreme + 1) / (n_resamples + 1)


def compare(a: np.ndarray, b: np.ndarray, *, n_resamples: int = 10000, seed: int = 0) -> dict[str, float]:
    """Mean difference a - b with its bootstrap CI and the three paired p-values."""
    d = _paired(a, b)
    lo, hi = bootstrap_ci(d, n_resamples=min(n_resamples, 2000), seed=seed)
    return {
        "mean_a": float(np.nanmean(a)),
        "mean_b": float(np.nanmean(b)),
        "diff": float(d.mean()) if len(d) else 0.0,
        "diff_ci_low": lo,
        "diff_ci_high": hi,
        "n": int(len(d)),
        "p_ttest": paired_ttest(a, b),
        "p_permutation": permutation_test(a, b, n_resamples=n_resamples, seed=seed),
        "p_bootstrap": paired_bootstrap_test(a, b, n_resamples=n_resamples, seed=seed),
    }


def paired_tests(
    per_query: dict[str, np.ndarray], reference: str, metric: str, *, n_resamples: int = 10000, seed: int = 0
) -> list[dict[str, Any]]:
    """:func:`compare` of every model's per-query ``metric`` values against ``reference``'s, one row each."""
    out = []
    for name, values in per_query.items():
        if name == reference:
            continue
        c = compare(values, per_query[reference], n_resamples=n_resamples, seed=seed)
        out.append({"model": name, "vs": reference, "metric": metric, **c})
    return out
