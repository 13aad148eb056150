"""Pointwise regression on graded relevance for the cross-encoder.

Batch columns: ``left``, ``right`` and ``label`` (a graded relevance, e.g. from behaviour via
``recsys.losses.graded``); the model's logit is regressed onto the label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recsys.losses.registry import LossSpec, Pointwise, register


def mse_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``scores`` [B], ``labels`` [B] -> mean squared error (scalar)."""
    return F.mse_loss(scores, labels.to(scores.dtype))


SPEC = register(
    LossSpec(
        name="mse",
        kinds=("cross_encoder",),
        inputs=Pointwise,
        compute=lambda x, p: mse_loss(x.scores, x.labels),
        threshold=0.5,  # the score regresses the label itself: 0.5 decides a match
        summary="regression of the score onto graded relevance",
    )
)
