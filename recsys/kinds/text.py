"""Pieces the text kinds (bi-encoder, cross-encoder) share: encoder set-up and query texts for scoring."""

from __future__ import annotations

from typing import Any

from recsys.models.base import SavableModel
from recsys.models.builders import prepare_encoder


def finish_encoders(model: SavableModel, model_cfg: Any) -> SavableModel:
    """Freeze / re-dropout every Hugging Face encoder of ``model`` as ``model_cfg`` (``cfg.model``) says."""
    for enc in model.hf_encoders().values():
        prepare_encoder(enc, model_cfg.freeze_layers, model_cfg.dropout)
    return model


def require_texts(kind: str, item_texts: dict[str, str] | None) -> dict[str, str]:
    if item_texts is None:
        raise ValueError(f"a {kind} model scores text: give the evaluate job data.items (item_id + title)")
    return item_texts


def query_texts(batch: Any, texts: dict[str, str], history_len: int) -> list[str]:
    """A ``QueryBatch``'s query strings, or each user's last ``history_len`` item titles joined."""
    if batch.texts is not None:
        return [t or "" for t in batch.texts]
    return [" ".join(texts.get(i, "") for i in h[-history_len:]) for h in batch.histories]
