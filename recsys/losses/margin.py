"""Pairwise margin (hinge) ranking loss: a positive should outscore a negative by ``margin``.

Batch columns: ``query``, ``positive`` and ``negative`` (same as BPR).
"""

from __future__ import annotations

import torch
from pydantic import Field

from recsys.losses.registry import LossParams, LossSpec, Pairwise, register


def margin_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """``pos_scores`` [B], ``neg_scores`` [B] (or [B, K]) -> mean max(0, margin - pos + neg)."""
    if neg_scores.dim() == pos_scores.dim() + 1:
        pos_scores = pos_scores.unsqueeze(-1)  # [B, 1]
    return torch.clamp(margin - pos_scores + neg_scores, min=0).mean()


class MarginParams(LossParams):
    margin: float = Field(0.2, ge=0, description="Margin of the margin loss.")


SPEC = register(
    LossSpec(
        name="margin",
        kinds=("bi_encoder", "cross_encoder"),
        inputs=Pairwise,
        params=MarginParams,
        compute=lambda x, p: margin_loss(x.pos, x.neg, p.margin),
        summary="pairwise hinge with a margin",
    )
)
