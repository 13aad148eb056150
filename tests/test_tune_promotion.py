"""PromotionASHA (scheduler.name: asha_promote): the paper's ASHA rule, decision by decision, and two-trial
sweeps in which paused trials are promoted and resume from their rung's checkpoint."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pandas as pd
import pytest
from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from recsys.tuning.promotion import GatedVariantGenerator, PromotionASHA, rung_milestones

CONTINUE, PAUSE, STOP = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP


class FakeTrial:
    def __init__(self, trial_id: str):
        self.trial_id, self.status = trial_id, Trial.PENDING


class FakeSearch:
    def __init__(self):
        self.finished = False

    def is_finished(self) -> bool:
        return self.finished


class FakeController:
    """The parts of Tune's controller wrapper the scheduler uses."""

    def __init__(self, trials: list[FakeTrial]):
        self.trials, self.search_alg, self.stopped = list(trials), FakeSearch(), []

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        trial.status = Trial.TERMINATED
        self.stopped.append(trial.trial_id)


def _sched(max_running=2, mode="max") -> PromotionASHA:
    return PromotionASHA(
        time_attr="step",
        max_t=8,
        grace_period=2,
        reduction_factor=2,
        max_running=max_running,
        metric="ndcg@10",
        mode=mode,
    )


def _report(s, tc, trial, step, value):
    action = s.on_trial_result(tc, trial, {"step": step, "ndcg@10": value})
    if action == PAUSE:
        trial.status = Trial.PAUSED
    return action


def test_rung_milestones():
    assert rung_milestones(25, 150, 2) == [25, 50, 100]
    assert rung_milestones(2, 6, 2) == [2, 4]
    assert rung_milestones(1, 27, 3) == [1, 3, 9]
    assert rung_milestones(10, 10, 2) == []


def test_first_arrival_waits_and_promotion_follows_the_current_top():
    """Ray's stopping ASHA lets the first trial at a rung pass unseen; here it waits for evidence, and
    which waiting trial is promotable follows the top floor(n / rf) as results arrive."""
    trials = [FakeTrial(f"t{i}") for i in range(4)]
    tc = FakeController(trials)
    s = _sched(max_running=3)
    for t in trials[:3]:
        s.on_trial_add(tc, t)
        t.status = Trial.RUNNING
    t0, t1, t2, t3 = trials
    assert not s.may_start_new_trial()  # 3 of 3 slots
    assert _report(s, tc, t0, 2, 0.5) == PAUSE  # n=1: top 0
    assert s.may_start_new_trial()  # its slot is free, and nobody can be promoted yet
    s.on_trial_add(tc, t3)
    t3.status = Trial.RUNNING
    assert _report(s, tc, t1, 2, 0.3) == PAUSE  # n=2: top 1 = t0
    assert s.promotable() == [(2, "t0")]
    assert not s.may_start_new_trial()  # the free slot is t0's
    assert _report(s, tc, t2, 2, 0.9) == CONTINUE  # n=3: top 1 = t2, promoted on arrival; t0 lost its claim
    assert s.promotable() == []
    assert _report(s, tc, t3, 2, 0.7) == CONTINUE  # n=4: top 2 = t2, t3
    assert s.top(2) == ["t2", "t3"] and s.promoted[2] == {"t2", "t3"}
    assert s.waiting == {"t0": 2, "t1": 2} and s.promotable() == []


def test_slots_and_promotion_order():
    t0, t1, t2 = (FakeTrial(f"t{i}") for i in range(3))
    tc = FakeController([])
    s = _sched(max_running=1)

    def add(t):  # the searcher made a trial: Tune adds it, then starts it
        tc.trials.append(t)
        s.on_trial_add(tc, t)
        t.status = Trial.RUNNING

    add(t0)
    assert not s.may_start_new_trial()
    assert _report(s, tc, t0, 2, 0.5) == PAUSE
    assert s.may_start_new_trial()  # the paused trial freed its slot; nothing promotable yet
    add(t1)
    assert _report(s, tc, t1, 2, 0.2) == PAUSE  # t0 is now the top 1 of 2
    assert not s.may_start_new_trial()
    assert s.choose_trial_to_run(tc) is t0 and s.active == {"t0"} and s.waiting == {"t1": 2}
    t0.status = Trial.PENDING  # what Tune does with the chosen trial; asking again is idempotent
    assert s.choose_trial_to_run(tc) is t0 and s.active == {"t0"}
    t0.status = Trial.RUNNING
    assert _report(s, tc, t0, 4, 0.6) == PAUSE  # first at rung 4
    add(t2)
    assert _report(s, tc, t2, 2, 0.4) == PAUSE  # rung 2: 3 results, top 1 = t0 (already promoted)
    assert s.promotable() == []
    assert s.choose_trial_to_run(tc) is None and tc.stopped == []  # the searcher may still have trials
    tc.search_alg.finished = True
    assert s.choose_trial_to_run(tc) is t0  # end of sweep: t0 is alone at rung 4, the top rung's leader
    assert s.promoted[4] == {"t0"} and s.waiting == {"t1": 2, "t2": 2}
    t0.status = Trial.RUNNING
    assert _report(s, tc, t0, 8, 0.7) == STOP  # max_t
    s.on_trial_complete(tc, t0, {})
    t0.status = Trial.TERMINATED
    assert s.choose_trial_to_run(tc) is None
    assert sorted(tc.stopped) == ["t1", "t2"]  # rung 2 promoted t0 already: they lost there
    assert s.waiting == {} and s.active == set()


