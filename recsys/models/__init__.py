"""Models that rank products: ``BiEncoder`` (retrieval), ``CrossEncoder`` (reranking / matching),
``SequentialRecommender`` (next item). All save and load the Hugging Face way; ``load_model(dir)``
picks the class from a saved directory. Nothing heavy is imported until used."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

MODEL_CLASSES = {
    "bi_encoder": ("recsys.models.bi_encoder", "BiEncoder"),
    "cross_encoder": ("recsys.models.cross_encoder", "CrossEncoder"),
    "sequential": ("recsys.models.sequential", "SequentialRecommender"),
}


def model_class(model_type: str) -> Any:  # a SavableModel subclass
    if model_type not in MODEL_CLASSES:
        from recsys.models.base import SavableModel  # lazy: recsys.models.base imports torch

        if model_type in SavableModel.registered:  # defined in a module already imported (a kind's own model)
            return SavableModel.registered[model_type]
        raise ValueError(
            f"unknown model_type {model_type!r}; one of {sorted({*MODEL_CLASSES, *SavableModel.registered})}"
        )
    module, name = MODEL_CLASSES[model_type]
    return getattr(importlib.import_module(module), name)


def load_model(path: str | Path, device: str = "cpu") -> Any:
    """Load any saved recsys model directory (``recsys_model.json`` names its class), in eval mode."""
    from recsys.models.base import read_model_meta  # lazy: recsys.models.base imports torch

    return model_class(read_model_meta(path)["model_type"]).from_pretrained(path, device=device)


def __getattr__(name: str) -> Any:  # lazy: `from recsys.models import BiEncoder`
    for model_type, (_, cls_name) in MODEL_CLASSES.items():
        if name == cls_name:
            return model_class(model_type)
    raise AttributeError(name)


__all__ = ["load_model", "model_class", "BiEncoder", "CrossEncoder", "SequentialRecommender"]
