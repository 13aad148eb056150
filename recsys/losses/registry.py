"""Where every loss is declared once: its name, its options (with their defaults), the model kinds it
fits and what it consumes.

A loss module ends with ``SPEC = register(LossSpec(...))``. ``recsys.training.config`` builds the
``loss`` config section from the registered ``params`` models (the one place loss defaults live) and
accepts exactly the registered names; a model kind's training task builds the loss's ``inputs`` from
its batch and calls ``spec.compute(inputs, params)``. Every module of ``recsys.losses`` is imported by
``load()``, so a new loss is one new file.

Input families (built by the kinds listed in ``LossSpec.kinds``; shapes in the dataclasses):
``Contrastive`` (query / positive / negative vectors), ``Pairwise`` (positive vs negative scores),
``Pointwise`` (a score and a label per row), ``Distillation`` (the student's score and a teacher's score
per row) and ``NextItem`` (sequence states vs the item table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from recsys.utils.registry import Registry


class LossParams(BaseModel):
    """Base of a loss's options: frozen values handed to the training task (defaults live here)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(LossParams):
    """A loss without options."""


@dataclass(frozen=True)
class Contrastive:
    """``query`` [B, D], ``positive`` [B, D] (row i matches query i), ``negative`` [B, D] | None."""

    query: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor | None


@dataclass(frozen=True)
class Pairwise:
    """``pos`` [B] (or [B, K]) scores that should beat ``neg`` [B] / [B, K]."""

    pos: torch.Tensor
    neg: torch.Tensor


@dataclass(frozen=True)
class Pointwise:
    """``scores`` [B] and ``labels`` [B] in [0, 1], in batch order (grouped losses: consecutive lists)."""

    scores: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class Distillation:
    """``student`` [B] scores, ``teacher`` [B] scores of the same rows (a teacher model's logits, the
    ``teacher_score`` column), ``labels`` [B] (> 0 = positive; mined rows are 0), in batch order."""

    student: torch.Tensor
    teacher: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class NextItem:
    """Sequence states ``hidden`` [B, L, H] predicting ``targets`` [B, L] (0 = no prediction) among
    ``num_items`` items (indices 1..num_items); ``item_table()`` [V+1, H], ``item_repr(ids)`` [..., H]."""

    hidden: torch.Tensor
    targets: torch.Tensor
    item_table: Callable[[], torch.Tensor]
    item_repr: Callable[[torch.Tensor], torch.Tensor]
    num_items: int
    num_negatives: int


@dataclass(frozen=True)
class LossSpec:
    """One loss, declared once (see the module docstring)."""

    name: str
    kinds: tuple[str, ...]  # model kinds it fits (``model.kind`` names)
    inputs: type  # Contrastive | Pairwise | Pointwise | Distillation | NextItem
    compute: Callable[[Any, Any], torch.Tensor]  # (inputs, params) -> scalar loss
    params: type[LossParams] = NoParams  # its options (fields of the ``loss`` config section)
    group_size: str | None = None  # option naming the rows per query list: data comes grouped, unshuffled
    threshold: float = 0.0  # pair-classification decision threshold on the trained score
    summary: str = ""


REGISTRY: Registry[LossSpec] = Registry("loss", "recsys.losses", field="loss.name")


def register(spec: LossSpec) -> LossSpec:
    """Add ``spec`` (a second spec of one name is an error: names are config values)."""
    return REGISTRY.register(spec)


def load() -> None:
    """Import every module of ``recsys.losses`` (each registers its loss)."""
    REGISTRY.load()


def names() -> list[str]:
    return REGISTRY.names()


def get(name: str, field: str = "loss.name") -> LossSpec:
    """The spec of ``name``; an unknown name fails naming ``field`` and the registered losses."""
    return REGISTRY.get(name, field)


def for_kind(kind: str) -> tuple[str, ...]:
    """Names of the losses that fit model kind ``kind``, in registration order."""
    return tuple(s.name for s in REGISTRY.values() if kind in s.kinds)


def specs() -> list[LossSpec]:
    return REGISTRY.values()
