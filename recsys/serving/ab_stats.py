"""A/B statistics over feedback events: per-arm rates with Wilson intervals, differences to the
control arm with a two-proportion z-test (or a user-level bootstrap), and a sample-ratio-mismatch
chi-square test of users per arm against the configured weights.

Expected columns: ``user_id, item_id, event_type`` (impression / click / cart / buy), ``arm``.
Rates are per impression: CTR = clicks / impressions, add-to-cart = carts / impressions,
conversion = buys / impressions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

RATES = {"ctr": "click", "add_to_cart_rate": "cart", "conversion_rate": "buy"}


def wilson(successes: int, n: int, alpha: float) -> tuple[float, float]:
    if n == 0:
        return (0.0, 0.0)
    z = stats.norm.ppf(1 - alpha / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def two_proportion(x1: int, n1: int, x2: int, n2: int, alpha: float) -> dict[str, float]:
    """Difference p2 - p1, its (unpooled) CI and the pooled z-test p-value."""
    if n1 == 0 or n2 == 0:
        return {
            "diff": float("nan"),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "p_value": float("nan"),
        }
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p_value = 2 * stats.norm.sf(abs(p2 - p1) / se0) if se0 > 0 else 1.0
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    z = stats.norm.ppf(1 - alpha / 2)
    return {
        "diff": p2 - p1,
        "ci_low": p2 - p1 - z * se,
        "ci_high": p2 - p1 + z * se,
        "p_value": float(p_value),
    }


def bootstrap_diff(
    a: pd.DataFrame, b: pd.DataFrame, num: str, n_boot: int, alpha: float, seed: int
) -> dict[str, float]:
    """User-level bootstrap of the ratio difference (users are the randomisation unit, so their
    events are resampled together). ``a``/``b``: per-user ``impression`` and ``num`` counts."""
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        ia, ib = rng.integers(0, len(a), len(a)), rng.integers(0, len(b), len(b))
        ra = a[num].to_numpy()[ia].sum() / max(a["impression"].to_numpy()[ia].sum(), 1)
        rb = b[num].to_numpy()[ib].sum() / max(b["impression"].to_numpy()[ib].sum(), 1)
        diffs[i] = rb - ra
    point = b[num].sum() / max(b["impression"].sum(), 1) - a[num].sum() / max(a["impression"].sum(), 1)
    p_value = min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean()))
    return {
        "diff": float(point),
        "ci_low": float(np.quantile(diffs, alpha / 2)),
        "ci_high": float(np.quantile(diffs, 1 - alpha / 2)),
        "p_value": float(p_value),
    }


def srm_check(users_per_arm: dict[str, int], expected: dict[str, float], alpha: float) -> dict[str, Any]:
    arms = list(users_per_arm)
    total = sum(users_per_arm.values())
    w = np.array([expected.get(a, 0.0) for a in arms], dtype=np.float64)
    if total == 0 or w.sum() <= 0 or len(arms) < 2:
        return {"p_value": None, "mismatch": False, "observed": users_per_arm, "expected_share": {}}
    w = w / w.sum()
    chi2, p = stats.chisquare([users_per_arm[a] for a in arms], f_exp=w * total)
    return {
        "chi2": float(chi2),
        "p_value": float(p),
        "mismatch": bool(p < alpha),
        "observed": users_per_arm,
        "expected_share": dict(zip(arms, w.round(6).tolist())),
    }


def ab_report(
    events: pd.DataFrame,
    *,
    control: str | None,
    expected_weights: dict[str, float] | None,
    alpha: float,
    srm_alpha: float,
    method: str,
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    if events.empty:
        raise ValueError("no feedback events found; check feedback.path (the Serve app's feedback_dir)")
    ev = events.dropna(subset=["arm"])
    counts = ev.pivot_table(
        index=["arm", "user_id"], columns="event_type", values="item_id", aggfunc="size", fill_value=0
    )
    for col in ("impression", *RATES.values()):
        if col not in counts.columns:
            counts[col] = 0
    arms = sorted(ev["arm"].unique().tolist())
    control = control or arms[0]
    if control not in arms:
        raise ValueError(f"control arm {control!r} has no events; arms seen: {arms}")
    per_arm: dict[str, Any] = {}
    for arm in arms:
        c = counts.loc[arm]
        n = int(c["impression"].sum())
        row: dict[str, Any] = {"users": int(len(c)), "impressions": n}
        for rate, col in RATES.items():
            x = int(c[col].sum())
            lo, hi = wilson(x, n, alpha)
            row[col + "s"] = x
            row[rate] = x / n if n else 0.0
            row[rate + "_ci"] = [lo, hi]
        per_arm[arm] = row
    comparisons: dict[str, Any] = {}
    for arm in arms:
        if arm == control:
            continue
        comp = {}
        for rate, col in RATES.items():
            if method == "bootstrap":
                comp[rate] = bootstrap_diff(
                    counts.loc[control], counts.loc[arm], col, n_bootstrap, alpha, seed
                )
            else:
                comp[rate] = two_proportion(
                    per_arm[control][col + "s"],
                    per_arm[control]["impressions"],
                    per_arm[arm][col + "s"],
                    per_arm[arm]["impressions"],
                    alpha,
                )
            comp[rate]["significant"] = bool(comp[rate]["p_value"] < alpha)
        comparisons[f"{arm}_vs_{control}"] = comp
    expected = expected_weights or {a: 1.0 for a in arms}
    srm = srm_check({a: per_arm[a]["users"] for a in arms}, expected, srm_alpha)
    return {
        "control": control,
        "method": method,
        "alpha": alpha,
        "arms": per_arm,
        "comparisons": comparisons,
        "srm": srm,
    }


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        "| arm | users | impressions | CTR [CI] | add-to-cart [CI] | conversion [CI] |",
        "|---|---|---|---|---|---|",
    ]
    for arm, r in report["arms"].items():
        cells = [f"{r[k]:.4f} [{r[k + '_ci'][0]:.4f}, {r[k + '_ci'][1]:.4f}]" for k in RATES]
        lines.append(f"| {arm} | {r['users']} | {r['impressions']} | " + " | ".join(cells) + " |")
    lines += ["", "| comparison | metric | diff | CI | p-value |", "|---|---|---|---|---|"]
    for name, comp in report["comparisons"].items():
        for k, c in comp.items():
            lines.append(
                f"| {name} | {k} | {c['diff']:+.4f} | [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | {c['p_value']:.3g} |"
            )
    s = report["srm"]
    lines += [
        "",
        f"SRM check: p = {s.get('p_value')} ({'MISMATCH' if s['mismatch'] else 'ok'}), users {s['observed']}",
    ]
    return "\n".join(lines) + "\n"
