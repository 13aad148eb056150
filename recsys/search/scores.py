"""Score normalisation shared by every ranking stage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def minmax(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant (or empty) input maps to zeros. Float arrays keep their dtype
    (float32 model scores stay float32); anything else becomes float64."""
    a = np.asarray(x)
    a = a.astype(np.result_type(a.dtype, np.float32), copy=False)
    if a.size == 0:
        return a
    lo, hi = a.min(), a.max()
    return np.zeros_like(a) if float(hi) - float(lo) < 1e-12 else (a - lo) / (hi - lo)
