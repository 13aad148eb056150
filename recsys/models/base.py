"""Save / load for every recsys model, the Hugging Face way, without the training code's state.

A saved model directory holds:

- ``recsys_model.json``: ``{"model_type": "bi_encoder" | "cross_encoder" | "sequential",
  "format_version": 1, "config": {...}}`` -- the constructor arguments that fix the architecture;
- ``model.safetensors``: every weight (encoder, heads, embeddings);
- ``encoder/config.json`` (and ``item_encoder/config.json`` for separate towers): the Hugging Face
  config of each transformer, so the architecture is rebuilt with ``AutoModel.from_config``;
- the tokenizer files (models over text) and, when written by training, ``README.md`` (model card).

``recsys.models.load_model(dir)`` reads ``model_type`` and returns the right class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
from safetensors.torch import load_model, save_file, save_model
from torch import nn

from recsys.models.hub import resolve_model_path

MODEL_FILE = "recsys_model.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


def read_model_meta(path: str | Path) -> dict[str, Any]:
    """The ``recsys_model.json`` of a saved model directory (clear error if it is not one)."""
    meta_path = Path(path) / MODEL_FILE
    if not meta_path.is_file() and (Path(path) / "variant.json").is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is a compressed variant (variant.json), not a torch model directory; open it with "
            "recsys.compress.load_variant(path) (or load_scorer(path, backend=...)), or point at the source model"
        )
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a saved recsys model (no {MODEL_FILE}); pass a directory written by "
            "save_pretrained(), e.g. runs/train/<scale>/model"
        )
    return cast(dict[str, Any], json.loads(meta_path.read_text(encoding="utf-8")))


RANDOM_TINY_BERT = "random-bert-tiny"
"""Model name of a tiny randomly initialised BERT (2 layers, width 32, seeded) with the MiniLM
tokenizer: smoke tests and ``tiny`` configs anywhere, no weights on disk."""


def _tiny_bert() -> nn.Module:
    # lazy: transformers costs seconds; only building an encoder needs it
    from transformers import BertConfig, BertModel

    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    model = BertModel(
        BertConfig(
            vocab_size=30522,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=512,
        )
    )
    torch.random.set_rng_state(state)
    return model


def build_encoder(name_or_path: str | None = None, hf_config_dir: str | Path | None = None) -> nn.Module:
    """A Hugging Face encoder: pretrained weights from ``name_or_path`` (resolved offline), or an
    empty skeleton from a saved ``config.json`` directory (weights come from model.safetensors)."""
    # lazy: transformers costs seconds; only building an encoder needs it
    from transformers import AutoConfig, AutoModel

    if hf_config_dir is not None:
        return cast(nn.Module, AutoModel.from_config(AutoConfig.from_pretrained(str(hf_config_dir))))  # type: ignore[no-untyped-call]  # transformers leaves from_config unannotated
    if name_or_path == RANDOM_TINY_BERT:
        return _tiny_bert()
    return cast(nn.Module, AutoModel.from_pretrained(resolve_model_path(name_or_path or "all-MiniLM-L6-v2")))


def hf_config(encoder: nn.Module) -> Any:
    """A Hugging Face encoder's ``config`` (a PretrainedConfig; nn.Module's ``__getattr__`` types it
    Tensor | Module)."""
    return encoder.config


def load_tokenizer(path: str | Path) -> Any:  # a Hugging Face tokenizer
    """Tokenizer of a saved recsys model dir, an HF dir/alias (``random-bert-tiny``: MiniLM's)."""
    from transformers import AutoTokenizer  # lazy: transformers costs seconds; only tokenizers need it

    p = Path(path)
    if str(path) == RANDOM_TINY_BERT:
        return AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    return AutoTokenizer.from_pretrained(
        str(p) if (p / MODEL_FILE).is_file() else resolve_model_path(str(path))
    )


def device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


class SavableModel(nn.Module):
    """Base class: ``save_pretrained(dir)`` / ``from_pretrained(dir)`` for a model whose architecture
    is fixed by ``config()`` (JSON-able constructor arguments) plus its Hugging Face encoders."""

    model_type: ClassVar[str] = ""
    registered: ClassVar[dict[str, type[SavableModel]]] = {}  # model_type -> class, filled on definition

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if (
            cls.model_type
        ):  # a model defined beside its kind (recsys.kinds.<kind>) loads without a table entry
            SavableModel.registered[cls.model_type] = cls

    def config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def hf_encoders(self) -> dict[str, nn.Module]:
        """Sub-folder name -> Hugging Face ``PreTrainedModel`` whose config must be saved."""
        return {}

    @classmethod
    def _skeleton(cls, path: Path, config: dict[str, Any]) -> SavableModel:  # pragma: no cover - abstract
        raise NotImplementedError

    def save_pretrained(self, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write the model to ``path`` (created). ``state_dict`` overrides the live weights (e.g. a
        ZeRO-3 consolidated one)."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"model_type": self.model_type, "format_version": FORMAT_VERSION, "config": self.config()}
        (out / MODEL_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for sub, enc in self.hf_encoders().items():
            hf_config(enc).save_pretrained(str(out / sub))
        if state_dict is not None:  # written as given (fp32 copies), the live model is not touched
            expected = set(self.state_dict())
            if set(state_dict) != expected:
                raise ValueError(
                    f"state_dict keys differ from the model's: missing {sorted(expected - set(state_dict))[:5]}, "
                    f"unexpected {sorted(set(state_dict) - expected)[:5]}"
                )
            tensors = {
                k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous().clone()
                for k, v in state_dict.items()
            }
            save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
        else:
            save_model(self, str(out / WEIGHTS_FILE))
        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(out))
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> SavableModel:
        """Load a directory written by ``save_pretrained`` (weights strict-checked), in eval mode."""
        p = Path(path)
        meta = read_model_meta(p)
        if meta.get("model_type") != cls.model_type:
            raise ValueError(
                f"{str(p)!r} holds a {meta.get('model_type')!r} model, not {cls.model_type!r}; "
                "use recsys.models.load_model(dir) to pick the class from the directory"
            )
        model = cls._skeleton(p, meta["config"])
        load_model(model, str(p / WEIGHTS_FILE), strict=True, device="cpu")
        return model.to(device).eval()
