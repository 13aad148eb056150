"""ASHA by promotion (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020).

Ray's ``ASHAScheduler`` is the *stopping* variant: a trial that reaches a rung continues unless
results already recorded there beat it, so the first trials to reach each rung always continue
(there is nothing, or too little, to compare them with). With small sweeps (8-16 trials, 2 at a
time) those free passes cost most of the saving (docs/BENCHMARKS.md, Tuning).

``PromotionASHA`` is the paper's variant. A trial that reaches a rung is recorded there and

- continues if it is in the top ``floor(n / reduction_factor)`` of the ``n`` results recorded at that
  rung so far (it is promoted);
- else it is **paused** (its driver stops; the trial's last Train checkpoint is kept). When later
  results make it one of the top ``floor(n / reduction_factor)``, it is promoted: Tune restarts it
  from that checkpoint (``recsys.tuning.trial``: a fresh Train run resumed from it).

A free slot goes to a promotable paused trial first (highest rung first), else to a new trial.
When the search algorithm has no trials left and nothing runs, a rung where nobody was promoted
(floor(n / reduction_factor) = 0: e.g. the single trial that reached the top rung) promotes its best,
so a finite sweep always trains its leader to ``max_t``; the other waiting trials are stopped: they
lost at their rung. Each promotion costs a trial restart (Train workers, data).

Tune counts a paused trial as live in its concurrency limits, so the search algorithm must be
gated by this scheduler's running count instead: ``GatedLimiter`` (a ``Searcher`` such as Optuna)
and ``GatedVariantGenerator`` (random / grid) ask ``PromotionASHA.may_start_new_trial``.

Resuming an interrupted sweep (``Tuner.restore``) does not bring back the rung records: Tune does not
persist scheduler state. Tune restarts every unfinished trial, paused ones included, from its last
checkpoint (all at once: their Train runs queue for workers), and they are judged against the results
recorded after the restart.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher

from recsys.utils.log import get_logger

log = get_logger("recsys.tune")


def rung_milestones(grace_period: int, max_t: int, reduction_factor: float) -> list[int]:
    """Progress values (time_attr units) at which trials are compared: grace * rf^k below max_t."""
    out, k = [], 0
    while (m := int(round(grace_period * reduction_factor**k))) < max_t:
        out.append(m)
        k += 1
    return out


class PromotionASHA(FIFOScheduler):
    """Asynchronous successive halving by promotion (see the module docstring)."""

    def __init__(
        self,
        *,
        time_attr: str,
        max_t: int,
        grace_period: int,
        reduction_factor: float,
        max_running: int,
        metric: str | None = None,
        mode: str | None = None,
    ):
        super().__init__()
        self._supports_buffered_results = (
            False  # decide at every result: a buffered trial would run past its rung
        )
        if max_running < 1:
            raise ValueError(f"max_running must be >= 1, got {max_running}")
        self._time_attr, self._max_t, self._rf, self.max_running = (
            time_attr,
            max_t,
            reduction_factor,
            max_running,
        )
        self._metric, self._mode = metric, mode
        self.rungs = rung_milestones(grace_period, max_t, reduction_factor)
        self.recorded: dict[int, dict[str, float]] = {
            m: {} for m in self.rungs
        }  # rung -> trial id -> score (higher = better)
        self.promoted: dict[int, set[str]] = {m: set() for m in self.rungs}
        self.waiting: dict[str, int] = {}  # paused trial id -> rung it waits at
        self.active: set[str] = (
            set()
        )  # trials added or promoted, not paused / finished (pending ones included)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if self._metric and metric and metric != self._metric or self._mode and mode and mode != self._mode:
            return False
        self._metric, self._mode = self._metric or metric, self._mode or mode
        return True

    # -- bookkeeping ------------------------------------------------------------------------------
    def top(self, rung: int) -> list[str]:
        """Trial ids in the top floor(n / reduction_factor) of the n results recorded at ``rung``
        (ties: the earlier result first)."""
        rec = list(self.recorded[rung].items())
        k = math.floor(len(rec) / self._rf)
        return [tid for tid, _ in sorted(rec, key=lambda kv: -kv[1])[:k]]

    def promotable(self) -> list[tuple[int, str]]:
        """(rung, trial id) of waiting trials that may now be promoted, highest rung first."""
        return [
            (m, tid)
            for m in reversed(self.rungs)
            for tid in self.top(m)
            if self.waiting.get(tid) == m and tid not in self.promoted[m]
        ]

    def may_start_new_trial(self) -> bool:
        """For the search algorithm: a slot is free and no waiting trial has a claim on it."""
        return len(self.active) < self.max_running and not self.promotable()

    def _score(self, result: dict[str, Any]) -> float:
        value = result.get(self._metric) if self._metric is not None else None
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return -math.inf
        return float(value) if self._mode == "max" else -float(value)

    # -- Tune callbacks ---------------------------------------------------------------------------
    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        self.active.add(trial.trial_id)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict[str, Any]) -> str:
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        t, tid = result[self._time_attr], trial.trial_id
        if t >= self._max_t:
            return TrialScheduler.STOP
        reached = [m for m in self.rungs if m <= t and tid not in self.recorded[m]]
        if not reached:
            return TrialScheduler.CONTINUE
        rung = reached[-1]
        self.recorded[rung][tid] = self._score(result)
        if tid in self.top(rung):
            self.promoted[rung].add(tid)
            return TrialScheduler.CONTINUE
        self.active.discard(tid)
        self.waiting[tid] = rung
        log.info("trial %s waits at rung %s (%d result(s) there)", tid, rung, len(self.recorded[rung]))
        return TrialScheduler.PAUSE

    def _forget(self, trial: Trial) -> None:
        self.active.discard(trial.trial_id)
        self.waiting.pop(trial.trial_id, None)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict[str, Any]) -> None:
        self._forget(trial)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        self._forget(trial)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._forget(trial)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        trials = {t.trial_id: t for t in tune_controller.get_trials()}
        if len(self.active) < self.max_running:
            for rung, tid in self.promotable():
                trial = trials.get(tid)
                if trial is not None and trial.status == Trial.PAUSED:  # not while its pause is still saving
                    self.promoted[rung].add(tid)
                    self.waiting.pop(tid)
                    self.active.add(tid)
                    log.info("trial %s promoted from rung %s", tid, rung)
                    return trial
        pending = [t for t in trials.values() if t.status == Trial.PENDING]
        if pending:
            return pending[0]
        if (
            not self.active
            and self.waiting
            and not self.promotable()
            and tune_controller.search_alg.is_finished()
        ):
            return self._end_of_sweep(tune_controller, trials)
        return None

    def _end_of_sweep(self, tune_controller, trials: dict[str, Trial]) -> Trial | None:
        """No trial can come or report any more. A rung whose floor(n / rf) is 0 (too few results, e.g.
        the one trial that reached the top rung) promotes its best waiting trial, so that a finite
        sweep always trains its leader to max_t; every other waiting trial lost at its rung."""
        for rung in reversed(self.rungs):
            here = [tid for tid, m in self.waiting.items() if m == rung]
            if (
                here
                and not self.promoted[rung]
                and all(trials[t].status == Trial.PAUSED for t in here if t in trials)
            ):
                best = max(here, key=lambda tid: self.recorded[rung][tid])
                self.promoted[rung].add(best)
                self.waiting.pop(best)
                self.active.add(best)
                log.info(
                    "trial %s promoted from rung %s (end of sweep: no other result to wait for)", best, rung
                )
                return trials[best]
        for tid in list(self.waiting):
            if trials.get(tid) is not None and trials[tid].status == Trial.PAUSED:
                self.waiting.pop(tid)
                tune_controller.stop_trial(trials[tid])
        return None

    def debug_string(self) -> str:
        rungs = ", ".join(
            f"{m}: {len(self.recorded[m])} recorded / {len(self.promoted[m])} promoted" for m in self.rungs
        )
        return (
            f"PromotionASHA (rf {self._rf}): {rungs}; {len(self.waiting)} waiting, {len(self.active)} active"
        )


class _KeepsGate:
    """Tune saves a search algorithm's ``__dict__`` and loads it back into the live object on resume: the
    gate must stay the scheduler Tune runs, not come back as a stale copy of the one saved."""

    scheduler: PromotionASHA

    def get_state(self):
        gate = self.__dict__.pop("scheduler")
        try:
            return super().get_state()  # type: ignore[misc]  # mixin: super() is the search algorithm
        finally:
            self.scheduler = gate

    def set_state(self, state) -> None:
        super().set_state({k: v for k, v in state.items() if k != "scheduler"})  # type: ignore[misc]  # mixin


class GatedLimiter(_KeepsGate, ConcurrencyLimiter):
    """``ConcurrencyLimiter`` whose slots are the scheduler's running trials (paused ones free theirs)."""

    def __init__(self, searcher: Searcher, scheduler: PromotionASHA):
        super().__init__(searcher, max_concurrent=scheduler.max_running)
        self.scheduler = scheduler

    def suggest(self, trial_id: str) -> dict | None:
        if not self.scheduler.may_start_new_trial():
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion not in (None, Searcher.FINISHED):
            self.live_trials.add(trial_id)  # so that its result reaches the searcher on completion
            self.num_unfinished_live_trials += 1
        return suggestion


class GatedVariantGenerator(_KeepsGate, BasicVariantGenerator):
    """``BasicVariantGenerator`` (random / grid) gated by the scheduler's running trials."""

    def __init__(self, scheduler: PromotionASHA, **kwargs: Any):
        super().__init__(max_concurrent=0, **kwargs)
        self.scheduler = scheduler

    def next_trial(self):
        if not self.is_finished() and not self.scheduler.may_start_new_trial():
            return None
        return super().next_trial()
