"""Pointwise regression on graded relevance for the cross-encoder.

Batch columns: ``left``, ``right`` and ``label`` (a graded relevance, e.g. from behaviour via
``recsys.losses.graded``); the model's logit is regressed onto the label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mse_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``scores`` [B], ``labels`` [B] -> mean squared error (scalar)."""
    return F.mse_loss(scores, labels.to(scores.dtype))
