"""Inverse-propensity-weighted pairwise logistic loss on click logs: every (clicked, not clicked) pair of a
list, weighted by the clicked item's ``1 / max(propensity, clip)`` (Joachims et al. 2017, Propensity SVM-Rank
with a logistic surrogate). With every propensity 1 it is exactly the naive click pairwise loss.
Not yet consumed by a model kind's training task (``kinds=()``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recsys.losses.ipw_listwise import ClickLists, IpwParams, ipw_weights
from recsys.losses.registry import LossSpec, register


def click_pairwise_loss(
    scores: torch.Tensor, clicks: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean over pairs of ``weights_i * log(1 + exp(-(s_i - s_j)))``, i clicked, j a real unclicked slot."""
    m = mask.bool()
    pos = (clicks > 0) & m
    neg = (clicks <= 0) & m
    pair = pos[:, :, None] & neg[:, None, :]  # [G, K, K]
    if not pair.any():
        return scores.sum() * 0.0
    diff = scores[:, :, None] - scores[:, None, :]
    w = weights.to(scores.dtype)[:, :, None].expand_as(diff)
    return (w * F.softplus(-diff))[pair].sum() / pair.sum()


def _compute(x: ClickLists, p: IpwParams) -> torch.Tensor:
    return click_pairwise_loss(
        x.scores, x.clicks, ipw_weights(x.clicks, x.propensity, p.propensity_clip), x.mask
    )


SPEC = register(
    LossSpec(
        name="ipw_pairwise",
        kinds=(),
        inputs=ClickLists,
        params=IpwParams,
        compute=_compute,
        summary="IPS-weighted pairwise logistic loss over logged click lists (unbiased LTR)",
    )
)
