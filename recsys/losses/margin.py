"""Pairwise margin (hinge) ranking loss: a positive should outscore a negative by ``margin``.

Batch columns: ``query``, ``positive`` and ``negative`` (same as BPR).
"""

from __future__ import annotations

import torch


def margin_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """``pos_scores`` [B], ``neg_scores`` [B] (or [B, K]) -> mean max(0, margin - pos + neg)."""
    if neg_scores.dim() == pos_scores.dim() + 1:
        pos_scores = pos_scores.unsqueeze(-1)  # [B, 1]
    return torch.clamp(margin - pos_scores + neg_scores, min=0).mean()
