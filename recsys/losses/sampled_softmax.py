"""Sampled-softmax next-item cross-entropy for the sequential model (large catalogues).

Batch column: ``items`` (left-padded item indices); for each target position the true next item
competes with ``negatives`` drawn uniformly from the catalogue (shared across the batch). The
logQ correction for uniform sampling is a constant and cancels in the softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recsys.losses.registry import LossSpec, NextItem, register


def sampled_softmax_loss(
    hidden: torch.Tensor,
    pos_repr: torch.Tensor,
    neg_repr: torch.Tensor,
    targets: torch.Tensor,
    neg_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """``hidden`` [B, L, H], ``pos_repr`` [B, L, H] (target items), ``neg_repr`` [N, H] (sampled items),
    ``targets`` [B, L] item indices (0 = ignore), ``neg_ids`` [N] (masks accidental hits) -> scalar."""
    pos = (hidden * pos_repr).sum(-1, keepdim=True)  # [B, L, 1]
    neg = hidden @ neg_repr.T  # [B, L, N]
    if neg_ids is not None:
        hit = targets.unsqueeze(-1) == neg_ids.view(1, 1, -1)  # [B, L, N]
        neg = neg.masked_fill(hit, torch.finfo(neg.dtype).min)
    logits = torch.cat([pos, neg], dim=-1)  # [B, L, 1+N]
    valid = targets != 0  # [B, L]
    zeros = torch.zeros(int(valid.sum()), dtype=torch.long, device=hidden.device)
    return F.cross_entropy(logits[valid], zeros)


def _compute(x: NextItem, p: object) -> torch.Tensor:
    """``num_negatives`` items drawn uniformly (shared by the batch) compete with each target."""
    neg_ids = torch.randint(1, x.num_items + 1, (x.num_negatives,), device=x.targets.device)  # [N]
    pos_repr = x.item_repr(x.targets).float()  # [B, L, H]
    return sampled_softmax_loss(x.hidden, pos_repr, x.item_repr(neg_ids).float(), x.targets, neg_ids)


SPEC = register(
    LossSpec(
        name="sampled_softmax",
        kinds=("sequential",),
        inputs=NextItem,
        compute=_compute,
        summary="next-item cross-entropy against sampled negatives (large catalogues)",
    )
)
