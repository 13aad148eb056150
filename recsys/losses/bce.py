"""Pointwise binary cross-entropy for the cross-encoder (product matching, click/relevance labels).

Batch columns: ``left``, ``right`` (tokenized together) and ``label`` in [0, 1] -- 0/1 matches, or
graded relevance scaled to [0, 1] (see ``recsys.losses.graded``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from recsys.losses.registry import LossParams, LossSpec, Pointwise, register


def bce_loss(logits: torch.Tensor, labels: torch.Tensor, pos_weight: float | None = None) -> torch.Tensor:
    """``logits`` [B], ``labels`` [B] in [0, 1] -> scalar; ``pos_weight`` up-weights positives (rare matches)."""
    weight = torch.tensor(pos_weight, device=logits.device, dtype=logits.dtype) if pos_weight else None
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=weight)


class BCEParams(LossParams):
    pos_weight: float | None = Field(
        None, gt=0, description="BCE weight of positives (e.g. 3 for ~25% positives)."
    )


SPEC = register(
    LossSpec(
        name="bce",
        kinds=("cross_encoder",),
        inputs=Pointwise,
        params=BCEParams,
        compute=lambda x, p: bce_loss(x.scores, x.labels, p.pos_weight),
        summary="pointwise binary cross-entropy on 0/1 (or [0, 1] graded) labels",
    )
)
