"""Structured pruning of a saved cross-encoder / bi-encoder: FFN (intermediate) neurons of every encoder
layer ranked by importance, the least important removed, and the smaller model saved the usual way.

Every layer keeps the same number of neurons, so the pruned encoder is a plain Hugging Face config (a
smaller ``intermediate_size``) that ``AutoModel.from_config`` builds and ``recsys.models.load_model``
loads with strict weight checks: every loader (evaluate, index, serve, the compress job's ONNX export)
opens it unchanged. Attention heads are not pruned: transformers 5 dropped ``prune_heads`` and derives
the head size from ``hidden_size / num_attention_heads``, so a model with fewer heads per layer would
not load the Hugging Face way.

Importance (per layer, per neuron):

- ``taylor``: ``|sum over tokens of activation x d loss / d activation|`` summed over batches of
  labelled pairs (the first-order Taylor estimate of the loss change when the neuron is zeroed;
  Molchanov et al. 2017); the loss is the cross-encoder's binary cross-entropy on the labels;
- ``magnitude``: the L2 norm of the neuron's input row and output column (no data).

``prune_saved_model(dir, out, ffn_keep=0.5, ...)`` writes the pruned model; the compress job then
fine-tunes it briefly with the train job (``model.name_or_path`` = the pruned directory) to recover.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from recsys.models.base import hf_config


def encoder_layers(model: Any) -> list[Any]:
    """The transformer layers of a model's Hugging Face encoder(s) (BERT-style: ``encoder.layer``);
    a clear error naming the architecture otherwise."""
    layers: list[Any] = []  # BertLayer-like modules (typed Any: their submodules are attributes)
    for enc in model.hf_encoders().values():
        found = getattr(getattr(enc, "encoder", None), "layer", None)
        if found is None or not all(hasattr(lyr, "intermediate") and hasattr(lyr, "output") for lyr in found):
            raise ValueError(
                f"cannot prune a {getattr(hf_config(enc), 'model_type', type(enc).__name__)!r} encoder: FFN "
                "pruning needs a BERT-style encoder (encoder.layer[i].intermediate / .output: BERT, MiniLM, "
                "RoBERTa, XLM-R, ELECTRA); remove the compress config's prune section for this model"
            )
        layers.extend(found)
    return layers


def magnitude_importance(layers: Sequence[Any]) -> list[torch.Tensor]:
    """Per layer: the L2 norm of each FFN neuron's input weights (row) and output weights (column)."""
    out = []
    for lyr in layers:
        w_in, w_out = lyr.intermediate.dense.weight, lyr.output.dense.weight  # [I, H], [H, I]
        out.append((w_in.detach().norm(dim=1) * w_out.detach().norm(dim=0)).float())
    return out


def taylor_importance(
    model: Any,
    pairs: Sequence[tuple[str, str]],
    labels: np.ndarray,
    batch_size: int = 16,
) -> list[torch.Tensor]:
    """Per layer: ``|sum activation x gradient|`` of each FFN neuron, summed over batches of ``pairs``
    (binary cross-entropy of the cross-encoder's logit against ``labels``)."""
    if getattr(model, "model_type", None) != "cross_encoder":
        raise ValueError(
            f"prune.importance taylor needs a cross_encoder (its loss on labelled pairs), got "
            f"{getattr(model, 'model_type', type(model).__name__)!r}; use prune.importance: magnitude"
        )
    if len(pairs) != len(labels) or not len(pairs):
        raise ValueError(
            f"taylor importance needs labelled pairs: got {len(pairs)} pairs and {len(labels)} labels; "
            "point prune.data.path at the task's training pairs (a Ditto .txt or a left/right/label Parquet)"
        )
    layers = encoder_layers(model)
    scores = [torch.zeros(lyr.intermediate.dense.out_features) for lyr in layers]
    acts: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        output.retain_grad()
        acts.append(output)

    hooks = [lyr.intermediate.register_forward_hook(keep) for lyr in layers]
    was_training = model.training
    model.eval()  # no dropout: the estimate is of the deployed (eval) model
    try:
        y = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            tok = model.tokenizer(
                [a for a, _ in chunk],
                [b for _, b in chunk],
                padding=True,
                truncation="longest_first",
                max_length=model.max_length,
                return_tensors="pt",
            )
            acts.clear()
            model.zero_grad(set_to_none=True)
            logits = model(dict(tok))
            loss = nn.functional.binary_cross_entropy_with_logits(
                logits.float().reshape(-1), y[start : start + len(chunk)]
            )
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            mask = tok["attention_mask"].unsqueeze(-1).float()  # padding tokens carry no signal
            for i, a in enumerate(acts):
                assert a.grad is not None  # retain_grad above
                scores[i] += ((a * a.grad) * mask).sum(dim=(0, 1)).abs().detach()
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return scores


