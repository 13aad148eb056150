"""One ``seed`` field seeds everything."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (if importable); export PYTHONHASHSEED for child processes."""
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch  # lazy: torch costs seconds of CLI start-up; jobs without a model never load it

        torch.manual_seed(seed)
    except ImportError:
        pass
