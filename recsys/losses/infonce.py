"""In-batch-negatives InfoNCE (a.k.a. multiple-negatives ranking loss) for the bi-encoder.

Batch columns: ``query`` and ``positive`` texts (row i of ``positive`` matches row i of ``query``),
optionally ``negative`` (one mined hard negative per query). Every other row's positive (and every
hard negative) is a negative for a query.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from recsys.losses.registry import Contrastive, LossParams, LossSpec, register


def infonce_loss(
    query: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor | None = None,
    temperature: float = 0.05,
) -> torch.Tensor:
    """``query`` [B, D], ``positive`` [B, D], ``negative`` [B, D] | None -> scalar.

    Cross-entropy of each query over [all positives ; all hard negatives] / temperature, the target
    being its own positive. Vectors are used as given (normalize them for cosine similarity).
    """
    candidates = positive if negative is None else torch.cat([positive, negative], dim=0)  # [B(+B), D]
    logits = query @ candidates.T / temperature  # [B, B(+B)]
    target = torch.arange(query.shape[0], device=query.device)  # [B]
    return F.cross_entropy(logits, target)


class InfoNCEParams(LossParams):
    temperature: float = Field(0.05, gt=0, description="InfoNCE temperature.")


def _compute(x: Contrastive, p: InfoNCEParams) -> torch.Tensor:
    neg = None if x.negative is None else x.negative.float()
    return infonce_loss(x.query.float(), x.positive.float(), neg, p.temperature)


SPEC = register(
    LossSpec(
        name="infonce",
        kinds=("bi_encoder",),
        inputs=Contrastive,
        params=InfoNCEParams,
        compute=_compute,
        summary="in-batch negatives (+ mined hard negatives) contrastive loss",
    )
)
