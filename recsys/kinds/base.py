"""The model-kind contract and its registry.

A model kind (``model.kind`` in a train config; ``model_type`` of a saved model) is one module of
``recsys.kinds`` ending with ``KIND = register(ModelKind(...))``. It owns every piece that differs by
kind: its config section (``model.<name>``), the model builder, the training task, the losses it
accepts (declared by the losses, ``recsys.losses.registry``) with its default loss and metric, its
data preparation and its evaluation scorer. Training and evaluation ask ``get(name)``; nothing
above this layer branches on a kind's name. ``load()`` imports every module here, so a new kind is
one new file.

Kinds sit above ``recsys.data`` / ``recsys.models`` / ``recsys.losses`` and below
``recsys.training`` / ``recsys.evaluation``: the interfaces both sides share (``Task``,
``RankingScores``, ``PairScores``, ``KindData``) live here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from recsys.config.base import StrictModel
from recsys.utils.registry import Registry

if TYPE_CHECKING:  # annotations only: Ray Data workers import the kinds' data helpers without torch
    import torch

BLOCK_SCORES = 2**22  # most scores ranked at once (queries x candidates): bounds validation memory


# -- what a training task hands to validation ------------------------------------------------------
@dataclass(frozen=True)
class RankingScores:
    """Validation as ranking. ``blocks`` yields (scores [Q, C] float, ``-inf`` = not ranked; relevant
    columns [Q, T] int, -1 = padding), consumed once; ``metrics`` are always computed; ``extra`` is
    added to the result (``valid_size``, ...)."""

    blocks: Iterable[tuple[np.ndarray, np.ndarray]]
    metrics: tuple[str, ...]
    extra: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PairScores:
    """Validation as pair classification: ``scores`` [N], ``labels`` [N] (> 0.5 = match), the fixed
    decision ``threshold`` on the score."""

    scores: np.ndarray
    labels: np.ndarray
    threshold: float
    extra: Mapping[str, float] = field(default_factory=dict)


def dot_blocks(
    queries: np.ndarray, items: np.ndarray, cols: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Dot-product scores of ``queries`` (Q, D) against ``items`` (N, D), at most ``BLOCK_SCORES`` at once."""
    step = max(1, BLOCK_SCORES // max(len(items), 1))
    for a in range(0, len(cols), step):
        yield queries[a : a + step] @ items.T, cols[a : a + step]


class Task(Protocol):
    """A model plus its loss in one module (DDP / DeepSpeed wrap it): ``task(batch) -> loss``.

    ``prefixes``: the tokenized groups of a batch (``q_``, ``p_``, ``''``) that ``trim_batch`` cuts to
    their longest row; ``validation_scores(batches)`` turns validation batches into scores (the metrics
    come from ``recsys.evaluation`` via ``recsys.training.validation``)."""

    prefixes: tuple[str, ...]

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def validation_scores(self, batches: Iterable[dict[str, torch.Tensor]]) -> RankingScores | PairScores: ...


@dataclass(frozen=True)
class KindData:
    """What a kind's ``prepare`` returns: Ray Datasets (``train``, ``valid``), row counts, and the
    frozen ``model_inputs`` the workers hand to ``build_model`` (vocabularies; None when none)."""

    datasets: dict[str, Any]
    counts: dict[str, int]
    model_inputs: Any = None


@dataclass(frozen=True)
class ModelKind:
    """Every piece of one model kind (see the module docstring). Callables take the train config
    (``recsys.training.config.TrainConfig``, typed ``Any`` here: kinds sit below training)."""

    name: str
    options: type[StrictModel]  # the ``model.<name>`` config section
    default_loss: str
    default_metric: str  # in-loop validation metric to select on
    table: str  # canonical table it trains on: pairs | sequences
    build_model: Callable[[Any, Any], torch.nn.Module]  # (cfg.model, model_inputs) -> SavableModel
    build_task: Callable[..., Any]  # (model, loss: LossSpec, params: LossParams, cfg.model) -> Task
    prepare: Callable[[Any], KindData]  # (cfg, read through trainer.PrepareView) -> KindData
    scorer: Callable[..., Any]  # (model, item_texts=, catalog=, history_len=) -> evaluation Scorer
    check: Callable[[Any], None] = lambda cfg: None  # cross-field checks on the train config (ValueError)
    pair_scorer: Callable[..., Any] | None = (
        None  # (model, batch_size=) -> fn(lefts, rights) -> scores [N]; matching
    )
    prepare_keys: tuple[str, ...] = ()  # ``model.<name>.*`` keys its prepare reads
    hard_negatives: bool = False  # accepts data.hard_negatives
    text: bool = True  # a text encoder (LoRA, adversarial training, freeze_layers apply)
    distil: bool = False  # accepts the train config's ``distil`` section (teacher scores, student layers)
    loss_inputs: tuple[type, ...] = ()  # input families (recsys.losses.registry) its task builds
    summary: str = ""


REGISTRY: Registry[ModelKind] = Registry("model kind", "recsys.kinds", field="model.kind")


def register(kind: ModelKind) -> ModelKind:
    """Add ``kind`` (one module per kind)."""
    return REGISTRY.register(kind)


def load() -> None:
    """Import every module of ``recsys.kinds`` (kind modules register themselves)."""
    REGISTRY.load()


def names() -> list[str]:
    return REGISTRY.names()


def get(name: str, field: str = "model.kind") -> ModelKind:
    """The kind called ``name``; an unknown name fails naming ``field`` and the registered kinds."""
    return REGISTRY.get(name, field)


def kinds() -> list[ModelKind]:
    return REGISTRY.values()