def test_mode_min_and_max_t_and_missing_metric():
    trials = [FakeTrial("a"), FakeTrial("b")]
    tc = FakeController(trials)
    s = _sched(max_running=2, mode="min")
    for t in trials:
        s.on_trial_add(tc, t)
    a, b = trials
    assert s.on_trial_result(tc, a, {"step": 1}) == CONTINUE  # no metric: nothing recorded
    assert _report(s, tc, a, 2, 0.5) == PAUSE
    assert _report(s, tc, b, 2, 0.1) == CONTINUE  # lower is better
    assert _report(s, tc, b, 5, 0.1) == PAUSE  # no report at step 4: recorded at rung 4 when it passes it
    assert s.recorded[2] == {"a": -0.5, "b": -0.1} and s.recorded[4] == {"b": -0.1}
    assert _report(s, tc, b, 8, 0.1) == STOP  # max_t


def _noop_trainable(config):
    return None


def test_gated_variant_generator_waits_for_a_slot():
    s = _sched(max_running=1)
    gen = GatedVariantGenerator(s, random_state=0)
    gen.add_configurations({"exp": {"run": _noop_trainable, "config": {"x": 1}, "num_samples": 3}})
    first = gen.next_trial()
    assert first is not None
    s.on_trial_add(None, first)
    assert gen.next_trial() is None  # one slot, taken
    s.active.clear()
    assert gen.next_trial() is not None


