"""Pool token states into one vector per sequence (sentence-transformers semantics)."""

from __future__ import annotations

from typing import Literal

import torch

Pooling = Literal["mean", "cls", "max"]
POOLINGS: tuple[str, ...] = ("mean", "cls", "max")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """``hidden`` [B, T, H], ``attention_mask`` [B, T] (1 = token) -> [B, H]."""
    if how == "cls":
        return hidden[:, 0]  # [B, H]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
    if how == "mean":
        summed = (hidden * mask).sum(dim=1)  # [B, H]
        return summed / mask.sum(dim=1).clamp(min=1e-9)  # [B, H]
    if how == "max":
        neg = torch.finfo(hidden.dtype).min
        return hidden.masked_fill(mask == 0, neg).max(dim=1).values  # [B, H]
    raise ValueError(f"unknown pooling {how!r}; use one of {POOLINGS}")
