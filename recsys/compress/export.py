"""torch -> ONNX (fp32) for the text models, with dynamic batch and sequence axes.

A cross-encoder exports to one graph ``(input_ids, attention_mask, token_type_ids) -> logits [B]``
(``[B, num_labels]`` for multi-class); a bi-encoder to one graph per tower ``-> vectors [B, D]``
(pooled, projected and normalized as ``BiEncoder.embed`` does). ``optimize_onnx`` runs ONNX Runtime's
offline graph optimizations (fusions) and writes the optimized graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
SUPPORTED_MODEL_TYPES = ("cross_encoder", "bi_encoder")
DEFAULT_OPSET = 17


class UnsupportedModelError(ValueError):
    """The model kind cannot be exported (the message names the kind and the fix)."""


class _CrossEncoderGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        out: torch.Tensor = self.model(
            {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        )
        return out


class _TowerGraph(nn.Module):
    def __init__(self, model: Any, tower: str):  # a BiEncoder (typed Any: its embed is not nn.Module API)
        super().__init__()
        self.model = model
        self.tower = tower

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        out: torch.Tensor = self.model.embed(inputs, self.tower)
        return out


def check_exportable(model_type: str) -> None:
    """Raise a clear error for a model kind the compress job cannot export."""
    if model_type in SUPPORTED_MODEL_TYPES:
        return
    if model_type == "sequential":
        raise UnsupportedModelError(
            "model kind 'sequential' (SequentialRecommender) cannot be compressed yet: its next-item scoring "
            "over the whole catalog is not exported to ONNX; compress a cross_encoder or bi_encoder model "
            "directory (runs/train/<scale>/model of a text model), or serve the sequential model with the "
            "torch backend"
        )
    raise UnsupportedModelError(
        f"model kind {model_type!r} cannot be compressed; supported kinds: {', '.join(SUPPORTED_MODEL_TYPES)}. "
        "Point `model.path` at a cross-encoder or bi-encoder directory written by the train job"
    )


def graphs_of(model: Any) -> dict[str, nn.Module]:
    """ONNX file name -> the module to export for a loaded recsys model."""
    check_exportable(model.model_type)
    if model.model_type == "cross_encoder":
        return {"model.onnx": _CrossEncoderGraph(model)}
    graphs: dict[str, nn.Module] = {"model.onnx": _TowerGraph(model, "query")}
    if model.item_encoder is not None:  # separate towers: a second graph for items
        graphs["item_model.onnx"] = _TowerGraph(model, "item")
    return graphs


def _dummy_inputs(batch: int = 2, seq: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = torch.randint(1000, 2000, (batch, seq), dtype=torch.long)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, seq // 2 :] = 0  # a padded row so the mask path is traced
    return ids, mask, torch.zeros(batch, seq, dtype=torch.long)


def export_onnx(module: nn.Module, path: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Export ``module(input_ids, attention_mask, token_type_ids)`` to ``path`` (fp32, dynamic axes)."""
    out = Path(path)
    module = module.eval()
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes["output"] = {0: "batch"}
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            module,
            _dummy_inputs(),
            str(out),
            input_names=list(INPUT_NAMES),
            output_names=["output"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,  # the TorchScript exporter: reliable on CPU for HF encoders, dynamic axes as given
        )
    return out


def optimize_onnx(src: str | Path, dst: str | Path, level: str = "extended") -> Path:
    """Run ONNX Runtime's offline graph optimizations on ``src`` and write the result to ``dst``.

    ``extended`` fuses attention / layer norm / GELU into ORT's own kernels (portable across CPUs);
    ``all`` adds layout changes tied to the machine that optimizes; ``basic`` only folds constants.
    """
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if level not in levels:
        raise ValueError(f"optimization level {level!r}; use one of {sorted(levels)}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = levels[level]
    opts.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    return Path(dst)
