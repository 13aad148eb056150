"""Text -> L2-normalised embeddings with a trained ``BiEncoder`` directory or any pretrained HF
encoder (mean pooling), plus the callable class that a Ray Data actor pool maps over the catalog."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, cast

import numpy as np

from recsys.models.hub import load_pretrained, resolve_model_path


def model_fingerprint(path: str) -> str:
    """sha256 over the model directory's config and weight files (what the manifest records)."""
    h = hashlib.sha256()
    root = Path(path)
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.suffix in (".json", ".safetensors", ".bin", ".txt", ".model", ".onnx"):
            h.update(str(f.relative_to(root)).encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


class TextEncoder:
    """Encodes query / item text. A directory with ``recsys_model.json`` (model_type bi_encoder) is
    loaded with ``recsys.models.BiEncoder``; a compressed variant of one (``variant.json``, written by the
    compress job) with its backend (ONNX Runtime fp32 / int8, torch.ao int8); anything else resolves through
    ``recsys.models.hub`` and uses mean pooling (sentence-transformers semantics). ``backend`` (auto | torch |
    onnx | onnx-int8 | torch-int8) must match what a model directory holds; ``field`` names the config field
    in its errors."""

    def __init__(
        self,
        name_or_path: str,
        max_length: int = 64,
        device: str = "cpu",
        num_threads: int | None = None,
        backend: str = "auto",
        field: str = "encoder",
    ):
        import torch  # lazy: torch costs seconds; retrieval modules import this one

        if num_threads:
            torch.set_num_threads(num_threads)
        self.max_length = max_length
        self.device = device
        self.bi_encoder: Any = None
        path = Path(name_or_path)
        if (path / "recsys_model.json").is_file() or (path / "variant.json").is_file():
            from recsys.compress.scorers import load_scorer  # lazy: onnxruntime / torch cost seconds
            from recsys.compress.variants import VariantError, resolve_backend

            try:
                kind = resolve_backend(path, backend, model_type="bi_encoder")
            except VariantError as e:
                raise VariantError(f"{field} / {field}_backend: {e}") from e
            if kind == "torch":
                from recsys.models import BiEncoder  # lazy: BiEncoder imports torch

                self.bi_encoder = BiEncoder.from_pretrained(name_or_path, device=device)
            else:
                self.bi_encoder = load_scorer(path, kind, threads=num_threads)
            self.path = str(name_or_path)
        elif backend not in ("auto", "torch"):
            raise ValueError(
                f"{field}_backend={backend!r} needs a bi-encoder variant directory (variant.json), but "
                f"{name_or_path!r} is a pretrained encoder: set {field}_backend: auto, or compress a trained "
                "bi-encoder (recsys run compress) and point the path at its variant"
            )
        else:
            self.path = resolve_model_path(name_or_path)
            self.model, self.tokenizer = load_pretrained(self.path)
            self.model.to(device).eval()

    @property
    def dim(self) -> int:
        return int(self.encode(["dim probe"], kind="query").shape[1])

    def encode(self, texts: list[str], kind: str = "item", batch_size: int = 64) -> np.ndarray:
        """``texts`` -> float32 [len(texts), D], rows L2-normalised. ``kind``: query or item tower."""
        import torch  # lazy: torch costs seconds; retrieval modules import this one

        from recsys.models.pooling import pool  # lazy: recsys.models.pooling imports torch

        if self.bi_encoder is not None:
            out = self.bi_encoder.encode(list(texts), batch_size=batch_size, tower=kind)  # [N, D]
            return cast(np.ndarray, out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None))
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state  # [B, T, H]
                vec = pool(hidden, batch["attention_mask"], "mean")  # [B, H]
                chunks.append(torch.nn.functional.normalize(vec, dim=-1).cpu().numpy())
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 0), np.float32)


class EmbedBatch:
    """Ray Data ``map_batches`` callable class: adds an ``embedding`` column from ``text``."""

    def __init__(
        self,
        model_path: str,
        max_length: int,
        device: str = "cpu",
        batch_size: int = 64,
        backend: str = "auto",
    ):
        self.encoder = TextEncoder(
            model_path,
            max_length=max_length,
            device=device,
            num_threads=1,
            backend=backend,
            field="embed.model",
        )
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        emb = self.encoder.encode([str(t) for t in batch["text"]], kind="item", batch_size=self.batch_size)
        return {"row": batch["row"], "embedding": emb}  # row [B], embedding [B, D]
