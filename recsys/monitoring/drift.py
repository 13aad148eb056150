"""Distribution drift between a reference sample (the training snapshot) and a current one (recent
feedback): Population Stability Index and the two-sample Kolmogorov-Smirnov statistic.

PSI = sum_b (c_b - r_b) * ln(c_b / r_b) over bins b (reference quantile bins for numbers, the
reference's most frequent values + "other" for categories); rule of thumb: < 0.1 stable, 0.1-0.25
moderate, > 0.25 major shift. KS D = sup |F_ref - F_cur| (numbers only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

EPS = 1e-4  # floor of a bin share, so an empty bin gives a large but finite PSI


def _psi(ref_share: np.ndarray, cur_share: np.ndarray) -> float:
    r = np.clip(ref_share, EPS, None)
    c = np.clip(cur_share, EPS, None)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_numeric(ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> float:
    """PSI over ``bins`` quantile bins of the reference (ties merge bins); NaNs dropped."""
    ref = ref[~np.isnan(ref)]
    cur = cur[~np.isnan(cur)]
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    return _psi(r, c)


def psi_categorical(ref: pd.Series, cur: pd.Series, top_k: int = 50) -> tuple[float, dict[str, float]]:
    """PSI over the reference's ``top_k`` values + "other"; also returns the biggest share changes."""
    ref_share = ref.value_counts(normalize=True)
    keep = list(ref_share.index[:top_k])
    cur_share = cur.value_counts(normalize=True)
    r = np.array([ref_share.get(k, 0.0) for k in keep] + [max(0.0, 1 - ref_share[keep].sum())])
    c = np.array(
        [cur_share.get(k, 0.0) for k in keep] + [max(0.0, 1 - cur_share.reindex(keep).fillna(0).sum())]
    )
    labels = [str(k) for k in keep] + ["<other>"]
    delta = sorted(zip(labels, c - r, strict=True), key=lambda t: -abs(t[1]))[:5]
    return _psi(r, c), {k: round(float(v), 4) for k, v in delta}


def ks_statistic(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic D and its p-value (NaNs dropped)."""
    from scipy.stats import ks_2samp  # lazy: scipy.stats costs ~0.5 s and only the KS check needs it

    res = ks_2samp(ref[~np.isnan(ref)], cur[~np.isnan(cur)])
    return float(res.statistic), float(res.pvalue)


@dataclass(frozen=True)
class FeatureSpec:
    """One monitored column (plain values: built from the job config by the job)."""

    column: str
    kind: str  # "numeric" | "categorical"
    psi_max: float
    ks_max: float | None
    bins: int = 10
    top_k: int = 50
    normalize: bool = False  # lower-case + strip categorical values (query mix)


def compare(
    ref: pd.DataFrame, cur: pd.DataFrame, specs: list[FeatureSpec], min_rows: int = 50
) -> list[dict[str, Any]]:
    """One result row per spec: psi, ks, thresholds, ``drifted`` (or ``skipped`` with the reason)."""
    out = []
    for s in specs:
        row: dict[str, Any] = {"feature": s.column, "kind": s.kind, "psi_max": s.psi_max, "ks_max": s.ks_max}
        if s.column not in ref.columns or s.column not in cur.columns:
            where = "reference" if s.column not in ref.columns else "current"
            out.append({**row, "skipped": f"column {s.column!r} not in the {where} data"})
            continue
        r, c = ref[s.column].dropna(), cur[s.column].dropna()
        if len(r) < min_rows or len(c) < min_rows:
            out.append(
                {
                    **row,
                    "skipped": f"too few non-null rows (reference {len(r)}, current {len(c)}; need {min_rows})",
                }
            )
            continue
        row.update(n_reference=int(len(r)), n_current=int(len(c)))
        if s.kind == "numeric":
            rv, cv = r.to_numpy(np.float64), c.to_numpy(np.float64)
            row["psi"] = round(psi_numeric(rv, cv, s.bins), 6)
            row["ks"], row["ks_pvalue"] = (round(x, 6) for x in ks_statistic(rv, cv))
            row.update(reference_mean=round(float(rv.mean()), 6), current_mean=round(float(cv.mean()), 6))
        else:
            if s.normalize:
                r, c = r.astype(str).str.strip().str.lower(), c.astype(str).str.strip().str.lower()
            psi, moved = psi_categorical(r.astype(str), c.astype(str), s.top_k)
            row["psi"], row["largest_share_changes"] = round(psi, 6), moved
        reasons = []
        if row["psi"] > s.psi_max:
            reasons.append(f"psi {row['psi']:.3f} > {s.psi_max}")
        if s.ks_max is not None and "ks" in row and row["ks"] > s.ks_max:
            reasons.append(f"ks {row['ks']:.3f} > {s.ks_max}")
        row["drifted"], row["reasons"] = bool(reasons), reasons
        out.append(row)
    return out
