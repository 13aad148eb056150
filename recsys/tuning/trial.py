"""One trial = one Ray Train run of the train job's loop, unchanged (Ray 2.60 / Train V2 pattern).

The Tune function trainable ``train_trial`` is the trial's *driver*: it builds the trial's
``TrainConfig`` (base + sampled params), prepares its data and trainer with
``recsys.training.trainer`` (``prepare`` / ``build_run_config`` / ``build_trainer``) and calls
``trainer.fit()``. A Train ``UserCallback`` forwards every validation report (metrics +
checkpoint path) from the Train controller to this driver, which hands it to Tune with
``ray.tune.report`` -- so schedulers (ASHA, median, PBT) see each validation as it happens.

Restarts: the Train run is named after the trial id, so a restarted trial driver (driver crash,
``Tuner.restore`` of an interrupted sweep) resumes its Train run from the latest Train checkpoint.
Under PBT the driver also reports each checkpoint to Tune, and a trial that PBT restarted from
another trial's checkpoint resumes from it (``resume_from``) in a fresh Train run.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import ray.tune
from ray.train.v2.api.callback import UserCallback
from ray.util.queue import Queue

from recsys.config.loader import expand_values
from recsys.training.trainer import build_run_config, build_trainer, changes_prepared_data, prepare
from recsys.tuning.space import train_config, trial_data

CHECKPOINT_KEY = "checkpoint_path"
TOTAL_STEPS_KEY = "total_steps"
_DONE = "__recsys_trial_done__"


class ForwardToTrial(UserCallback):
    """Train callback (runs in the Train controller): puts (metrics of rank 0, checkpoint path,
    extras) on a queue the trial driver drains."""

    def __init__(self, queue, extra: dict[str, Any]):
        self.queue = queue
        self.extra = extra

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        out = {**metrics[0], **self.extra}
        self.queue.put((out, checkpoint.path if checkpoint else None))


def _run_name(trial_id: str, resume_from: str | None) -> str:
    if resume_from is None:
        return f"train-{trial_id}"
    return f"train-{trial_id}-from-{hashlib.sha1(resume_from.encode()).hexdigest()[:8]}"


def _tune_checkpoint_source() -> str | None:
    """Train checkpoint a PBT exploit (or a restore) handed this trial through Tune, if any."""
    ckpt = ray.tune.get_checkpoint()
    if ckpt is None:
        return None
    return ckpt.path if ckpt.filesystem.type_name == "local" else None


def shares_prepared_data(space_keys: list[str]) -> bool:
    """True when no trial can change what ``prepare`` builds, so all can share one ``prepare(base)``
    made by the sweep's driver (else every trial prepares its own data). Which keys change it is
    ``recsys.training.trainer.PREPARE_KEYS``, the list that ``prepare`` itself is held to."""
    return not any(changes_prepared_data(k) for k in space_keys)


def train_trial(
    config: dict[str, Any],
    base: dict[str, Any],
    train_storage: str,
    report_checkpoints: bool,
    worker_start_timeout_s: float = 900.0,
    prepared=None,
) -> None:
    """Tune function trainable: one distributed Train run with ``config`` (dotted keys) on ``base``.
    ``prepared``: the driver's ``prepare(base)`` when the space cannot change the data (else None)."""
    # Read by the Train controller this driver starts: a trial may wait for workers that other trials hold.
    os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = str(worker_start_timeout_s)
    cfg = train_config(expand_values(trial_data(base, config)), check_paths=False)
    prep = prepared if prepared is not None else prepare(cfg)
    trial_id = ray.tune.get_context().get_trial_id()
    resume_from = _tune_checkpoint_source() if report_checkpoints else None
    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    run_config = build_run_config(cfg, train_storage, name=_run_name(trial_id, resume_from))
    run_config.callbacks = [
        *(run_config.callbacks or []),
        ForwardToTrial(queue, {TOTAL_STEPS_KEY: prep.extras.total_steps}),
    ]
    trainer = build_trainer(cfg, prep.datasets, run_config, prep.extras, resume_from=resume_from)
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # handed to the driver thread, re-raised there
            outcome["error"] = exc
        finally:
            queue.put((_DONE, None))

    thread = threading.Thread(target=fit, name="recsys-trial-fit", daemon=True)
    thread.start()
    while True:
        metrics, path = queue.get()
        if metrics == _DONE:
            break
        metrics = {**metrics, CHECKPOINT_KEY: path}
        if report_checkpoints and path:
            ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint(path))
        else:
            ray.tune.report(metrics)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
