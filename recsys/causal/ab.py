"""Off-policy estimates of every A/B arm from the stochastic arms' logs (what ``ab_report`` shows beside each
arm's online CTR).

Input: served impressions (:func:`recsys.causal.served.impressions_from_feedback`; columns ``session_id,
query_id, item_id, position, click, policy_id, propensity, arm``).

- The *logs* are the impressions of the logging arms (default: every arm whose impressions carry a
  stochastic ``policy_id``, i.e. not ``deterministic`` and with a propensity). Each session's IPS term divides
  by its own logger's propensity, so several stochastic arms pool into one unbiased log.
- Each arm's *ranking* of a query is read from its own impressions: its items ordered by their mean logged
  position for that query (exactly the served order of a deterministic, non-personalised arm; the
  de-randomised order of a stochastic one). Queries an arm never served are excluded from its estimate
  and counted (``excluded_unranked_query``). A personalised arm's per-user order is averaged per query.
- The estimate is :func:`recsys.causal.ope.evaluate` (IPS, SNIPS, DM, DR, naive; bootstrap CIs; counts of
  used, clipped and excluded impressions). The examination curve of DM / DR is regression-EM (per (query,
  item) relevance) on the logs, or a ``propensities.json`` given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.causal import ope, propensity, served

DETERMINISTIC = "deterministic"


def stochastic_mask(imp: pd.DataFrame) -> pd.Series:
    """Impressions logged by a stochastic policy (a ``policy_id`` other than deterministic, a propensity)."""
    pid = imp["policy_id"].astype("string")
    return (pid.notna() & (pid != DETERMINISTIC) & imp["propensity"].notna()).astype(bool)


def arm_scores(imp: pd.DataFrame, arm: str) -> pd.DataFrame:
    """``query_id, item_id, score`` of one arm's ranking: minus the item's mean logged position per query."""
    a = imp[imp["arm"] == arm]
    mean_pos = a.groupby(["query_id", "item_id"], sort=False)["position"].mean()
    return pd.DataFrame(
        {
            "query_id": mean_pos.index.get_level_values(0),
            "item_id": mean_pos.index.get_level_values(1),
            "score": -mean_pos.to_numpy(np.float64),
        }
    )


def ope_by_arm(
    imp: pd.DataFrame,
    *,
    logging_arms: list[str] | None,
    depth: int,
    clip: float | None,
    theta: np.ndarray | None = None,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"logging_arms", "counts", "examination", "arms": {arm: ope report or {"error": ...}}}``; or
    ``{"skipped": reason}`` when no impression was logged by a stochastic policy of a logging arm."""
    stochastic = stochastic_mask(imp)
    if logging_arms is None:
        logging_arms = sorted(imp.loc[stochastic, "arm"].dropna().unique().tolist())
    in_logger = imp["arm"].isin(logging_arms)
    logs = imp[in_logger & stochastic]
    counts = {
        "impressions": len(imp),
        "logging_impressions": len(logs),
        "excluded_deterministic_in_logging_arms": int((in_logger & ~stochastic).sum()),
    }
    if logs.empty:
        return {
            "skipped": f"no impressions of {logging_arms or 'any arm'} were logged by a stochastic policy "
            "(policy_id and propensity); give an arm `policy: {kind: plackett_luce}` or shuffle_topk (docs/CAUSAL.md)",
            "counts": counts,
        }
    propensity.check_impressions(
        logs, ("session_id", "query_id", "item_id", "position", "click", "propensity")
    )
    if theta is None:
        theta = np.asarray(
            propensity.regression_em(logs, depth, relevance_model="pair", iters=100, n_bootstrap=0).propensity
        )
    arms: dict[str, Any] = {}
    for arm in sorted(imp["arm"].dropna().unique().tolist()):
        try:
            arms[arm] = ope.evaluate(
                logs,
                arm_scores(imp, arm),
                theta,
                depth=depth,
                clip=clip,
                max_excluded_share=1.0,  # reported, never fatal in a report
                n_bootstrap=n_bootstrap,
                confidence=confidence,
                seed=seed,
            )
        except ValueError as exc:
            arms[arm] = {"error": str(exc)}
    return {
        "logging_arms": logging_arms,
        "counts": counts,
        "examination": [float(t) for t in theta],
        "arms": arms,
    }


def ope_section(
    events: pd.DataFrame,
    *,
    logging_arms: list[str] | None,
    depth: int,
    clip: float | None,
    propensities: str | None,
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """ab_report's OPE section: the served impressions of the feedback ``events`` -> every arm's off-policy
    estimates from the stochastic arms' logs (``propensities``: a propensities.json for DM / DR, else
    regression-EM on the logs). A report never fails on this section: without usable logs it holds the
    reason (``skipped``) and the counts."""
    imp, counts = served.impressions_from_feedback(events)
    theta = None
    if propensities is not None:
        theta = np.asarray(json.loads(Path(propensities).read_text())["examination"], dtype=np.float64)
    try:
        rep = ope_by_arm(
            imp,
            logging_arms=logging_arms,
            depth=depth,
            clip=clip,
            theta=theta,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
    except ValueError as exc:
        return {"skipped": str(exc), "counts": counts}
    rep["counts"] = {**counts, **rep["counts"]}
    return rep


def markdown(rep: dict[str, Any], online: dict[str, dict[str, Any]], estimators: tuple[str, ...]) -> str:
    """The OPE table beside each arm's online CTR."""
    if "skipped" in rep:
        return f"OPE: skipped ({rep['skipped']})\n"
    head = " | ".join(f"{e.upper()} [CI]" for e in estimators)
    lines = [
        f"Off-policy estimates from the logs of {rep['logging_arms']} "
        f"({rep['counts']['logging_impressions']} impressions):",
        "",
        f"| arm | online CTR [CI] | {head} | used | clipped | excluded |",
        "|---|---|" + "---|" * len(estimators) + "---|---|---|",
    ]
    for arm, r in rep["arms"].items():
        on = online.get(arm, {})
        on_cell = f"{on['ctr']:.4f} [{on['ctr_ci'][0]:.4f}, {on['ctr_ci'][1]:.4f}]" if "ctr" in on else "-"
        if "error" in r:
            lines.append(
                f"| {arm} | {on_cell} | " + " | ".join("-" for _ in estimators) + f" | - | - | {r['error']} |"
            )
            continue
        cells = [
            f"{r['estimates'][e]['value']:.4f} [{r['estimates'][e]['ci_low']:.4f}, {r['estimates'][e]['ci_high']:.4f}]"
            for e in estimators
        ]
        c = r["counts"]
        excluded = c["impressions_in"] - c["impressions_used"]
        lines.append(
            f"| {arm} | {on_cell} | "
            + " | ".join(cells)
            + f" | {c['impressions_used']} | {c['clipped_slots']} | {excluded} |"
        )
    return "\n".join(lines) + "\n"
