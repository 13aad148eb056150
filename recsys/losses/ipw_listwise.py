"""Inverse-propensity-weighted listwise softmax loss on click logs (unbiased LTR; Joachims et al. 2017,
Ai et al. 2018): each click counts ``1 / max(propensity, clip)`` so that, in expectation over the position
bias, the loss equals the softmax loss on true relevance. With every propensity 1 it is exactly the naive
click softmax loss (:func:`click_softmax_loss`).

Not yet consumed by a model kind's training task (``kinds=()``): ``recsys.causal.ultr`` builds the click lists
(the ``ultr`` study job).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field

from recsys.losses.registry import LossParams, LossSpec, register


@dataclass(frozen=True)
class ClickLists:
    """``scores`` [G, K], ``clicks`` [G, K] (0/1), ``propensity`` [G, K] (examination of each slot, > 0),
    ``mask`` [G, K] (1 = a real slot) of G logged lists."""

    scores: torch.Tensor
    clicks: torch.Tensor
    propensity: torch.Tensor
    mask: torch.Tensor


def ipw_weights(clicks: torch.Tensor, propensity: torch.Tensor, clip: float) -> torch.Tensor:
    """``clicks / max(propensity, clip)``: clipping bounds the weights (bias for variance)."""
    return clicks / propensity.clamp_min(clip)


def click_softmax_loss(scores: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over lists with a positive weight of ``-sum_k weights_k log softmax(scores)_k``."""
    m = mask.bool()
    log_p = torch.log_softmax(scores.masked_fill(~m, torch.finfo(scores.dtype).min), dim=-1)
    w = weights.to(scores.dtype).masked_fill(~m, 0.0)
    per_list = -(w * log_p.masked_fill(~m, 0.0)).sum(-1)
    has = w.sum(-1) > 0
    if not has.any():
        return scores.sum() * 0.0
    return per_list[has].mean()


class IpwParams(LossParams):
    propensity_clip: float = Field(
        0.01, gt=0, le=1, description="IPW losses: propensities below this are clipped to it."
    )


def _compute(x: ClickLists, p: IpwParams) -> torch.Tensor:
    return click_softmax_loss(x.scores, ipw_weights(x.clicks, x.propensity, p.propensity_clip), x.mask)


SPEC = register(
    LossSpec(
        name="ipw_listwise",
        kinds=(),
        inputs=ClickLists,
        params=IpwParams,
        compute=_compute,
        summary="IPS-weighted softmax cross-entropy over logged click lists (unbiased LTR)",
    )
)
