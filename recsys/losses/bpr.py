"""Bayesian personalized ranking: a positive should outscore a negative.

Batch columns: ``query`` (a query text, or a user history), ``positive`` and ``negative`` items.
For the sequential model the negative is a sampled item.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recsys.losses.registry import LossSpec, Pairwise, register


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """``pos_scores`` [B], ``neg_scores`` [B] (or [B, K]: K negatives each) -> mean -log sigmoid(pos - neg)."""
    if neg_scores.dim() == pos_scores.dim() + 1:
        pos_scores = pos_scores.unsqueeze(-1)  # [B, 1]
    return -F.logsigmoid(pos_scores - neg_scores).mean()


SPEC = register(
    LossSpec(
        name="bpr",
        kinds=("bi_encoder", "cross_encoder", "sequential"),
        inputs=Pairwise,
        compute=lambda x, p: bpr_loss(x.pos, x.neg),
        summary="Bayesian personalized ranking (pairwise)",
    )
)
