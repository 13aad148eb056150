"""Knowledge distillation pieces on saved models: a smaller student sliced from a teacher's layers,
and the teacher's scores of (left, right) pairs as training labels.

``student_from_teacher("runs/train/local/model", [0, 2, 4], out)`` writes a 3-layer cross-encoder that
keeps the teacher's embeddings, the chosen transformer layers (in that order) and the head; the train job
builds the same student in memory from ``distil.student_layers``. Slicing works for BERT-style encoders
(BERT, MiniLM, RoBERTa, XLM-R, ELECTRA: ``encoder.layer.<i>`` with ``num_hidden_layers`` in the config).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from torch import nn

from recsys.models.base import hf_config

_LAYER_KEY = re.compile(r"^encoder\.layer\.(\d+)\.(.*)$")


def check_layers(layers: Sequence[int], num_layers: int, what: str = "distil.student_layers") -> list[int]:
    """``layers`` as a list, checked: non-empty, unique, increasing, each in [0, num_layers)."""
    out = [int(i) for i in layers]
    if not out:
        raise ValueError(f"{what} is empty; name the teacher layers the student keeps, e.g. [0, 2, 4]")
    if out != sorted(set(out)):
        raise ValueError(f"{what}={out}: give distinct layer indices in increasing order, e.g. [0, 2, 4]")
    if out[0] < 0 or out[-1] >= num_layers:
        raise ValueError(
            f"{what}={out}: the teacher has {num_layers} layers (indices 0..{num_layers - 1}); "
            "pick a subset of them"
        )
    return out


def slice_encoder(encoder: nn.Module, layers: Sequence[int]) -> nn.Module:
    """A new Hugging Face encoder of ``len(layers)`` layers: the embeddings (and pooler) of ``encoder``
    and its layers ``layers`` copied in order. Fails naming the architecture when it is not BERT-style."""
    from transformers import AutoModel  # lazy: transformers costs seconds

    config = hf_config(encoder)
    state = encoder.state_dict()
    found = {int(m.group(1)) for k in state if (m := _LAYER_KEY.match(k))}
    num_layers = getattr(config, "num_hidden_layers", None)
    if not found or not isinstance(num_layers, int) or found != set(range(num_layers)):
        raise ValueError(
            f"cannot slice a {getattr(config, 'model_type', type(encoder).__name__)!r} encoder: layer "
            "slicing needs a BERT-style encoder (encoder.layer.<i> and num_hidden_layers in its config: BERT, "
            "MiniLM, RoBERTa, XLM-R, ELECTRA); distil a student of such a teacher, or set "
            "distil.student_layers: null and give the student as model.name_or_path"
        )
    keep = check_layers(layers, num_layers)
    new_config = copy.deepcopy(config)
    new_config.num_hidden_layers = len(keep)
    student = cast(nn.Module, AutoModel.from_config(new_config))  # type: ignore[no-untyped-call]  # transformers leaves from_config unannotated
    new_of_old = {old: new for new, old in enumerate(keep)}
    sliced = {}
    for key, value in state.items():
        m = _LAYER_KEY.match(key)
        if m is None:
            sliced[key] = value
        elif int(m.group(1)) in new_of_old:
            sliced[f"encoder.layer.{new_of_old[int(m.group(1))]}.{m.group(2)}"] = value
    student.load_state_dict(sliced, strict=True)
    return student


def student_model(teacher: Any, layers: Sequence[int]) -> Any:
    """An in-memory student cross-encoder of ``teacher`` (a ``CrossEncoder``): its layers ``layers``,
    its embeddings, tokenizer, options and head (copied)."""
    from recsys.models.cross_encoder import CrossEncoder  # lazy: torch + transformers

    if not isinstance(teacher, CrossEncoder):
        raise ValueError(
            f"the teacher is a {getattr(teacher, 'model_type', type(teacher).__name__)!r} model; distillation "
            "slices a cross_encoder: give a directory written by `recsys run train` with model.kind: cross_encoder"
        )
    student = CrossEncoder(
        slice_encoder(teacher.encoder, layers), tokenizer=teacher.tokenizer, **teacher.config()
    )
    student.head.load_state_dict(teacher.head.state_dict())
    return student


def load_teacher(teacher_dir: str | Path) -> Any:
    """A saved cross-encoder directory -> the model (eval mode), with a clear error for another kind."""
    from recsys.models import load_model

    model = load_model(teacher_dir)
    if getattr(model, "model_type", None) != "cross_encoder":
        raise ValueError(
            f"distil.teacher {str(teacher_dir)!r} holds a {getattr(model, 'model_type', '?')!r} model; the "
            "teacher must be a cross_encoder (e.g. runs/train/local/model of `recsys run train --config local`)"
        )
    return model


def student_from_teacher(teacher_dir: str | Path, layers: Sequence[int], out_dir: str | Path) -> Path:
    """Write the student of the saved cross-encoder ``teacher_dir`` keeping ``layers`` to ``out_dir``
    (a saved recsys model directory; ``recsys.models.load_model`` opens it)."""
    return cast(Path, student_model(load_teacher(teacher_dir), layers).save_pretrained(out_dir))


def teacher_scores(
    teacher: Any, lefts: Sequence[str], rights: Sequence[str], batch_size: int = 64
) -> np.ndarray:
    """The teacher cross-encoder's logits of the pairs ``zip(lefts, rights)`` -> float32 [N] (batched)."""
    if len(lefts) != len(rights):
        raise ValueError(f"{len(lefts)} left texts but {len(rights)} right texts")
    if not len(lefts):
        return np.zeros(0, dtype=np.float32)
    return np.asarray(teacher.score(list(zip(lefts, rights)), batch_size=batch_size), dtype=np.float32)
