"""Position-bias (examination propensity) estimation from click logs, with bootstrap CIs.

Both estimators assume the position-based model ``P(click at p) = theta[p] * gamma(query, doc)`` and
report ``theta`` relative to the first position (``theta[0] = 1``: only ratios are identified).

- :func:`intervention`: logs of a randomised top-k shuffle (``shuffle_topk`` policy). The shuffle makes
  relevance independent of position, so ``CTR[p] / CTR[0] = theta[p] / theta[0]`` (Joachims et al. 2017).
- :func:`regression_em`: ordinary logs (any policy), EM over the latent examination / relevance of each
  impression (Wang et al., WSDM 2018). ``relevance_model="pair"`` estimates ``gamma`` per (query, doc)
  (needs each pair seen at several positions); ``"regression"`` fits ``gamma = sigmoid(x . beta)`` on the
  candidates' features in the M-step (the paper's regression-EM, with a logistic regression in place of
  its GBDT), which generalises across pairs.

CIs: Poisson bootstrap over sessions (each session's impressions keep together), percentile intervals.
Impressions table columns: ``session_id``, ``query_id``, ``item_id``, ``position`` (0-based), ``click``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

EPS = 1e-6


@dataclass(frozen=True)
class PositionBias:
    """Per-position examination propensities relative to position 1, with a bootstrap CI."""

    estimator: str
    propensity: list[float]
    ci_low: list[float]
    ci_high: list[float]
    counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "positions": list(range(1, len(self.propensity) + 1)),
            "propensity": self.propensity,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "normalised_to": "position 1 (theta[0] = 1)",
            "counts": self.counts,
        }


def check_impressions(imp: pd.DataFrame, need: tuple[str, ...]) -> None:
    """A clear error for a log that cannot support the estimate (missing columns, null positions)."""
    missing = [c for c in need if c not in imp.columns]
    if missing:
        raise ValueError(
            f"impressions lack column(s) {missing}; the logs need {list(need)} "
            "(synth mode: click_log writes them; Serve feedback: log `position` with every impression)"
        )
    if "position" in need and imp["position"].isna().any():
        raise ValueError(
            f"{int(imp['position'].isna().sum())} impressions have no position; position-bias estimates need "
            "the position of every shown item (drop them upstream or fix the logger)"
        )


def _session_matrix(imp: pd.DataFrame, depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(session index per impression, clicks [S, depth], shown [S, depth]) for positions < depth."""
    sess = pd.factorize(imp["session_id"])[0]
    pos = imp["position"].to_numpy(np.int64)
    keep = pos < depth
    clicks = np.zeros((sess.max() + 1, depth))
    shown = np.zeros_like(clicks)
    np.add.at(clicks, (sess[keep], pos[keep]), imp["click"].to_numpy(np.float64)[keep])
    np.add.at(shown, (sess[keep], pos[keep]), 1.0)
    return sess, clicks, shown


