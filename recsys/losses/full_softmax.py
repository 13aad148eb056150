"""Full-softmax next-item cross-entropy for the sequential model (every item is a class).

Batch column: ``items`` (left-padded item indices [B, L+1]); position t's hidden state predicts item
t+1. Exact but O(B * L * num_items): use ``sampled_softmax`` for catalogues of millions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def full_softmax_loss(hidden: torch.Tensor, item_table: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``hidden`` [B, L, H], ``item_table`` [V+1, H] (row 0 = padding), ``targets`` [B, L] (0 = ignore) -> scalar."""
    logits = hidden @ item_table.T  # [B, L, V+1]
    logits[..., 0] = torch.finfo(logits.dtype).min  # padding is never a prediction
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=0)
