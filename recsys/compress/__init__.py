"""Compressed model variants: ONNX export (fp32), int8 dynamic quantization (ONNX Runtime, torch.ao),
a variant directory format, scorers with the torch models' API, and latency benchmarks.

``load_variant(dir)`` opens a variant directory; ``load_scorer(dir, backend="auto")`` opens either a
variant or a saved torch model directory. Nothing heavy is imported until used.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "export_variant": "recsys.compress.variants",
    "read_variant": "recsys.compress.variants",
    "VariantError": "recsys.compress.variants",
    "VARIANT_KINDS": "recsys.compress.variants",
    "load_variant": "recsys.compress.scorers",
    "load_scorer": "recsys.compress.scorers",
}


def __getattr__(name: str) -> Any:  # lazy: onnxruntime and torch cost seconds
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = sorted(_LAZY)
