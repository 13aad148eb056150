"""LoRA adapters on a model's Hugging Face encoders (peft), and merging them back for export."""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn


def apply_lora(model: nn.Module, r: int, alpha: int, dropout: float, target_modules: list[str]) -> nn.Module:
    """Wrap every HF encoder of ``model`` (``hf_encoders()``) with LoRA; only adapters (and heads) train."""
    from peft import LoraConfig, get_peft_model  # lazy: peft is slow to import; only LoRA runs need it

    for attr in ("encoder", "item_encoder"):
        enc = getattr(model, attr, None)
        if enc is None:
            continue
        names = {n.rsplit(".", 1)[-1] for n, _ in enc.named_modules()}
        targets = [t for t in target_modules if t in names]
        if not targets:
            raise ValueError(
                f"lora.target_modules {target_modules} match no module of the encoder; "
                f"pick from e.g. {sorted(n for n in names if n)[:12]}"
            )
        cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
        setattr(model, attr, get_peft_model(enc, cfg))
    return model


def has_lora(model: nn.Module) -> bool:
    from peft import PeftModel  # lazy: peft is slow to import; only LoRA runs need it

    return any(isinstance(getattr(model, a, None), PeftModel) for a in ("encoder", "item_encoder"))


def merged_copy(model: nn.Module, adapter_dir: Path | None = None) -> nn.Module:
    """A copy of ``model`` with LoRA merged into plain encoders (saving adapters to ``adapter_dir``)."""
    from peft import PeftModel  # lazy: peft is slow to import; only LoRA runs need it

    out = copy.deepcopy(model)
    for attr in ("encoder", "item_encoder"):
        enc = getattr(out, attr, None)
        if isinstance(enc, PeftModel):
            if adapter_dir is not None:
                enc.save_pretrained(str(adapter_dir / attr))
            setattr(out, attr, enc.merge_and_unload())
    return out
