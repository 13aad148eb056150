"""Listwise softmax cross-entropy (ListNet-style) over groups of candidates for one query.

Batch columns: rows ``left``, ``right``, ``label`` grouped by ``left`` into fixed-size lists
[G, K] (``group_ids`` says which rows belong together). The target distribution is
softmax(label / label_temperature) over the group's labels; padded slots carry ``mask == 0``.
"""

from __future__ import annotations

import torch
from pydantic import Field

from recsys.losses.registry import LossParams, LossSpec, Pointwise, register


def listwise_softmax_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    label_temperature: float = 1.0,
) -> torch.Tensor:
    """``scores`` [G, K], ``labels`` [G, K] (graded), ``mask`` [G, K] (1 = real) -> scalar.

    Cross-entropy between softmax(labels / T) and softmax(scores); groups whose labels are all
    equal carry no ranking signal and are skipped.
    """
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    mask = mask.bool()
    neg = torch.finfo(scores.dtype).min
    log_p = torch.log_softmax(scores.masked_fill(~mask, neg), dim=-1)  # [G, K]
    target = torch.softmax(
        labels.to(scores.dtype).masked_fill(~mask, neg) / label_temperature, dim=-1
    )  # [G, K]
    lab = labels.to(scores.dtype)
    informative = lab.masked_fill(~mask, float("inf")).amin(-1) < lab.masked_fill(~mask, float("-inf")).amax(
        -1
    )  # [G]
    per_group = -(target * log_p.masked_fill(~mask, 0.0)).sum(-1)  # [G]
    if not informative.any():
        return scores.sum() * 0.0
    return per_group[informative].mean()


class ListwiseParams(LossParams):
    list_size: int = Field(8, ge=2, description="Listwise: candidates per query group.")


def _compute(x: Pointwise, p: ListwiseParams) -> torch.Tensor:
    """Consecutive rows form lists of ``list_size`` (the data comes grouped; batch_size % list_size == 0)."""
    k = p.list_size
    g = x.scores.shape[0] // k
    return listwise_softmax_loss(x.scores[: g * k].view(g, k), x.labels[: g * k].view(g, k))


SPEC = register(
    LossSpec(
        name="listwise",
        kinds=("cross_encoder",),
        inputs=Pointwise,
        params=ListwiseParams,
        compute=_compute,
        group_size="list_size",
        summary="softmax cross-entropy over each query's list (ListNet)",
    )
)
