"""Unbiased learning to rank from click logs, studied against a known truth (synthetic PBM logs).

A ranker over the candidates' features (``f0..``; linear, or a one-hidden-layer MLP with ``hidden > 0``) is
trained on the logged sessions of the training queries (each session = one list of ``depth`` shown items,
its clicks and positions) with:

- ``naive``: the click softmax loss (``ipw_listwise`` with every propensity 1): learns the logger's position bias;
- ``ips``: ``ipw_listwise`` with the examination propensity of each slot's position (``propensities``: the
  true curve, or one estimated by ``recsys run propensity``);
- ``dla``: the Dual Learning Algorithm (``recsys/losses/dla.py``): a per-position propensity model learned jointly;
- ``oracle``: the softmax loss with the shown items' *true relevance* as targets (no position bias).

Evaluation: NDCG@k of each held-out query's full candidate list ranked by the model, gains = true relevance.
Full-batch Adam on CPU (torch); seconds per method at the tiny scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from recsys.causal import clicklog
from recsys.causal.config import UltrConfig
from recsys.losses import registry as losses
from recsys.losses.dla import DlaLists, PositionPropensity
from recsys.losses.ipw_listwise import ClickLists, IpwParams, click_softmax_loss

METHODS: tuple[str, ...] = ("naive", "ips", "dla", "oracle")


@dataclass(frozen=True)
class Lists:
    """Training lists: ``x`` [S, K, F] features of the shown items, ``clicks``, ``relevance`` [S, K], ``positions``
    [S, K] (long, 0-based)."""

    x: torch.Tensor
    clicks: torch.Tensor
    relevance: torch.Tensor
    positions: torch.Tensor


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 300
    lr: float = 0.05
    hidden: int = 0  # 0 = linear scorer
    propensity_clip: float = 0.01
    seed: int = 0


def candidate_arrays(
    cands: pd.DataFrame,
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, tuple[int, int]]]:
    """(query ids, features [Q, n, F], relevance [Q, n], item_id -> (query row, candidate column))."""
    feats = clicklog.feature_columns(cands)
    queries = list(pd.unique(cands["query_id"]))
    qrow = {q: i for i, q in enumerate(queries)}
    counts = cands.groupby("query_id", sort=False).size()
    if counts.nunique() != 1:
        raise ValueError("ultr: every query needs the same number of candidates (a synth click log has them)")
    n = int(counts.iloc[0])
    c = cands.assign(_q=cands["query_id"].map(qrow)).sort_values("_q", kind="stable")
    x = c[feats].to_numpy(np.float32).reshape(len(queries), n, len(feats))
    rel = c["relevance"].to_numpy(np.float64).reshape(len(queries), n)
    col = np.tile(np.arange(n), len(queries))
    where = dict(zip(c["item_id"].astype(str), zip(c["_q"].to_numpy().tolist(), col.tolist())))
    return queries, x, rel, where


def session_lists(
    imp: pd.DataFrame, x: np.ndarray, rel: np.ndarray, where: dict[str, tuple[int, int]], depth: int
) -> tuple[Lists, np.ndarray]:
    """Impressions (``session_id, item_id, position, click``) -> (lists [S, depth], query row per session)."""
    imp = imp[imp["position"] < depth]
    sess, _ = pd.factorize(imp["session_id"])
    s = int(sess.max()) + 1
    pos = imp["position"].to_numpy(np.int64)
    qc = np.array([where[i] for i in imp["item_id"].astype(str)])
    q_of = np.zeros(s, np.int64)
    q_of[sess] = qc[:, 0]
    idx = np.zeros((s, depth), np.int64)
    clicks = np.zeros((s, depth), np.float32)
    idx[sess, pos] = qc[:, 1]
    clicks[sess, pos] = imp["click"].to_numpy(np.float32)
    xs = x[q_of[:, None], idx]  # [S, K, F]
    rs = rel[q_of[:, None], idx]
    positions = np.broadcast_to(np.arange(depth), (s, depth)).copy()
    return (
        Lists(
            torch.from_numpy(xs),
            torch.from_numpy(clicks),
            torch.from_numpy(rs.astype(np.float32)),
            torch.from_numpy(positions),
        ),
        q_of,
    )


def scorer(features: int, hidden: int) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(features, 1)
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def train(
    method: str, lists: Lists, theta: np.ndarray, s: TrainSettings
) -> tuple[nn.Module, list[float] | None]:
    """One ranker trained by ``method`` (and DLA's learned propensities, relative to position 1)."""
    if method not in METHODS:
        raise ValueError(f"ultr method {method!r} is unknown; use {METHODS}")
    torch.manual_seed(s.seed)
    model = scorer(lists.x.shape[-1], s.hidden)
    params = IpwParams(propensity_clip=s.propensity_clip)
    prop_model = PositionPropensity(lists.positions.shape[1]) if method == "dla" else None
    opt = torch.optim.Adam(
        list(model.parameters()) + (list(prop_model.parameters()) if prop_model else []), lr=s.lr
    )
    mask = torch.ones_like(lists.clicks)
    theta_t = torch.as_tensor(theta, dtype=torch.float32)[lists.positions]
    for _ in range(s.steps):
        opt.zero_grad()
        scores = model(lists.x).squeeze(-1)  # [S, K]
        if method == "naive":
            loss = losses.get("ipw_listwise").compute(
                ClickLists(scores, lists.clicks, torch.ones_like(mask), mask), params
            )
        elif method == "ips":
            loss = losses.get("ipw_listwise").compute(ClickLists(scores, lists.clicks, theta_t, mask), params)
        elif method == "dla":
            assert prop_model is not None
            loss = losses.get("dla").compute(
                DlaLists(scores, lists.clicks, prop_model(lists.positions), mask), params
            )
        else:
            loss = click_softmax_loss(scores, lists.relevance, mask)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
        opt.step()
    return model, (prop_model.propensities() if prop_model else None)


def ndcg_at(scores: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    """Per query NDCG@k (linear gains = true relevance) of ``scores`` [Q, n] against ``rel`` [Q, n]."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    top = np.take_along_axis(rel, np.argsort(-scores, axis=1, kind="stable")[:, :k], axis=1)
    ideal = -np.sort(-rel, axis=1)[:, :k]
    return np.asarray((top * disc).sum(1) / (ideal * disc).sum(1))


def evaluate(model: nn.Module, x: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    with torch.no_grad():
        s = model(torch.from_numpy(x)).squeeze(-1).numpy()
    return ndcg_at(s, rel, k)


def run_seed(
    log: clicklog.ClickLog,
    methods: list[str],
    settings: TrainSettings,
    test_share: float,
    k: int,
    theta: np.ndarray | None = None,
) -> dict[str, Any]:
    """Train every method on the training queries' sessions; per-query NDCG@k on the held-out queries.
    ``theta``: IPS's examination curve (default: the log's true one)."""
    queries, x, rel, where = candidate_arrays(log.candidates)
    true_theta = np.asarray(log.truth["examination"], dtype=np.float64)
    theta = true_theta if theta is None else theta
    if len(theta) < len(true_theta):
        raise ValueError(f"propensities has {len(theta)} positions < the log's depth {len(true_theta)}")
    rng = np.random.default_rng(settings.seed)
    test = rng.random(len(queries)) < test_share
    lists, q_of = session_lists(log.impressions, x, rel, where, len(true_theta))
    keep = torch.from_numpy(~test[q_of])
    train_lists = Lists(lists.x[keep], lists.clicks[keep], lists.relevance[keep], lists.positions[keep])
    out: dict[str, Any] = {"ndcg": {}, "train_sessions": int(keep.sum()), "test_queries": int(test.sum())}
    for m in methods:
        model, learned = train(m, train_lists, theta, settings)
        out["ndcg"][m] = evaluate(model, x[test], rel[test], k)
        if learned is not None:
            out["dla_propensities"] = learned
    out["true_propensities"] = true_theta.tolist()
    return out


def summarize(per_seed: list[dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    """Mean NDCG per method, the share of the naive -> oracle gap each closes, paired tests vs naive (queries
    of every seed pooled: Wilcoxon signed-rank and paired t)."""
    from scipy import stats

    pooled = {m: np.concatenate([r["ndcg"][m] for r in per_seed]) for m in methods}
    mean = {m: float(v.mean()) for m, v in pooled.items()}
    out: dict[str, Any] = {"ndcg": mean, "queries": int(len(pooled[methods[0]]))}
    if "naive" in mean and "oracle" in mean:
        gap = mean["oracle"] - mean["naive"]
        out["gap_closed"] = {m: float((mean[m] - mean["naive"]) / gap) if gap > 0 else None for m in methods}
        out["gap_closed_per_seed"] = {
            m: [
                float(
                    (r["ndcg"][m].mean() - r["ndcg"]["naive"].mean())
                    / (r["ndcg"]["oracle"].mean() - r["ndcg"]["naive"].mean())
                )
                for r in per_seed
            ]
            for m in methods
        }
    if "naive" in pooled:
        out["paired_vs_naive"] = {
            m: {
                "mean_diff": float((pooled[m] - pooled["naive"]).mean()),
                "wilcoxon_p": float(stats.wilcoxon(pooled[m], pooled["naive"]).pvalue),
                "ttest_p": float(stats.ttest_rel(pooled[m], pooled["naive"]).pvalue),
            }
            for m in methods
            if m != "naive"
        }
    return out


def study(cfg: UltrConfig) -> dict[str, Any]:
    """Every seed's log, every method's per-query NDCG@k; the summary (:func:`summarize`)."""
    import json
    from pathlib import Path

    torch.set_num_threads(cfg.torch_threads)
    losses.load()
    theta = None
    if cfg.propensities is not None:
        theta = np.asarray(json.loads(Path(cfg.propensities).read_text())["examination"], dtype=np.float64)
    per_seed = []
    for s in range(cfg.seed, cfg.seed + cfg.seeds):
        log = clicklog.generate(clicklog.params_from_section(cfg.click_log, s))
        settings = TrainSettings(cfg.steps, cfg.lr, cfg.hidden, cfg.propensity_clip, s)
        per_seed.append(run_seed(log, list(cfg.methods), settings, cfg.test_share, cfg.k, theta))
    summary = summarize(per_seed, list(cfg.methods))
    rows = [
        {
            "seed": cfg.seed + i,
            "ndcg": {m: float(v.mean()) for m, v in r["ndcg"].items()},
            **{k: v for k, v in r.items() if k != "ndcg"},
        }
        for i, r in enumerate(per_seed)
    ]
    return {"summary": summary, "per_seed": rows}
