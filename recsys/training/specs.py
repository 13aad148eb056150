"""Frozen values that cross the process boundary into the Ray Train workers (no untyped dicts).

``WorkerSpec`` is the one item of ``train_loop_config``: the train config (dumped to JSON and
validated again on each worker, where its defaults come from), what the driver prepared
(``WorkerExtras``) and the restart / test hooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkerExtras:
    """Computed on the driver by ``trainer.prepare``: step counts and the kind's ``model_inputs``
    (``recsys.kinds.<kind>``: e.g. the sequential vocabulary; None when the kind needs none)."""

    steps_per_epoch: int
    total_steps: int
    model_inputs: Any = None


@dataclass(frozen=True)
class FaultSpec:
    """Test hook: SIGKILL the worker of ``rank`` once at optimizer step ``step`` (``marker`` makes it once)."""

    rank: int
    step: int
    marker: str


@dataclass(frozen=True)
class WorkerSpec:
    config: Mapping[str, Any]  # TrainConfig.model_dump(mode="json")
    extras: WorkerExtras
    resume_from: str | None = None
    fault: FaultSpec | None = None
    progress: Any = None  # recsys.training.progress board (a Ray actor handle) or None
