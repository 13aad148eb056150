"""Encoder set-up shared by the text models' builders (``recsys.kinds.<kind>.build_model``)."""

from __future__ import annotations

from typing import Any

from torch import nn


def prepare_encoder(encoder: nn.Module, freeze_layers: int = 0, dropout: float | None = None) -> None:
    """Freeze the (unused) pooler, optionally the embeddings + first N layers; override dropout."""
    for name, p in encoder.named_parameters():
        if name.startswith(
            "pooler."
        ):  # our pooling replaces the HF pooler; DDP needs every trainable param used
            p.requires_grad_(False)
    if freeze_layers:
        layers = _layers(encoder)
        if freeze_layers > len(layers):
            raise ValueError(f"model.freeze_layers={freeze_layers} but the encoder has {len(layers)} layers")
        for module in [getattr(encoder, "embeddings", None), *layers[:freeze_layers]]:
            if module is not None:
                for p in module.parameters():
                    p.requires_grad_(False)
    if dropout is not None:
        for m in encoder.modules():
            if isinstance(m, nn.Dropout):
                m.p = dropout


def _layers(encoder: nn.Module) -> list[nn.Module]:
    for path in ("encoder.layer", "layers", "transformer.layer", "encoder.layers"):
        obj: Any = encoder
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return list(obj)
    raise ValueError("could not find the encoder's layer list to freeze; set model.freeze_layers: 0")
