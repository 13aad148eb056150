"""BiEncoder: a query tower and an item tower mapping text to vectors for retrieval.

Build (training): ``BiEncoder.from_encoder("all-MiniLM-L6-v2", pooling="mean", projection_dim=None,
shared=True, normalize=True)``. Load (serving, evaluation): ``BiEncoder.from_pretrained(dir)`` or
``recsys.models.load_model(dir)``.

Inference::

    model = BiEncoder.from_pretrained("runs/train/local/model")
    q = model.encode(["ps4 controller"], batch_size=64, tower="query")   # np.ndarray [N, D] float32
    v = model.encode(item_titles, tower="item")                          # np.ndarray [M, D]
    scores = q @ v.T                    # cosine similarity when normalize=True (the default)

With ``shared=True`` both towers are one encoder (and one projection); with ``shared=False`` the item
tower is a second copy of the encoder, trained separately.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.models.base import SavableModel, build_encoder, device_of, hf_config, load_tokenizer
from recsys.models.pooling import POOLINGS, pool

TOWERS = ("query", "item")


class BiEncoder(SavableModel):
    """Two-tower text encoder. ``embed(inputs, tower)`` for training, ``encode(texts)`` for inference."""

    model_type = "bi_encoder"

    def __init__(
        self,
        encoder: nn.Module,
        item_encoder: nn.Module | None = None,
        *,
        tokenizer: Any = None,
        pooling: str = "mean",
        projection_dim: int | None = None,
        normalize: bool = True,
        max_length: int = 128,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r}; use one of {POOLINGS}")
        self.encoder = encoder
        self.item_encoder = item_encoder  # None = shared towers
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length
        self.projection_dim = projection_dim
        hidden = hf_config(encoder).hidden_size
        self.projection = nn.Linear(hidden, projection_dim) if projection_dim else None
        self.item_projection = (
            nn.Linear(hidden, projection_dim) if projection_dim and item_encoder is not None else None
        )

    @classmethod
    def from_encoder(
        cls, name_or_path: str = "all-MiniLM-L6-v2", *, shared: bool = True, **kwargs: Any
    ) -> BiEncoder:
        """A new bi-encoder from a pretrained Hugging Face encoder (alias, local dir or hub id)."""
        encoder = build_encoder(name_or_path)
        item_encoder = None if shared else copy.deepcopy(encoder)
        return cls(encoder, item_encoder, tokenizer=load_tokenizer(name_or_path), **kwargs)

    # -- save / load -------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "pooling": self.pooling,
            "projection_dim": self.projection_dim,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "shared": self.item_encoder is None,
        }

    def hf_encoders(self) -> dict[str, nn.Module]:
        out = {"encoder": self.encoder}
        if self.item_encoder is not None:
            out["item_encoder"] = self.item_encoder
        return out

    @classmethod
    def _skeleton(cls, path: Path, config: dict[str, Any]) -> BiEncoder:
        cfg = dict(config)
        shared = cfg.pop("shared", True)
        enc = build_encoder(hf_config_dir=path / "encoder")
        item = None if shared else build_encoder(hf_config_dir=path / "item_encoder")
        return cls(enc, item, tokenizer=load_tokenizer(path), **cfg)

    # -- forward -----------------------------------------------------------------------------------
    @property
    def embedding_dim(self) -> int:
        return self.projection_dim or hf_config(self.encoder).hidden_size

    def embed(self, inputs: dict[str, torch.Tensor], tower: str = "query") -> torch.Tensor:
        """Tokenized ``inputs`` (input_ids, attention_mask[, token_type_ids]) [B, T] -> [B, D]."""
        if tower not in TOWERS:
            raise ValueError(f"tower={tower!r}; use 'query' or 'item'")
        item_side = tower == "item" and self.item_encoder is not None
        encoder = self.item_encoder if item_side and self.item_encoder is not None else self.encoder
        out = encoder(
            **{k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        )
        vec = pool(out.last_hidden_state, inputs["attention_mask"], self.pooling)  # [B, H]
        proj = self.item_projection if item_side else self.projection
        if proj is not None:
            vec = proj(vec)  # [B, D]
        return F.normalize(vec, dim=-1) if self.normalize else vec

    def forward(
        self, query: dict[str, torch.Tensor], item: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (query vectors [B, D], item vectors [B', D])."""
        return self.embed(query, "query"), self.embed(item, "item")

    # -- inference ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64, tower: str = "query") -> np.ndarray:
        """Encode ``texts`` with one tower -> float32 array [N, D] (rows in input order)."""
        if self.tokenizer is None:
            raise ValueError(
                "this BiEncoder has no tokenizer; build it with from_encoder() or from_pretrained()"
            )
        was_training = self.training
        self.eval()
        texts = [t if isinstance(t, str) else "" for t in texts]
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch
        out = np.zeros((len(texts), self.embedding_dim), dtype=np.float32)
        dev = device_of(self)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            tok = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            vec = self.embed({k: v.to(dev) for k, v in tok.items()}, tower)  # [b, D]
            out[idx] = vec.float().cpu().numpy()
        self.train(was_training)
        return out
