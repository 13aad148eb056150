"""Dual Learning Algorithm (Ai, Bi, Luo, Guo, Croft, SIGIR 2018): the ranker and a propensity (examination)
model learned jointly from clicks, each one's output de-biasing the other's loss.

For a logged list with clicks ``c_k`` at positions ``pos_k``:

- the propensity model gives a logit ``g(pos_k)`` per slot (:class:`PositionPropensity`: one learned logit per
  position); ``psi = softmax(g)`` over the list's slots, and the examination of slot k relative to the list's
  first slot is ``psi_k / psi_0``;
- ranker (inverse propensity weighting): ``L_r = -sum_k c_k / max(psi_k / psi_0, clip) * log softmax(f)_k``;
- propensity model (inverse relevance weighting): ``L_e = -sum_k c_k / max(phi_k / phi_0, clip) * log
  softmax(g)_k`` with ``phi = softmax(f)``, the ranker's relevance estimate;

each weight is computed from the *other* model with gradients stopped, and the loss is ``L_r + L_e``. With a
fixed propensity model, ``L_r`` is exactly the IPS listwise loss (``ipw_listwise``) with propensities
``psi_k / psi_0`` (tested). Lists must be in logged order (slot 0 = the list's top shown position).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recsys.losses.ipw_listwise import IpwParams, click_softmax_loss, ipw_weights
from recsys.losses.registry import LossSpec, register


@dataclass(frozen=True)
class DlaLists:
    """``scores`` [G, K] (the ranker's), ``clicks`` [G, K] (0/1), ``position_logits`` [G, K] (the propensity
    model's logit of each slot's position), ``mask`` [G, K] (1 = a real slot) of G logged lists."""

    scores: torch.Tensor
    clicks: torch.Tensor
    position_logits: torch.Tensor
    mask: torch.Tensor


class PositionPropensity(nn.Module):
    """The propensity model: one learned logit per position (0-based; deeper positions share the last)."""

    def __init__(self, depth: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(depth))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """``positions`` [G, K] (long) -> logits [G, K]."""
        return self.logits[positions.clamp(0, len(self.logits) - 1)]

    @torch.no_grad()
    def propensities(self) -> list[float]:
        """Examination per position relative to position 1 (``exp(g_k - g_0)``)."""
        return torch.exp(self.logits - self.logits[0]).tolist()


def _relative(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``softmax(logits)_k / softmax(logits)_0`` over each list's real slots = ``exp(l_k - l_0)``."""
    return torch.exp(logits - logits[:, :1]).masked_fill(~mask.bool(), 1.0)


def dla_losses(x: DlaLists, p: IpwParams) -> tuple[torch.Tensor, torch.Tensor]:
    """(ranker loss ``L_r``, propensity-model loss ``L_e``), each weighted by the other model (detached)."""
    psi = _relative(x.position_logits.detach(), x.mask)
    phi = _relative(x.scores.detach(), x.mask)
    ranker = click_softmax_loss(x.scores, ipw_weights(x.clicks, psi, p.propensity_clip), x.mask)
    propensity = click_softmax_loss(x.position_logits, ipw_weights(x.clicks, phi, p.propensity_clip), x.mask)
    return ranker, propensity


def _compute(x: DlaLists, p: IpwParams) -> torch.Tensor:
    ranker, propensity = dla_losses(x, p)
    return ranker + propensity


SPEC = register(
    LossSpec(
        name="dla",
        kinds=(),
        inputs=DlaLists,
        params=IpwParams,
        compute=_compute,
        summary="Dual Learning Algorithm: ranker (IPW) and position propensity model (IRW) learned jointly",
    )
)
