"""Builders: train config sections -> models (config objects stop here; models get plain values)."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from recsys.models.base import SavableModel


def build_model(model_cfg: Any, *, item_ids: list[str] | None = None, user_features: dict[str, list[str]] | None = None,
                text_embeddings: np.ndarray | None = None) -> SavableModel:
    """A new model of ``model_cfg.kind`` (``recsys.training.config.TrainModelConfig``).

    Sequential models need ``item_ids`` (and ``text_embeddings`` [num_items, D] when use_text).
    """
    kind = model_cfg.kind
    if kind == "bi_encoder":
        from recsys.models.bi_encoder import BiEncoder

        o = model_cfg.bi_encoder
        model = BiEncoder.from_encoder(
            model_cfg.name_or_path, shared=o.shared_towers, pooling=o.pooling, projection_dim=o.projection_dim,
            normalize=o.normalize, max_length=model_cfg.max_length,
        )
    elif kind == "cross_encoder":
        from recsys.models.cross_encoder import CrossEncoder

        o = model_cfg.cross_encoder
        model = CrossEncoder.from_encoder(
            model_cfg.name_or_path, num_labels=o.num_labels, pooling=o.pooling, dropout=o.head_dropout,
            max_length=model_cfg.max_length,
        )
    elif kind == "sequential":
        from recsys.models.sequential import SequentialRecommender

        if not item_ids:
            raise ValueError("the sequential model needs item_ids (built from the training sequences)")
        o = model_cfg.sequential
        return SequentialRecommender(
            item_ids, hidden_size=o.hidden_size, num_layers=o.num_layers, num_heads=o.num_heads, max_len=o.max_len,
            dropout=o.dropout, use_id_embeddings=o.use_id_embeddings,
            text_dim=0 if text_embeddings is None else int(text_embeddings.shape[1]),
            text_trainable=o.text_trainable, text_embeddings=text_embeddings, user_features=user_features,
        )
    else:
        raise ValueError(f"unknown model.kind {kind!r}")
    for enc in model.hf_encoders().values():
        prepare_encoder(enc, model_cfg.freeze_layers, model_cfg.dropout)
    return model


def prepare_encoder(encoder: nn.Module, freeze_layers: int = 0, dropout: float | None = None) -> None:
    """Freeze the (unused) pooler, optionally the embeddings + first N layers; override dropout."""
    for name, p in encoder.named_parameters():
        if name.startswith("pooler."):  # our pooling replaces the HF pooler; DDP needs every trainable param used
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