def prune_ffn(model: Any, importance: Sequence[torch.Tensor], keep: int) -> list[list[int]]:
    """Keep the ``keep`` most important FFN neurons of every layer (in place); returns the kept indices.

    Slices each layer's ``intermediate.dense`` (rows) and ``output.dense`` (columns) with transformers'
    ``prune_linear_layer`` and sets ``intermediate_size`` in the encoder config(s)."""
    from transformers.pytorch_utils import prune_linear_layer  # lazy: transformers costs seconds

    layers = encoder_layers(model)
    if len(importance) != len(layers):
        raise ValueError(f"{len(importance)} importance vectors for {len(layers)} layers")
    kept = []
    for lyr, imp in zip(layers, importance):
        width = lyr.intermediate.dense.out_features
        if not 1 <= keep <= width:
            raise ValueError(f"keep={keep} FFN neurons per layer; the layers have {width}: pick 1..{width}")
        idx = cast(torch.LongTensor, torch.sort(torch.topk(imp, keep).indices).values)
        lyr.intermediate.dense = prune_linear_layer(lyr.intermediate.dense, idx, dim=0)
        lyr.output.dense = prune_linear_layer(lyr.output.dense, idx, dim=1)
        kept.append(idx.tolist())
    for enc in model.hf_encoders().values():
        hf_config(enc).intermediate_size = keep
    return kept


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prune_saved_model(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    ffn_keep: float,
    importance: str = "taylor",
    pairs: Sequence[tuple[str, str]] = (),
    labels: np.ndarray | None = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Prune the saved model at ``model_dir`` (keeping ``ffn_keep`` of every layer's FFN neurons) and save
    it to ``out_dir``; returns what was done (widths, parameter counts, importance method)."""
    from recsys.models import load_model  # lazy: torch + transformers

    model = load_model(model_dir)
    layers = encoder_layers(model)
    width = int(layers[0].intermediate.dense.out_features)
    keep = max(1, int(round(ffn_keep * width)))
    before = num_params(model)
    if importance == "taylor":
        imp = taylor_importance(model, pairs, labels if labels is not None else np.zeros(0), batch_size)
    elif importance == "magnitude":
        imp = magnitude_importance(layers)
    else:
        raise ValueError(f"prune.importance={importance!r}; use taylor or magnitude")
    prune_ffn(model, imp, keep)
    model.save_pretrained(out_dir)
    return {
        "method": "ffn",
        "importance": importance,
        "importance_pairs": len(pairs) if importance == "taylor" else 0,
        "layers": len(layers),
        "ffn_width_before": width,
        "ffn_width_after": keep,
        "params_before": before,
        "params_after": num_params(model),
        "path": str(out_dir),
    }


def recover(pruned_dir: str | Path, config: str, overrides: Sequence[str], out_dir: str | Path) -> Path:
    """The recovery fine-tune: the train job (``config`` + ``overrides``) started from the pruned model
    (``model.name_or_path`` = ``pruned_dir``), written to ``out_dir``; returns its saved model directory.
    Runs through the runtime like any job (its own report.json; Ray started if none is up)."""
    from recsys.config.loader import load_config
    from recsys.jobs_registry import get_job, resolve_config_path
    from recsys.runtime import run_job

    spec = get_job("train")
    cfg = load_config(
        spec.config_cls,
        resolve_config_path("train", config),
        [*overrides, f"model.name_or_path={pruned_dir}", f"output_dir={out_dir}"],
    )
    report = run_job("train", cfg, spec.module.run, needs_ray=spec.needs_ray)
    model = Path(report.get("artifacts", {}).get("model", Path(out_dir) / "model"))
    if report.get("status") != "succeeded" or not (model / "recsys_model.json").is_file():
        raise RuntimeError(
            f"the recovery fine-tune of {str(pruned_dir)!r} failed ({report.get('error', 'no model written')}); "
            f"see {out_dir}/report.json, fix prune.recovery, or set prune.recovery: null"
        )
    return model
