"""Synthetic click logs with a known truth: the position-based click model (PBM).

``queries`` queries, each with ``candidates`` documents described by ``features`` standard-normal
features. A document's true relevance (P(click | examined)) is ``sigmoid(a * x.w_true + b)``; position
``p`` (0-based) is examined with ``theta[p] = 1 / (p+1)^decay`` (``recsys.data.synth.examination``, the
events synth's curve); a shown document is clicked with ``theta[p] * relevance``, independently.

The logging ranker scores ``x.w_log`` with ``w_log`` a blend of ``w_true`` and a random direction
(``logger_quality`` = share of the truth), plus per-session Gaussian noise (``session_noise``: the
ranking varies between sessions as a retrained / personalised production ranker's does, which is what
lets regression-EM separate position from relevance in ordinary logs). The candidate ranker scores
``x.w_cand`` with ``candidate_quality``. The logging policy (:mod:`~recsys.causal.policies`) turns the
logger's scores into what is shown and logs each shown item's item-at-position propensity.

Tables (pandas; Parquet under ``<dir>/impressions``, ``<dir>/candidates``, ``<dir>/truth.json``):

- impressions: ``session_id`` (int64), ``user_id``, ``query_id``, ``item_id`` (str), ``position`` (int32,
  0-based), ``click`` (int8), ``policy_id`` (str), ``propensity`` (float64, item-at-position), and the
  synth-only truth ``examination``, ``relevance`` (float64);
- candidates: ``query_id``, ``item_id``, ``f0..f{F-1}`` (float32), ``logger_score``, ``candidate_score``,
  ``relevance`` (float64);
- truth: the examination curve, the logger's and the candidate's expected CTR on the logged sessions
  (clicks per shown slot, exact expectations, not sampled).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.causal.policies import LoggingPolicy, pl_marginals, rank_batch
from recsys.data.synth import examination


@dataclass(frozen=True)
class ClickLogParams:
    """What :func:`generate` draws (every field documented in the job configs' ``SynthClicksConfig``)."""

    sessions: int = 100_000
    queries: int = 1000
    candidates: int = 20
    depth: int = 10
    features: int = 8
    users: int = 10_000
    examination_decay: float = 1.0
    relevance_scale: float = 2.0
    relevance_bias: float = -1.5
    logger_quality: float = 0.5
    candidate_quality: float = 0.85
    session_noise: float = 0.5
    policy: LoggingPolicy = field(default_factory=LoggingPolicy)
    seed: int = 0


@dataclass(frozen=True)
class ClickLog:
    impressions: pd.DataFrame
    candidates: pd.DataFrame
    truth: dict[str, Any]


def _blend(w_true: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    r = rng.normal(size=w_true.shape)
    r -= r @ w_true / (w_true @ w_true) * w_true  # orthogonal to the truth
    r *= np.linalg.norm(w_true) / np.linalg.norm(r)
    return np.asarray(quality * w_true + np.sqrt(max(0.0, 1 - quality**2)) * r)


def pbm_ctr(rankings: np.ndarray, relevance: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Expected clicks per shown slot of each list: rankings [S, K] of rows of relevance [S, n]."""
    k = rankings.shape[1]
    rel = np.take_along_axis(relevance, rankings, axis=1)
    return np.asarray((rel * theta[None, :k]).sum(1) / k)


def generate(p: ClickLogParams) -> ClickLog:
    """Draw one click log (reproducible from ``p.seed``)."""
    if p.depth > p.candidates:
        raise ValueError(f"depth ({p.depth}) must be <= candidates ({p.candidates}): a page shows candidates")
    rng = np.random.default_rng(p.seed)
    q, n, f, k = p.queries, p.candidates, p.features, p.depth
    x = rng.normal(size=(q, n, f)).astype(np.float32)
    w_true = rng.normal(size=f)
    w_true /= np.linalg.norm(w_true)
    relevance = 1 / (1 + np.exp(-(p.relevance_scale * (x @ w_true) + p.relevance_bias)))  # [q, n]
    logger_score = x @ _blend(w_true, p.logger_quality, rng)
    candidate_score = x @ _blend(w_true, p.candidate_quality, rng)
    theta = np.asarray(examination(k, p.examination_decay))

    s_query = rng.integers(0, q, p.sessions)
    s_scores = logger_score[s_query] + p.session_noise * rng.normal(size=(p.sessions, n))
    marg = None
    if p.policy.name == "plackett_luce":
        if p.session_noise > 0:
            raise ValueError(
                "plackett_luce logging needs session_noise: 0 (its propensities are per query); "
                "the policy's own sampling is the randomisation"
            )
        per_q = pl_marginals(logger_score, p.policy.temperature, k, p.policy.n_samples, rng)  # [q, n, k]
        marg = per_q[s_query]
    shown, prop = rank_batch(s_scores, p.policy, k, rng, marg)  # [S, k]
    s_rel = relevance[s_query]  # [S, n]
    rel_shown = np.take_along_axis(s_rel, shown, axis=1)
    click = rng.random((p.sessions, k)) < theta[None, :] * rel_shown

    cand_rank = np.argsort(-candidate_score, axis=1, kind="stable")[:, :k][s_query]
    truth = {
        "examination": theta.tolist(),
        "click_model": "P(click at p) = examination[p] * relevance (position-based model)",
        "logger_ctr": float(pbm_ctr(shown, s_rel, theta).mean()),
        "candidate_ctr": float(pbm_ctr(cand_rank, s_rel, theta).mean()),
        "policy_id": p.policy.policy_id,
        "params": {**asdict(p), "policy": asdict(p.policy)},
    }
    item_ids = np.array([f"i{j}" for j in range(q * n)], dtype=object).reshape(q, n)
    users = rng.integers(0, p.users, p.sessions)
    rows = np.repeat(np.arange(p.sessions), k)
    imp = pd.DataFrame(
        {
            "session_id": rows.astype(np.int64),
            "user_id": np.array([f"u{u}" for u in range(p.users)], dtype=object)[users[rows]],
            "query_id": np.array([f"q{j}" for j in range(q)], dtype=object)[s_query[rows]],
            "item_id": item_ids[s_query[rows], shown.ravel()],
            "position": np.tile(np.arange(k, dtype=np.int32), p.sessions),
            "click": click.ravel().astype(np.int8),
            "policy_id": p.policy.policy_id,
            "propensity": prop.ravel().astype(np.float64),
            "examination": np.tile(theta, p.sessions),
            "relevance": rel_shown.ravel(),
        }
    )
    cands = pd.DataFrame(
        {
            "query_id": np.repeat(np.array([f"q{j}" for j in range(q)], dtype=object), n),
            "item_id": item_ids.ravel(),
            **{f"f{j}": x[:, :, j].ravel() for j in range(f)},
            "logger_score": logger_score.ravel(),
            "candidate_score": candidate_score.ravel(),
            "relevance": relevance.ravel(),
        }
    )
    return ClickLog(imp, cands, truth)


def write(log: ClickLog, out: str | Path) -> dict[str, str]:
    """Parquet tables + ``truth.json`` under ``out``; returns the artifact paths."""
    out = Path(out)
    (out / "impressions").mkdir(parents=True, exist_ok=True)
    (out / "candidates").mkdir(parents=True, exist_ok=True)
    log.impressions.to_parquet(out / "impressions" / "part-0.parquet", index=False)
    log.candidates.to_parquet(out / "candidates" / "part-0.parquet", index=False)
    (out / "truth.json").write_text(json.dumps(log.truth, indent=2))
    return {
        "impressions": str(out / "impressions"),
        "candidates": str(out / "candidates"),
        "truth": str(out / "truth.json"),
    }


def feature_columns(candidates: pd.DataFrame) -> list[str]:
    """The ``f0..`` feature columns of a candidates table, in order."""
    cols = [c for c in candidates.columns if c.startswith("f") and c[1:].isdigit()]
    return sorted(cols, key=lambda c: int(c[1:]))


def params_from_section(section: Any, seed: int, **override: Any) -> ClickLogParams:
    """``ClickLogParams`` from a config's ``click_log`` section (``recsys.data.config.ClickLogSection``)."""
    d = section.model_dump()
    d.update(override)
    policy = LoggingPolicy(d.pop("policy"), d.pop("temperature"), d.pop("shuffle_k"), d.pop("n_samples"))
    return ClickLogParams(**d, policy=policy, seed=seed)


def read_table(path: str | Path, sub: str) -> pd.DataFrame:
    """``<path>/<sub>`` (a click-log directory) or ``path`` itself (a Parquet file / directory) as pandas."""
    p = Path(path)
    return pd.read_parquet(p / sub if (p / sub).exists() else p)


def read_impressions(path: str | Path) -> tuple[pd.DataFrame, dict[str, int]]:
    """Impressions of a click-log directory / Parquet path, or of the Serve app's feedback directory
    (``hour=*/part-*.parquet``: converted by :mod:`recsys.causal.served`, with its reconciling counts)."""
    from recsys.causal import served

    if served.is_feedback_dir(path):
        return served.read_impressions(path)
    return read_table(path, "impressions"), {}
