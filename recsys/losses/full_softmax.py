"""Full-softmax next-item cross-entropy for the sequential model (every item is a class).

Batch column: ``items`` (left-padded item indices [B, L+1]); position t's hidden state predicts item
t+1. Exact but O(positions * num_items): use ``sampled_softmax`` for catalogues of millions. Only real
positions are scored: with left-padded short histories (Amazon users average ~7 items in a 50-item
window) scoring the padding too multiplied the logits' compute and memory by L / mean length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recsys.losses.registry import LossSpec, NextItem, register


def full_softmax_loss(hidden: torch.Tensor, item_table: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``hidden`` [B, L, H], ``item_table`` [V+1, H] (row 0 = padding), ``targets`` [B, L] (0 = ignore) -> scalar."""
    valid = targets != 0  # [B, L]
    logits = hidden[valid] @ item_table.T  # [P, V+1], P = real positions
    logits[:, 0] = torch.finfo(logits.dtype).min  # padding is never a prediction
    return F.cross_entropy(logits, targets[valid])


SPEC = register(
    LossSpec(
        name="full_softmax",
        kinds=("sequential",),
        inputs=NextItem,
        compute=lambda x, p: full_softmax_loss(x.hidden, x.item_table().float(), x.targets),
        summary="next-item cross-entropy over every item",
    )
)
