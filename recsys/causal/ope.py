"""Off-policy evaluation of a candidate ranking from a stochastic logger's click logs.

Position-based (item-position) IPS for rankings (Li et al. 2018; Joachims et al. 2017): the value is the
candidate's expected clicks per shown slot (CTR). For session ``i`` and slot ``k`` let ``e_ik`` be the
candidate's item at ``k``; the logged impression at ``k`` *matches* when the logger showed ``e_ik`` there,
and then carries its click ``c_ik`` and the logger's item-at-position propensity ``p_ik``.
With ``w_ik = min(match_ik / p_ik, clip)``, ``q_ik`` a reward model's expected click of ``e_ik`` at ``k``:

- ``ips   = sum_ik w_ik c_ik / (n K)``
- ``snips = mean_k [ sum_i w_ik c_ik / sum_i w_ik ]`` (self-normalised per position)
- ``dm    = sum_ik q_ik / (n K)``
- ``dr    = sum_ik [q_ik + w_ik (c_ik - q_ik)] / (n K)``
- ``naive = sum_ik match_ik c_ik / sum_ik match_ik`` (replay without weights: biased, shown for contrast)

CIs: Poisson bootstrap over sessions, percentile. The reward model (:func:`pbm_reward_model`) is the
position-based model ``q(query, doc, k) = theta[k] * gamma(query, doc)``, ``gamma`` the pair's clicks over its
examination-weighted impressions, shrunk to the global rate (``prior`` pseudo-impressions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys.causal.propensity import check_impressions

ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dm", "dr", "naive")


@dataclass(frozen=True)
class SlotArrays:
    """Per (session, candidate slot) arrays, all [n, K]: the estimators' whole input."""

    match: np.ndarray  # bool: the logger showed the candidate's item at this slot
    click: np.ndarray  # 0/1 click of the matched impression (0 where no match)
    propensity: np.ndarray  # the matched impression's logged propensity (1 where no match)
    q: np.ndarray  # the reward model's expected click of the candidate's item at this slot


def weights(s: SlotArrays, clip: float | None) -> tuple[np.ndarray, int]:
    """(importance weights [n, K], number of matched slots whose weight was clipped)."""
    w = np.where(s.match, 1.0 / s.propensity, 0.0)
    if clip is None:
        return w, 0
    clipped = int((w > clip).sum())
    return np.minimum(w, clip), clipped


def _values(w: np.ndarray, s: SlotArrays, sw: np.ndarray) -> dict[str, np.ndarray]:
    """Estimates under session weights ``sw`` [B, n] (ones for the point estimate): each -> [B]."""
    k = w.shape[1]
    n = sw.sum(1)
    wc = w * s.click
    out = {
        "ips": sw @ wc.sum(1) / (n * k),
        "dm": sw @ s.q.sum(1) / (n * k),
        "dr": sw @ (s.q + w * (s.click - s.q)).sum(1) / (n * k),
        "naive": (sw @ (s.match * s.click).sum(1)) / np.maximum(sw @ s.match.sum(1), 1e-12),
    }
    den = sw @ w  # [B, K]
    out["snips"] = np.nanmean(np.where(den > 0, (sw @ wc) / np.where(den > 0, den, 1.0), np.nan), axis=1)
    return out