def test_gates_survive_a_state_round_trip():
    """Tune saves search-algorithm state and loads it into the live object on resume: the gate must
    remain the scheduler Tune runs, not a copy."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from recsys.tuning.promotion import GatedLimiter

    s = _sched(max_running=1)
    gen = GatedVariantGenerator(s, random_state=0)
    gen.add_configurations({"exp": {"run": _noop_trainable, "config": {"x": 1}, "num_samples": 2}})
    state = gen.get_state()
    assert "scheduler" not in state and gen.scheduler is s
    gen.set_state({**state, "scheduler": _sched()})
    assert gen.scheduler is s
    lim = GatedLimiter(OptunaSearch(metric="m", mode="max", space={"x": tune.uniform(0, 1)}), s)
    state = lim.get_state()
    assert "scheduler" not in state and lim.scheduler is s
    lim.set_state({**state, "scheduler": _sched()})
    assert lim.scheduler is s and lim.max_concurrent == 1


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_tiny_sweep_pauses_promotes_and_resumes_from_the_rung(
    ray_session, shared_data, tmp_path, monkeypatch
):
    """Two trials of the tiny sweep under asha_promote, with scores fixed by arrival order (the first trial
    to report is the best at every rung), so the outcome is exact: it waits at rungs 2 and 4 and is
    promoted each time (two restarts from its checkpoints: at rung 2 when the second trial loses to it,
    at rung 4 by the end-of-sweep rule) and completes 6 steps; the second trial waits at rung 2 and is
    stopped there."""
    from recsys.tuning.run import run_tuning

    seen: list[str] = []

    def by_arrival(self, result):
        if result["trial_id"] not in seen:
            seen.append(result["trial_id"])
        return -float(seen.index(result["trial_id"]))

    monkeypatch.setattr(PromotionASHA, "_score", by_arrival)
    _, cfg, out = _two_trial_tune(tmp_path)
    report = run_tuning(cfg, out)
    assert not report["interrupted"], report
    table = pd.read_parquet(out / "trials.parquet").set_index("trial_id")
    assert len(seen) == 2 and (table.error.isna()).all(), table.error.to_dict()
    assert table.loc[seen, "steps"].tolist() == [6, 2]
    assert table.loc[seen, "status"].tolist() == ["completed", "stopped_early"]
    assert table.loc[seen, "validations"].tolist() == [3, 1]  # resumed runs do not validate a step twice
    runs = out / "sweep" / "train_runs"
    resumed = sorted(p.name for p in runs.iterdir() if p.name.startswith(f"train-{seen[0]}-from-"))
    assert len(resumed) == 2, sorted(p.name for p in runs.iterdir())  # promoted at rung 2, then at rung 4
    assert not [p for p in runs.iterdir() if p.name.startswith(f"train-{seen[1]}-from-")]


def test_a_restarted_trial_keeps_the_results_its_driver_logged_since_the_last_sync(tmp_path):
    """Ray's JSON logger copies a restarting trial's result.json from storage over the driver's copy;
    storage syncs every 300 s, so a trial paused and promoted in between lost rows (CI: 2 validations
    of 3). KeepTrialLogs runs first and pushes the longer driver copy, so the pull brings it back."""
    from types import SimpleNamespace

    import pyarrow.fs as pafs
    from ray.tune.logger import JsonLoggerCallback

    from recsys.tuning.sweep import KeepTrialLogs

    local, stored = tmp_path / "driver", tmp_path / "storage"
    local.mkdir()
    stored.mkdir()
    rows = ['{"step": 2}', '{"step": 4}']
    (local / "result.json").write_text("\n".join(rows) + "\n")
    (stored / "result.json").write_text(rows[0] + "\n")  # the last sync: before the step-4 report
    trial = SimpleNamespace(
        checkpoint=object(),
        local_path=str(local),
        storage=SimpleNamespace(storage_filesystem=pafs.LocalFileSystem(), trial_fs_path=str(stored)),
        init_local_path=lambda: None,
    )
    KeepTrialLogs().on_trial_start(0, [], trial)
    JsonLoggerCallback()._restore_from_remote("result.json", trial)  # what Tune's logger does next
    assert (local / "result.json").read_text().splitlines() == rows
    assert (stored / "result.json").read_text().splitlines() == rows
    first = SimpleNamespace(**{**vars(trial), "checkpoint": None})
    (local / "result.json").write_text("")
    KeepTrialLogs().on_trial_start(0, [], first)  # a first start: nothing to restore, nothing pushed
    assert (stored / "result.json").read_text().splitlines() == rows


def _two_trial_tune(tmp_path: Path, *overrides: str):
    """The tiny sweep on the lr half of its grid (2 trials, 6 steps, rungs at 2 and 4): every promotion
    branch a sweep takes (a pause, a restart from a rung's checkpoint, the end-of-sweep promotion, a
    waiting trial stopped) at half the trial starts of the 2x2 grid; the rule itself is tested above."""
    import yaml

    from recsys.cli.entry import parse_job

    data = yaml.safe_load((Path(__file__).parents[1] / "configs/tune/tiny.yaml").read_text())
    del data["space"]["model.sequential.hidden_size"]
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    spec, cfg = parse_job("tune", str(path), [f"output_dir={out}", "scheduler.name=asha_promote", *overrides])
    return spec, cfg, out


class InterruptAtFirstPause(Callback):
    """Tune's stop signal (SIGUSR1, handled like Ctrl-C) as soon as a trial is paused at a rung."""

    def __init__(self):
        self.sent = False

    def on_step_end(self, iteration, trials, **info):
        if not self.sent and any(t.status == Trial.PAUSED for t in trials):
            self.sent = True
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_an_interrupted_promotion_sweep_resumes_paused_trials(ray_session, shared_data, tmp_path):
    """Interrupted while a trial waits at a rung, the same command resumes the sweep: the paused trial
    restarts from its checkpoint (not from step 0) and every grid point finishes without error."""
    from recsys.cli.entry import run_parsed
    from recsys.tuning.run import run_tuning

    spec, cfg, out = _two_trial_tune(tmp_path)
    first = run_tuning(cfg, out, callbacks=[InterruptAtFirstPause()])
    assert first["interrupted"]
    paused = pd.read_parquet(out / "trials.parquet")
    paused = paused[paused.status == "unfinished"].set_index("trial_id")
    second = run_parsed(spec, cfg)
    assert second["resumed"] and not second["interrupted"]
    table = pd.read_parquet(out / "trials.parquet").set_index("trial_id")
    assert len(table) == 2 and table.status.isin(["completed", "stopped_early"]).all(), table.status.to_dict()
    runs = Path(out) / "sweep" / "train_runs"
    reported = paused[paused.steps.notna()]  # an interruption can also catch a trial before its first report
    assert len(reported) >= 1
    for tid, row in reported.iterrows():  # each resumed from its Tune checkpoint: a "-from-" run, steps go on
        assert table.loc[tid, "steps"] >= row.steps
        if table.loc[tid, "steps"] > row.steps:
            assert any(p.name.startswith(f"train-{tid}-from-") for p in runs.iterdir()), tid
