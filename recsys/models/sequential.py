"""SequentialRecommender: a SASRec-style causal transformer over a user's item history.

Each history position is the sum of an item-ID embedding and a projection of the item's text
embedding (precomputed by a pretrained encoder such as all-MiniLM-L6-v2; frozen or fine-tuned),
plus a positional embedding. Optional **user-feature tokens** (country, segment, price band, ...;
one embedding table per feature) are prepended to the sequence so that every position attends to
them. The hidden state at the last position is dotted with every item's representation to predict
the next item. ``use_id_embeddings=True, text_dim=0`` and no user features is plain SASRec.

Item index 0 is padding; item ``item_ids[i]`` has index ``i + 1``. Histories are left-padded.

Build (training): ``SequentialRecommender(item_ids=[...], hidden_size=64, ..., text_embeddings=arr)``.
Load: ``SequentialRecommender.from_pretrained(dir)`` or ``recsys.models.load_model(dir)``.

Inference::

    model = SequentialRecommender.from_pretrained("runs/train/local/model")
    s = model.score([["i1", "i7"]], candidates=[["i3", "i9", "i4"]])   # np.ndarray [N, C]
    s = model.score([["i1", "i7"]])                  # [N, num_items], columns in model.item_ids order
    s = model.score(histories, user_features=[{"country": "DE"}])   # with user-feature tokens
    top = model.recommend(["i1", "i7"], k=10)        # [(item_id, score), ...], history excluded

Items outside the model's vocabulary are dropped from histories and score ``-inf`` as candidates;
unknown user-feature values use the feature's "unknown" embedding (index 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from recsys.models.base import SavableModel


def trim_padding(items: torch.Tensor, keep_last: int = 0) -> int:
    """How many leading columns of left-padded ``items`` [B, L] are padding in every row (at most
    L - 1 - ``keep_last``): dropping them leaves every output of ``SequentialRecommender`` the same
    (its positions are right-aligned) and saves (L / longest row)^2 of the attention work."""
    real = (items != 0).any(0)  # [L]
    first = int(real.to(torch.int8).argmax()) if bool(real.any()) else items.shape[1] - 1
    return max(0, min(first, items.shape[1] - 1 - keep_last))


class SequentialRecommender(SavableModel):
    """Next-item prediction over item IDs + item text + user-feature tokens."""

    model_type = "sequential"

    def __init__(
        self,
        item_ids: Sequence[str],
        *,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.2,
        ffn_size: int | None = None,
        use_id_embeddings: bool = True,
        text_dim: int = 0,
        text_trainable: bool = False,
        text_embeddings: np.ndarray | None = None,
        user_features: Mapping[str, Sequence[str]] | None = None,
    ):
        super().__init__()
        if not use_id_embeddings and text_dim <= 0:
            raise ValueError("the model needs item-ID embeddings or item-text embeddings (text_dim > 0)")
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
        self.item_ids = [str(i) for i in item_ids]
        self.item_index = {item: i + 1 for i, item in enumerate(self.item_ids)}
        self.user_features = {k: [str(v) for v in vals] for k, vals in (user_features or {}).items()}
        self.user_index = {
            k: {v: i + 1 for i, v in enumerate(vals)} for k, vals in self.user_features.items()
        }
        self.hp: dict[str, Any] = {
            "hidden_size": hidden_size,
            "num_layers": num_layers,
            "num_heads": num_heads,
            "max_len": max_len,
            "dropout": dropout,
            "ffn_size": ffn_size,
            "use_id_embeddings": use_id_embeddings,
            "text_dim": text_dim,
            "text_trainable": text_trainable,
        }
        self.max_len = max_len
        n = len(self.item_ids) + 1
        self.id_emb = nn.Embedding(n, hidden_size, padding_idx=0) if use_id_embeddings else None
        self.text_emb: nn.Embedding | None = None
        self.text_proj: nn.Linear | None = None
        if text_dim > 0:
            self.text_emb = nn.Embedding(n, text_dim, padding_idx=0)
            if text_embeddings is not None:
                self.set_text_embeddings(text_embeddings)
            self.text_emb.weight.requires_grad_(text_trainable)
            self.text_proj = nn.Linear(text_dim, hidden_size)
        self.user_emb = nn.ModuleDict(
            {k: nn.Embedding(len(v) + 1, hidden_size) for k, v in self.user_features.items()}
        )
        self.pos_emb = nn.Embedding(max_len + len(self.user_features), hidden_size)
        self.emb_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            num_heads,
            ffn_size or hidden_size * 4,
            dropout,
            batch_first=True,
            norm_first=True,
            activation="gelu",
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(hidden_size)
        self._init_weights()

    def _init_weights(self) -> None:
        for emb in [self.id_emb, self.pos_emb, *self.user_emb.values()]:
            if emb is not None:
                nn.init.normal_(cast(torch.Tensor, emb.weight), std=0.02)
        if self.id_emb is not None:
            with torch.no_grad():
                self.id_emb.weight[0].zero_()

    def set_text_embeddings(self, emb: np.ndarray) -> None:
        """Rows in ``item_ids`` order, [num_items, text_dim] (the padding row is added)."""
        if self.text_emb is None:
            raise ValueError("this model has text_dim=0; build it with text_dim=<encoder dim>")
        emb = np.asarray(emb, dtype=np.float32)
        if emb.shape != (len(self.item_ids), self.text_emb.embedding_dim):
            raise ValueError(
                f"text embeddings have shape {emb.shape}, "
                f"expected ({len(self.item_ids)}, {self.text_emb.embedding_dim})"
            )
        with torch.no_grad():
            self.text_emb.weight[1:] = torch.from_numpy(emb)
            self.text_emb.weight[0].zero_()

    # -- save / load -------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"item_ids": self.item_ids, "user_features": self.user_features, **self.hp}

    @classmethod
    def _skeleton(cls, path: Path, config: dict[str, Any]) -> SequentialRecommender:
        return cls(**config)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    # -- forward -----------------------------------------------------------------------------------
    def item_repr(self, idx: torch.Tensor) -> torch.Tensor:
        """Item indices [...] -> representations [..., H]."""
        out = self.id_emb(idx) if self.id_emb is not None else 0.0
        if self.text_emb is not None and self.text_proj is not None:  # set together in __init__
            out = out + self.text_proj(self.text_emb(idx))
        return cast(torch.Tensor, out)  # __init__ requires id or text embeddings, so never the 0.0

    def all_item_repr(self) -> torch.Tensor:
        """[num_items + 1, H]; row 0 is padding."""
        idx = torch.arange(self.num_items + 1, device=self.pos_emb.weight.device)
        return self.item_repr(idx)

    def forward(self, items: torch.Tensor, user: torch.Tensor | None = None) -> torch.Tensor:
        """Left-padded item indices [B, L] (+ user-feature indices [B, F]) -> hidden states [B, L, H],
        position t predicting the item after ``items[:, t]``."""
        bsz, length = items.shape
        if length > self.max_len:
            raise ValueError(
                f"histories of {length} items exceed the model's max_len {self.max_len}; keep the last {self.max_len}"
            )
        x = self.item_repr(items) * math.sqrt(self.hp["hidden_size"])  # [B, L, H]
        pad = items == 0  # [B, L]
        n_user = len(self.user_features)
        if n_user:
            if user is None:
                user = torch.zeros(bsz, n_user, dtype=torch.long, device=items.device)
            u = torch.stack(
                [emb(user[:, j]) for j, emb in enumerate(self.user_emb.values())], dim=1
            )  # [B, F, H]
            x = torch.cat([u, x], dim=1)  # [B, F+L, H]
            pad = torch.cat([torch.zeros(bsz, n_user, dtype=torch.bool, device=items.device), pad], dim=1)
        s = x.shape[1]
        # item positions are right-aligned (the newest item is always at max_len - 1), so a batch
        # trimmed of its all-padding columns (``trim_padding``) sees the positions a full window sees
        pos = torch.cat(
            [torch.arange(n_user), torch.arange(self.max_len - length, self.max_len) + n_user]
        )  # [S]
        x = self.emb_dropout(x + self.pos_emb(pos.to(items.device)))  # [B, S, H]
        x = x * (~pad).unsqueeze(-1)  # padded positions carry nothing
        # a key is visible if it is not in the future and not padding; each position always sees itself
        causal = torch.ones(s, s, dtype=torch.bool, device=items.device).tril()  # [S, S]
        eye = torch.eye(s, dtype=torch.bool, device=items.device)
        allowed = (causal & ~pad.unsqueeze(1)) | eye  # [B, S, S]
        mask = torch.zeros(allowed.shape, dtype=x.dtype, device=items.device).masked_fill(
            ~allowed, float("-inf")
        )
        mask = mask.repeat_interleave(self.hp["num_heads"], dim=0)  # [B*heads, S, S]
        h: torch.Tensor = self.final_norm(self.encoder(x, mask=mask))  # [B, S, H]
        return h[:, n_user:]  # [B, L, H]

    trim_padding = staticmethod(trim_padding)  # model.trim_padding(items): the module function

    # -- inference ---------------------------------------------------------------------------------
    def encode_histories(
        self, histories: Sequence[Sequence[str]], user_features: Sequence[Mapping[str, Any]] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Histories of item ids -> (left-padded indices [N, L], user-feature indices [N, F] | None)."""
        items = torch.zeros(len(histories), self.max_len, dtype=torch.long)
        for r, hist in enumerate(histories):
            idx = [self.item_index[i] for i in map(str, hist) if i in self.item_index][-self.max_len :]
            if idx:
                items[r, -len(idx) :] = torch.tensor(idx)
        user = None
        if self.user_features:
            user = torch.zeros(len(histories), len(self.user_features), dtype=torch.long)
            for r, feats in enumerate(user_features or []):
                for j, (name, index) in enumerate(self.user_index.items()):
                    user[r, j] = index.get(str((feats or {}).get(name)), 0)
        return items, user

    @torch.inference_mode()
    def score(
        self,
        histories: Sequence[Sequence[str]],
        candidates: Sequence[Sequence[str]] | None = None,
        user_features: Sequence[Mapping[str, Any]] | None = None,
        batch_size: int = 256,
    ) -> np.ndarray:
        """Next-item scores: [N, C] for per-user ``candidates`` (unknown ids -> -inf, all lists the
        same length C), else [N, num_items] with columns in ``item_ids`` order."""
        was_training = self.training
        self.eval()
        dev = self.pos_emb.weight.device
        table = self.all_item_repr()  # [V+1, H]
        rows = []
        for start in range(0, len(histories), batch_size):
            items, user = self.encode_histories(
                histories[start : start + batch_size],
                user_features[start : start + batch_size] if user_features is not None else None,
            )
            items = items[:, self.trim_padding(items) :]  # [b, L'] without all-padding columns
            h = self(items.to(dev), user.to(dev) if user is not None else None)[:, -1]  # [b, H]
            if candidates is None:
                rows.append((h @ table[1:].T).float().cpu().numpy())  # [b, V]
                continue
            cand = candidates[start : start + batch_size]
            cidx = torch.tensor(
                [[self.item_index.get(str(c), 0) for c in cs] for cs in cand], device=dev
            )  # [b, C]
            s = torch.einsum("bh,bch->bc", h, table[cidx])  # [b, C]
            rows.append(s.masked_fill(cidx == 0, float("-inf")).float().cpu().numpy())
        self.train(was_training)
        if not rows:
            return np.zeros((0, len(candidates[0]) if candidates else self.num_items), dtype=np.float32)
        return np.concatenate(rows).astype(np.float32)

    def recommend(
        self,
        history: Sequence[str],
        k: int = 10,
        user_features: Mapping[str, Any] | None = None,
        exclude_history: bool = True,
    ) -> list[tuple[str, float]]:
        """Top-``k`` next items for one user as ``(item_id, score)``, best first."""
        s = self.score([history], user_features=[user_features or {}])[0]
        if exclude_history:
            for i in history:
                if str(i) in self.item_index:
                    s[self.item_index[str(i)] - 1] = -np.inf
        top = np.argsort(-s, kind="stable")[:k]
        return [(self.item_ids[i], float(s[i])) for i in top]
