"""What the propensity and ope jobs run: on logs, or as a study against synthetic truth."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.causal import clicklog, ope, propensity
from recsys.causal.config import OpeConfig, PropensityConfig


def estimate_propensities(
    cfg: PropensityConfig, imp: pd.DataFrame, cands: pd.DataFrame | None, seed: int
) -> dict[str, propensity.PositionBias]:
    """Each configured estimator on its share of the logs (shuffle impressions for intervention)."""
    policy = imp["policy_id"].astype(str) if "policy_id" in imp.columns else pd.Series("", index=imp.index)
    shuffled = policy.str.startswith("shuffle_top")
    out: dict[str, propensity.PositionBias] = {}
    for name in cfg.estimators:
        if name == "intervention":
            if not shuffled.any():
                raise ValueError(
                    "estimator intervention needs impressions logged by a shuffle_topk policy (policy_id "
                    "'shuffle_top<k>'); none found: add a shuffle arm or drop it from `estimators`"
                )
            out[name] = propensity.intervention(
                imp[shuffled], cfg.depth, n_bootstrap=cfg.n_bootstrap, confidence=cfg.confidence, seed=seed
            )
        else:
            rest = imp[~shuffled] if (~shuffled).any() else imp
            out[name] = propensity.regression_em(
                rest,
                cfg.depth,
                relevance_model=cfg.relevance_model,
                features=cands,
                iters=cfg.em_iters,
                n_bootstrap=cfg.em_bootstrap,
                confidence=cfg.confidence,
                seed=seed,
            )
    return out


def propensity_document(cfg: PropensityConfig, est: dict[str, propensity.PositionBias]) -> dict[str, Any]:
    """propensities.json: ``examination`` (the default estimator's curve) + every estimator in full."""
    default = cfg.default or cfg.estimators[0]
    return {
        "examination": est[default].propensity,
        "default": default,
        "estimators": {k: v.to_dict() for k, v in est.items()},
    }


def propensity_study(cfg: PropensityConfig) -> dict[str, Any]:
    """Per seed: shuffle logs (intervention) + ordinary logs (regression-EM), errors vs the true curve."""
    assert cfg.study is not None
    rows: list[dict[str, Any]] = []
    for s in range(cfg.seed, cfg.seed + cfg.study.seeds):
        parts = []
        if "intervention" in cfg.estimators:
            p = clicklog.params_from_section(
                cfg.study.click_log, s, policy="shuffle_topk", session_noise=0.0, shuffle_k=cfg.depth
            )
            parts.append(clicklog.generate(p))
        if "regression_em" in cfg.estimators:
            parts.append(clicklog.generate(clicklog.params_from_section(cfg.study.click_log, 10_000 + s)))
        imp = pd.concat(
            [
                x.impressions.assign(session_id=x.impressions["session_id"] + i * 10**9)
                for i, x in enumerate(parts)
            ]
        )
        truth = parts[0].truth["examination"]
        est = estimate_propensities(cfg, imp, parts[-1].candidates, s)
        for name, e in est.items():
            rows.append(
                {"seed": s, "estimator": name, **propensity.error_vs_truth(e, truth), "curve": e.to_dict()}
            )
    summary = {}
    for name in cfg.estimators:
        r = [x for x in rows if x["estimator"] == name]
        summary[name] = {
            "mean_abs_rel_error": float(np.mean([x["mean_abs_rel_error"] for x in r])),
            "ci_coverage": float(np.mean([x["ci_coverage"] for x in r])),
            "impressions_per_seed": r[0]["curve"]["counts"]["impressions"],
        }
    return {"truth": truth, "summary": summary, "per_seed": rows}


def theta_for(cfg: OpeConfig, imp: pd.DataFrame) -> tuple[np.ndarray, str]:
    """The examination curve for DM / DR: propensities.json, else regression-EM (pair) on the logs."""
    if cfg.propensities is not None:
        theta = np.asarray(json.loads(Path(cfg.propensities).read_text())["examination"], dtype=np.float64)
        if len(theta) < cfg.depth:
            raise ValueError(
                f"propensities has {len(theta)} positions < depth {cfg.depth}; rerun propensity with depth>={cfg.depth}"
            )
        return theta, str(cfg.propensities)
    e = propensity.regression_em(imp, cfg.depth, relevance_model="pair", iters=100, n_bootstrap=0)
    return np.asarray(e.propensity), "regression_em[pair] on the evaluated logs"


def ope_on(cfg: OpeConfig, imp: pd.DataFrame, cands: pd.DataFrame, seed: int) -> dict[str, Any]:
    if cfg.candidate.score_column not in cands.columns:
        raise ValueError(
            f"candidate.score_column {cfg.candidate.score_column!r} is not a column of the candidate scores "
            f"({list(cands.columns)}); name the column holding the candidate's score"
        )
    scores = cands[["query_id", "item_id", cfg.candidate.score_column]].rename(
        columns={cfg.candidate.score_column: "score"}
    )
    theta, source = theta_for(cfg, imp)
    rep = ope.evaluate(
        imp,
        scores,
        theta,
        depth=cfg.depth,
        clip=cfg.clip,
        max_excluded_share=cfg.max_excluded_share,
        n_bootstrap=cfg.n_bootstrap,
        confidence=cfg.confidence,
        seed=seed,
    )
    rep["examination_source"] = source
    return rep


def ope_study(cfg: OpeConfig) -> dict[str, Any]:
    """Per seed: a stochastic logger's logs, the candidate's exact CTR on the same sessions, each estimate."""
    assert cfg.study is not None
    rows = []
    for s in range(cfg.seed, cfg.seed + cfg.study.seeds):
        log = clicklog.generate(clicklog.params_from_section(cfg.study.click_log, s, depth=cfg.depth))
        rep = ope_on(cfg, log.impressions, log.candidates, s)
        true = log.truth["candidate_ctr"]
        rows.append(
            {
                "seed": s,
                "true_ctr": true,
                "logger_ctr": log.truth["logger_ctr"],
                **{
                    e: {
                        **v,
                        "rel_error": abs(v["value"] - true) / true,
                        "covers": v["ci_low"] <= true <= v["ci_high"],
                    }
                    for e, v in rep["estimates"].items()
                },
                "counts": rep["counts"],
            }
        )
        logging.getLogger("recsys").info(
            "[ope] seed %d: true %.5f snips %.5f dr %.5f",
            s,
            true,
            rows[-1]["snips"]["value"],
            rows[-1]["dr"]["value"],
        )
    summary = {
        e: {
            "mean_rel_error": float(np.mean([r[e]["rel_error"] for r in rows])),
            "max_rel_error": float(np.max([r[e]["rel_error"] for r in rows])),
            "ci_coverage": float(np.mean([r[e]["covers"] for r in rows])),
        }
        for e in ope.ESTIMATORS
    }
    gap = float(np.mean([abs(r["true_ctr"] - r["logger_ctr"]) / r["logger_ctr"] for r in rows]))
    return {"summary": summary, "candidate_vs_logger_rel_gap": gap, "per_seed": rows}
