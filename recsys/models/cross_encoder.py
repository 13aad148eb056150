"""CrossEncoder: one transformer over ``[CLS] query [SEP] item [SEP]`` -> a relevance score.

Used for reranking (query, product) and product matching (offer, offer). Build (training):
``CrossEncoder.from_encoder("all-MiniLM-L6-v2", num_labels=1)``. Load: ``CrossEncoder.from_pretrained(dir)``
or ``recsys.models.load_model(dir)``.

Inference::

    model = CrossEncoder.from_pretrained("runs/train/local/model")
    s = model.score([("ps4 controller", "DualShock 4 Wireless Controller")], batch_size=32)  # np.ndarray [N]
    p = model.score(pairs, activation="sigmoid")   # match probability (binary / BCE-trained models)

``num_labels=1`` (binary with BCE, graded relevance as regression, listwise softmax): ``score`` is
the logit. ``num_labels>1`` (multi-class): ``score`` is the logit of the last (most relevant)
class and ``predict`` returns all logits [N, num_labels].
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from recsys.models.base import SavableModel, build_encoder, device_of, hf_config, load_tokenizer
from recsys.models.pooling import POOLINGS, pool


class CrossEncoder(SavableModel):
    """Encoder + dropout + linear head over the pooled pair representation."""

    model_type = "cross_encoder"

    def __init__(
        self,
        encoder: nn.Module,
        *,
        tokenizer: Any = None,
        num_labels: int = 1,
        pooling: str = "cls",
        dropout: float = 0.1,
        max_length: int = 256,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r}; use one of {POOLINGS}")
        if num_labels < 1:
            raise ValueError("num_labels must be >= 1 (1 = binary/regression score)")
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.num_labels = num_labels
        self.pooling = pooling
        self.dropout_p = dropout
        self.max_length = max_length
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hf_config(encoder).hidden_size, num_labels)

    @classmethod
    def from_encoder(cls, name_or_path: str = "all-MiniLM-L6-v2", **kwargs: Any) -> CrossEncoder:
        return cls(build_encoder(name_or_path), tokenizer=load_tokenizer(name_or_path), **kwargs)

    def config(self) -> dict[str, Any]:
        return {
            "num_labels": self.num_labels,
            "pooling": self.pooling,
            "dropout": self.dropout_p,
            "max_length": self.max_length,
        }

    def hf_encoders(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder}

    @classmethod
    def _skeleton(cls, path: Path, config: dict[str, Any]) -> CrossEncoder:
        return cls(build_encoder(hf_config_dir=path / "encoder"), tokenizer=load_tokenizer(path), **config)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokenized pairs [B, T] -> logits [B] (num_labels == 1) or [B, num_labels]."""
        out = self.encoder(
            **{k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        )
        vec = pool(out.last_hidden_state, inputs["attention_mask"], self.pooling)  # [B, H]
        logits: torch.Tensor = self.head(self.dropout(vec))  # [B, num_labels]
        return logits.squeeze(-1) if self.num_labels == 1 else logits

    @torch.inference_mode()
    def predict(
        self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, pad_to_multiple_of: int = 0
    ) -> np.ndarray:
        """Logits for ``(query, item)`` pairs -> float32 [N] (num_labels == 1) or [N, num_labels].
        Batches group pairs of similar token length (:func:`predict_by_length`)."""
        if self.tokenizer is None:
            raise ValueError(
                "this CrossEncoder has no tokenizer; build it with from_encoder() or from_pretrained()"
            )
        was_training = self.training
        self.eval()
        dev = device_of(self)

        def run(batch: dict[str, np.ndarray]) -> np.ndarray:
            inputs = {k: torch.from_numpy(v).to(dev) for k, v in batch.items()}
            return cast(np.ndarray, self(inputs).float().cpu().numpy())

        out = predict_by_length(
            pairs, batch_size, self.num_labels, run, self.tokenizer, self.max_length, pad_to_multiple_of
        )
        self.train(was_training)
        return out

    def score(
        self,
        pairs: Sequence[tuple[str, str]],
        batch_size: int = 32,
        activation: str = "none",
        pad_to_multiple_of: int = 0,
    ) -> np.ndarray:
        """One relevance score per pair -> float32 [N]; ``activation="sigmoid"`` gives probabilities."""
        logits = self.predict(pairs, batch_size, pad_to_multiple_of)
        s = logits if self.num_labels == 1 else logits[:, -1]
        if activation == "sigmoid":
            return cast(np.ndarray, (1.0 / (1.0 + np.exp(-s))).astype(np.float32))  # numpy stubs: Any here
        if activation != "none":
            raise ValueError(f"activation={activation!r}; use 'none' or 'sigmoid'")
        return s


def tokenize_by_length(
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    max_length: int,
    batch_size: int,
    pad_to_multiple_of: int = 0,
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Tokenizes every pair in one fast-tokenizer call (its Rust batch encoder runs outside the GIL), then
    yields ``(rows, batch)``: batches of ``batch_size`` pairs of similar token length, each padded only to its
    own longest row (rounded up to a multiple of ``pad_to_multiple_of`` when > 0: a few static shapes for
    torch.compile / CUDA graphs). ``batch``: ``input_ids``, ``attention_mask``, ``token_type_ids`` int64 [B, T]."""
    if not pairs:
        return
    enc = tokenizer(
        [a for a, _ in pairs],
        [b for _, b in pairs],
        truncation="longest_first",
        max_length=max_length,
        padding=False,
        return_token_type_ids=True,
        return_attention_mask=False,
    )
    ids, types = enc["input_ids"], enc["token_type_ids"]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    pad_id = int(tokenizer.pad_token_id or 0)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = int(lengths[rows[0]])
        if pad_to_multiple_of > 0:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        token_types = np.zeros((len(rows), width), dtype=np.int64)
        for j, i in enumerate(rows):
            n = int(lengths[i])
            input_ids[j, :n], mask[j, :n], token_types[j, :n] = ids[i], 1, types[i]
        yield rows, {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": token_types}


def predict_by_length(
    pairs: Sequence[tuple[str, str]],
    batch_size: int,
    num_labels: int,
    run: Callable[[dict[str, np.ndarray]], np.ndarray],
    tokenizer: Any,
    max_length: int,
    pad_to_multiple_of: int = 0,
) -> np.ndarray:
    """Scores ``pairs`` in batches of similar token length (:func:`tokenize_by_length`: less padding, one
    tokenizer call) and returns them in input order: float32 [N] (num_labels == 1) or [N, num_labels].
    ``run(batch)`` scores one tokenized batch (the torch model here, ONNX Runtime in
    ``recsys.compress.scorers``)."""
    pairs = [(str(a or ""), str(b or "")) for a, b in pairs]
    shape = (len(pairs),) if num_labels == 1 else (len(pairs), num_labels)
    out = np.zeros(shape, dtype=np.float32)
    for rows, batch in tokenize_by_length(tokenizer, pairs, max_length, batch_size, pad_to_multiple_of):
        out[rows] = run(batch)
    return out