def _poisson_weights(n: int, b: int, rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(1.0, size=(b, n)).astype(np.float64)


def intervention(
    imp: pd.DataFrame, depth: int, *, n_bootstrap: int = 200, confidence: float = 0.95, seed: int = 0
) -> PositionBias:
    """Examination ratios from a top-k shuffle's logs (only positions inside the shuffle are valid)."""
    check_impressions(imp, ("session_id", "position", "click"))
    _, clicks, shown = _session_matrix(imp, depth)
    if (shown.sum(0) == 0).any():
        raise ValueError(f"no impressions at position(s) {np.nonzero(shown.sum(0) == 0)[0] + 1}; lower depth")

    def ratio(c: np.ndarray, s: np.ndarray) -> np.ndarray:
        ctr = c / np.maximum(s, EPS)
        return np.asarray(ctr / np.maximum(ctr[..., :1], EPS))

    est = ratio(clicks.sum(0), shown.sum(0))
    rng = np.random.default_rng(seed)
    boots = []
    for start in range(0, n_bootstrap, 50):
        w = _poisson_weights(len(clicks), min(50, n_bootstrap - start), rng)
        boots.append(ratio(w @ clicks, w @ shown))
    lo, hi = np.quantile(np.concatenate(boots), [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    return PositionBias(
        "intervention",
        est.tolist(),
        lo.tolist(),
        hi.tolist(),
        {"impressions": int(shown.sum()), "sessions": len(clicks), "clicks": int(clicks.sum())},
    )


@dataclass(frozen=True)
class _Cells:
    """Impressions aggregated by (pair, position): the EM only needs the counts of each cell."""

    pos: np.ndarray  # [C] position of the cell
    pair: np.ndarray  # [C] (query, doc) index of the cell
    x: np.ndarray | None  # [P, F+1] features of each pair (+ intercept) for the regression model


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, n: np.ndarray, beta: np.ndarray, steps: int = 1
) -> np.ndarray:
    """Binomial logistic regression (soft successes ``y`` of ``n`` trials per row) by Newton steps."""
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ beta)))
        grad = x.T @ (y - n * p)
        hess = (x * (n * p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(x.shape[1])
        beta = beta + np.linalg.solve(hess, grad)
    return beta


def _em(
    c: _Cells,
    n_click: np.ndarray,
    n_skip: np.ndarray,
    depth: int,
    model: str,
    iters: int,
    theta: np.ndarray,
    gamma: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """EM for the position-based model over cells with (weighted) click / no-click counts."""
    n_pairs = len(gamma)
    total = n_click + n_skip
    pos_w = np.maximum(np.bincount(c.pos, total, minlength=depth), EPS)
    pair_w = np.bincount(c.pair, total, minlength=n_pairs)
    beta = np.zeros(c.x.shape[1]) if c.x is not None else None
    for _ in range(iters):
        t, g = theta[c.pos], gamma[c.pair]
        denom = np.maximum(1 - t * g, EPS)
        e_sum = n_click + n_skip * t * (1 - g) / denom  # expected examined, E-step
        r_sum = n_click + n_skip * (1 - t) * g / denom  # expected relevant
        theta = np.clip(np.bincount(c.pos, e_sum, minlength=depth) / pos_w, EPS, 1 - EPS)
        r_pair = np.bincount(c.pair, r_sum, minlength=n_pairs)
        if model == "pair":
            gamma = np.where(pair_w > 0, np.clip(r_pair / np.maximum(pair_w, EPS), EPS, 1 - EPS), gamma)
        else:
            assert c.x is not None and beta is not None
            beta = _fit_logistic(c.x, r_pair, pair_w, beta)
            gamma = np.clip(1 / (1 + np.exp(-(c.x @ beta))), EPS, 1 - EPS)
    return theta, gamma


def regression_em(
    imp: pd.DataFrame,
    depth: int,
    *,
    relevance_model: Literal["pair", "regression"] = "regression",
    features: pd.DataFrame | None = None,
    iters: int = 300,
    n_bootstrap: int = 30,
    confidence: float = 0.95,
    seed: int = 0,
) -> PositionBias:
    """Regression-EM (Wang et al. 2018) on ordinary logs. ``features`` (``query_id``, ``item_id``,
    ``f0..``) is needed for ``relevance_model="regression"``. Bootstrap fits warm-start from the full fit."""
    check_impressions(imp, ("session_id", "query_id", "item_id", "position", "click"))
    imp = imp[imp["position"] < depth]
    key = imp["query_id"].astype(str) + "\x1f" + imp["item_id"].astype(str)
    pair, uniques = pd.factorize(key)
    x = None
    if relevance_model == "regression":
        if features is None:
            raise ValueError("relevance_model: regression needs the candidates' features (candidates.path)")
        from recsys.causal.clicklog import feature_columns

        fkey = features["query_id"].astype(str) + "\x1f" + features["item_id"].astype(str)
        fx = features.set_index(fkey)[feature_columns(features)]
        missing = ~pd.Index(uniques).isin(fx.index)
        if missing.any():
            raise ValueError(
                f"{int(missing.sum())} logged (query, item) pairs have no features in candidates"
            )
        x = np.hstack([fx.loc[uniques].to_numpy(np.float64), np.ones((len(uniques), 1))])
    pos = imp["position"].to_numpy(np.int64)
    click = imp["click"].to_numpy(np.float64)
    cell, cell_key = pd.factorize(pair.astype(np.int64) * depth + pos)
    cells = _Cells((cell_key % depth).astype(np.int64), (cell_key // depth).astype(np.int64), x)
    n_cells = len(cell_key)

    def counts(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.bincount(cell, w * click, minlength=n_cells), np.bincount(
            cell, w * (1 - click), minlength=n_cells
        )

    theta0 = np.full(depth, 0.5)
    gamma0 = np.full(len(uniques), float(np.clip(click.mean() * 2, 0.01, 0.99)))
    theta, gamma = _em(cells, *counts(np.ones(len(pos))), depth, relevance_model, iters, theta0, gamma0)
    est = theta / theta[0]
    rng = np.random.default_rng(seed)
    sess = pd.factorize(imp["session_id"])[0]
    n_sess = int(sess.max()) + 1
    boots = []
    for _ in range(n_bootstrap):
        w = rng.poisson(1.0, n_sess).astype(np.float64)[sess]
        t, _g = _em(cells, *counts(w), depth, relevance_model, iters // 2, theta, gamma)
        boots.append(t / t[0])
    lo, hi = np.quantile(np.array(boots or [est]), [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    return PositionBias(
        f"regression_em[{relevance_model}]",
        est.tolist(),
        lo.tolist(),
        hi.tolist(),
        {"impressions": len(pos), "sessions": n_sess, "clicks": int(click.sum()), "pairs": len(uniques)},
    )


def error_vs_truth(est: PositionBias, truth: list[float]) -> dict[str, float]:
    """Mean absolute relative error and CI coverage against the true curve (normalised to position 1)."""
    t = np.asarray(truth[: len(est.propensity)]) / truth[0]
    e = np.asarray(est.propensity)
    cover = (np.asarray(est.ci_low) <= t + 1e-12) & (t - 1e-12 <= np.asarray(est.ci_high))
    return {
        "mean_abs_rel_error": float(np.mean(np.abs(e - t) / t)),
        "max_abs_rel_error": float(np.max(np.abs(e - t) / t)),
        "ci_coverage": float(cover.mean()),
    }