def estimate(
    s: SlotArrays,
    *,
    clip: float | None = None,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Every estimator's value and bootstrap CI, plus the counts of used and clipped slots."""
    w, clipped = weights(s, clip)
    n = len(w)
    point = _values(w, s, np.ones((1, n)))
    rng = np.random.default_rng(seed)
    boots: dict[str, list[np.ndarray]] = {e: [] for e in ESTIMATORS}
    for start in range(0, n_bootstrap, 25):
        sw = rng.poisson(1.0, size=(min(25, n_bootstrap - start), n)).astype(np.float64)
        for e, v in _values(w, s, sw).items():
            boots[e].append(v)
    a = (1 - confidence) / 2
    est = {}
    for e in ESTIMATORS:
        b = np.concatenate(boots[e]) if n_bootstrap else np.array([point[e][0]])
        lo, hi = np.nanquantile(b, [a, 1 - a])
        est[e] = {"value": float(point[e][0]), "ci_low": float(lo), "ci_high": float(hi)}
    return {
        "estimates": est,
        "counts": {
            "sessions": n,
            "slots": int(w.size),
            "matched_slots": int(s.match.sum()),
            "clipped_slots": clipped,
        },
    }


def pbm_reward_model(
    imp: pd.DataFrame, theta: np.ndarray, prior: float = 1.0
) -> tuple[dict[tuple[str, str], float], float]:
    """``gamma`` per (query_id, item_id) = (clicks + prior * rate) / (sum of theta[position] + prior)."""
    t = theta[np.minimum(imp["position"].to_numpy(np.int64), len(theta) - 1)]
    g = pd.DataFrame({"q": imp["query_id"], "i": imp["item_id"], "c": imp["click"], "t": t})
    agg = g.groupby(["q", "i"], sort=False).agg(c=("c", "sum"), t=("t", "sum"))
    rate = float(agg["c"].sum() / max(agg["t"].sum(), 1e-12))
    gamma = (agg["c"] + prior * rate) / (agg["t"] + prior)
    return dict(zip(agg.index, gamma.to_numpy())), rate


def candidate_rankings(scores: pd.DataFrame, depth: int) -> dict[str, list[str]]:
    """``scores`` (``query_id``, ``item_id``, ``score``) -> each query's top ``depth`` items, best first."""
    s = scores.sort_values(["query_id", "score"], ascending=[True, False], kind="stable")
    return {q: list(g["item_id"].head(depth)) for q, g in s.groupby("query_id", sort=False)}


def slot_arrays(
    imp: pd.DataFrame,
    rankings: dict[str, list[str]],
    depth: int,
    theta: np.ndarray,
    gamma: dict[tuple[str, str], float],
    rate: float,
) -> tuple[SlotArrays, dict[str, int]]:
    """Join the logs with the candidate's rankings. Counts: impressions used / excluded (no or non-positive
    propensity, position beyond ``depth``), sessions whose query the candidate does not rank (excluded),
    candidate slots whose (query, item) the logs never showed (reward model falls back to the global rate)."""
    check_impressions(imp, ("session_id", "query_id", "item_id", "position", "click", "propensity"))
    n_in = len(imp)
    prop = imp["propensity"].to_numpy(np.float64)
    bad_prop = ~(prop > 0)  # NaN or <= 0
    deep = imp["position"].to_numpy(np.int64) >= depth
    imp = imp[~bad_prop & ~deep]
    ranked = imp["query_id"].isin(list(rankings))
    sessions_unranked = int(imp.loc[~ranked, "session_id"].nunique())
    imp = imp[ranked]
    sess, sess_ids = pd.factorize(imp["session_id"])
    n = len(sess_ids)
    pos = imp["position"].to_numpy(np.int64)
    query_of = pd.Series(imp["query_id"].to_numpy(), index=sess).groupby(level=0).first().sort_index()
    cand = np.array(
        [(rankings[q] + [""] * depth)[:depth] for q in query_of.to_numpy()], dtype=object
    ).reshape(n, depth)
    match = np.zeros((n, depth), bool)
    click = np.zeros((n, depth))
    propensity = np.ones((n, depth))
    hit = cand[sess, pos] == imp["item_id"].to_numpy(dtype=object)
    match[sess[hit], pos[hit]] = True
    click[sess[hit], pos[hit]] = imp["click"].to_numpy(np.float64)[hit]
    propensity[sess[hit], pos[hit]] = imp["propensity"].to_numpy(np.float64)[hit]
    qv = np.repeat(query_of.to_numpy(), depth).reshape(n, depth)
    g = np.array([gamma.get((q, i), np.nan) for q, i in zip(qv.ravel(), cand.ravel())]).reshape(n, depth)
    unseen = np.isnan(g) & (cand != "")
    g = np.where(np.isnan(g), rate, g)
    q = np.where(cand != "", theta[None, :depth] * g, 0.0)
    counts = {
        "impressions_in": n_in,
        "impressions_used": len(imp),
        "excluded_no_propensity": int(bad_prop.sum()),
        "excluded_beyond_depth": int((deep & ~bad_prop).sum()),
        "excluded_unranked_query": n_in - int(bad_prop.sum()) - int((deep & ~bad_prop).sum()) - len(imp),
        "sessions_unranked_query": sessions_unranked,
        "candidate_slots_never_logged": int(unseen.sum()),
        "candidate_slots_empty": int((cand == "").sum()),
    }
    return SlotArrays(match, click, propensity, q), counts


def evaluate(
    imp: pd.DataFrame,
    scores: pd.DataFrame,
    theta: np.ndarray,
    *,
    depth: int,
    clip: float | None,
    max_excluded_share: float = 0.01,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The whole OPE report of a candidate (``scores``) on logs ``imp`` with examination ``theta``."""
    rankings = candidate_rankings(scores, depth)
    gamma, rate = pbm_reward_model(imp, theta)
    slots, counts = slot_arrays(imp, rankings, depth, theta, gamma, rate)
    excluded = counts["excluded_no_propensity"] + counts["excluded_unranked_query"]
    if excluded > max_excluded_share * max(counts["impressions_in"], 1):
        raise ValueError(
            f"{excluded} of {counts['impressions_in']} impressions cannot be used (no / non-positive propensity: "
            f"{counts['excluded_no_propensity']}, query not ranked by the candidate: "
            f"{counts['excluded_unranked_query']}), above max_excluded_share={max_excluded_share}; log propensities "
            "with a stochastic policy and score every logged query, or raise max_excluded_share"
        )
    out = estimate(slots, clip=clip, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    out["counts"] = {**counts, **out["counts"]}
    out["logged_ctr"] = float(imp.loc[imp["position"] < depth, "click"].mean())
    return out
