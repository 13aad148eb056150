"""Scorers over a variant directory with the torch models' inference API.

``OnnxCrossEncoder.score(pairs, batch_size, activation)`` / ``predict`` match ``CrossEncoder``;
``OnnxBiEncoder.encode(texts, batch_size, tower)`` / ``embedding_dim`` match ``BiEncoder``. Batches are
formed as the torch models form them (longest first, padded per batch), so scores line up row for row.

``load_variant(dir, threads=...)`` opens a variant; ``load_scorer(dir, backend="auto")`` opens a variant
or a saved torch model directory (``backend: torch | onnx | onnx-int8 | torch-int8`` checks which).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from recsys.compress.variants import SOURCE_META_FILE, VariantError, check_onnx_runs, is_variant, read_variant
from recsys.models.cross_encoder import predict_by_length

BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "torch-int8")


def _session(path: Path, threads: int | None) -> Any:  # an onnxruntime.InferenceSession
    import onnxruntime as ort

    check_onnx_runs(path)  # a clear error naming the op before the real session
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or 0  # 0 = ONNX Runtime's default (one per core)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class _OnnxModel:
    model_type = ""

    def __init__(self, path: str | Path, threads: int | None = None):
        from transformers import AutoTokenizer  # lazy: transformers costs seconds

        self.path = Path(path)
        self.variant = read_variant(self.path)
        if self.variant["backend"] != "onnxruntime":
            raise VariantError(
                f"{str(self.path)!r} is a {self.variant['kind']} variant; open it with load_variant"
            )
        source = json.loads((self.path / SOURCE_META_FILE).read_text(encoding="utf-8"))
        self.config: dict[str, Any] = dict(source["config"])
        self.max_length = int(self.config.get("max_length", 128))
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self.threads = threads
        self.sessions = {name: _session(self.path / name, threads) for name in self.variant["onnx_files"]}
        self._inputs = {
            name: [i.name for i in sess.get_inputs()] for name, sess in self.sessions.items()
        }  # constant folding may drop an unused input (token_type_ids)

    def _run(self, graph: str, tok: Any) -> np.ndarray:
        feed = {k: np.asarray(tok[k], dtype=np.int64) for k in self._inputs[graph]}
        return cast(np.ndarray, self.sessions[graph].run(None, feed)[0])


class OnnxCrossEncoder(_OnnxModel):
    """A cross-encoder variant run by ONNX Runtime; ``score`` as ``CrossEncoder.score``."""

    model_type = "cross_encoder"

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__(path, threads)
        self.num_labels = int(self.config.get("num_labels", 1))

    def predict(
        self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, pad_to_multiple_of: int = 0
    ) -> np.ndarray:
        """Logits for ``(query, item)`` pairs -> float32 [N] (num_labels == 1) or [N, num_labels].
        ONNX Runtime runs each batch outside the GIL on its own intra-op threads."""
        return predict_by_length(
            pairs,
            batch_size,
            self.num_labels,
            lambda batch: self._run("model.onnx", batch),
            self.tokenizer,
            self.max_length,
            pad_to_multiple_of,
        )

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
            return cast(np.ndarray, (1.0 / (1.0 + np.exp(-s))).astype(np.float32))
        if activation != "none":
            raise ValueError(f"activation={activation!r}; use 'none' or 'sigmoid'")
        return s


class OnnxBiEncoder(_OnnxModel):
    """A bi-encoder variant run by ONNX Runtime; ``encode`` as ``BiEncoder.encode``."""

    model_type = "bi_encoder"

    @property
    def embedding_dim(self) -> int:
        dims = self.sessions["model.onnx"].get_outputs()[0].shape
        return int(dims[-1])

    def encode(self, texts: Sequence[str], batch_size: int = 64, tower: str = "query") -> np.ndarray:
        """Encode ``texts`` with one tower -> float32 array [N, D] (rows in input order)."""
        if tower not in ("query", "item"):
            raise ValueError(f"tower={tower!r}; use 'query' or 'item'")
        graph = "item_model.onnx" if tower == "item" and "item_model.onnx" in self.sessions else "model.onnx"
        texts = [t if isinstance(t, str) else "" for t in texts]
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.embedding_dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            tok = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
                return_token_type_ids=True,
            )
            out[idx] = self._run(graph, tok)
        return out


def _torch_model(path: Path, threads: int | None, int8: bool) -> Any:
    import torch

    from recsys.compress.quantize import quantize_torch_int8
    from recsys.models import load_model

    if threads:
        torch.set_num_threads(threads)
    model = load_model(path)
    return quantize_torch_int8(model) if int8 else model


def load_variant(path: str | Path, threads: int | None = None) -> Any:
    """Open a variant directory: an ONNX Runtime scorer (``threads`` intra-op threads) or, for
    ``torch-int8``, the torch model with ``torch.ao`` dynamic int8 applied."""
    meta = read_variant(path)
    if meta["backend"] == "torch":
        return _torch_model(Path(path), threads, int8=True)
    if meta["model_type"] == "cross_encoder":
        return OnnxCrossEncoder(path, threads)
    if meta["model_type"] == "bi_encoder":
        return OnnxBiEncoder(path, threads)
    raise VariantError(f"{str(path)!r}: variant of unsupported model kind {meta['model_type']!r}")


def load_scorer(path: str | Path, backend: str = "auto", threads: int | None = None) -> Any:
    """A model with the scoring API from a torch model directory or a variant directory.

    ``backend="auto"`` picks by what the directory holds; any other value must match it (``torch``:
    a saved model directory; ``onnx`` / ``onnx-int8`` / ``torch-int8``: a variant of that kind).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; use one of {BACKENDS}")
    p = Path(path)
    if is_variant(p):
        kind = read_variant(p)["kind"]
        if backend not in ("auto", kind):
            raise VariantError(
                f"{str(p)!r} is a {kind!r} variant, not {backend!r}; set backend: {kind} or point the path at "
                f"the {backend} variant (runs/compress/<scale>/variants/{backend})"
            )
        return load_variant(p, threads)
    if backend not in ("auto", "torch", "torch-int8"):
        raise VariantError(
            f"backend {backend!r} needs a variant directory, but {str(p)!r} has no variant.json; build it with "
            "recsys run compress --config configs/compress/<scale>.yaml and point the path at its variants/"
            f"{backend}"
        )
    return _torch_model(p, threads, int8=backend == "torch-int8")
