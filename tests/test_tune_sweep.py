"""End to end: the tiny sweep (2x2 grid x ASHA on a Games-6k slice) is interrupted after its first
finished trial, resumed by re-running `recsys run tune --config tiny`, and hands back a best.yaml
that `recsys run train` accepts unchanged."""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
from ray.tune import Callback

from recsys.cli.entry import parse_job, run_parsed

# 3-5 minutes on an idle 2-core machine (one trial at a time); the timeout leaves room for a loaded one.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


class InterruptAfterFirstTrial(Callback):
    """Sends the driver Tune's stop signal when the first trial finishes (SIGUSR1: Tune handles it
    like Ctrl-C -- save the experiment state and stop -- without pytest's KeyboardInterrupt)."""

    def __init__(self):
        self.sent = False

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.fixture(scope="module")
def resumed_sweep(ray_session, shared_data, tmp_path_factory):
    from recsys.tuning.run import run_tuning

    out = tmp_path_factory.mktemp("tune-tiny")
    spec, cfg = parse_job("tune", "tiny", [f"output_dir={out}"])
    first = run_tuning(cfg, out, callbacks=[InterruptAfterFirstTrial()])
    first_table = pd.read_parquet(out / "trials.parquet")
    runs = out / "sweep" / "train_runs"
    first_files = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()}
    second = run_parsed(spec, cfg)  # `recsys run tune --config tiny` again: resumes
    return {
        "out": out,
        "first": first,
        "first_table": first_table,
        "first_files": first_files,
        "second": second,
    }


def test_a_resumed_sweep_reports_to_this_runs_callbacks(ray_session, tmp_path):
    """Tuner.restore brings back the RunConfig pickled in tuner.pkl: the resumed sweep must use the
    callbacks given now (before the fix, the first run's stop hook fired again in the resumed run and
    stopped it before the grid's last point was generated), and tuner.pkl must hold none."""
    import pickle

    import yaml

    from recsys.config.loader import load_config
    from recsys.tuning.config import TuneJobConfig
    from recsys.tuning.space import validate_space
    from recsys.tuning.sweep import build_tuner, experiment_path

    data = yaml.safe_load((Path(__file__).parents[1] / "configs/tune/tiny.yaml").read_text())
    cfg = load_config(TuneJobConfig, None, data={**data, "output_dir": str(tmp_path)}, check_paths=False)
    base = validate_space(dict(cfg.base), cfg.space, check_paths=False)
    first, second = InterruptAfterFirstTrial(), InterruptAfterFirstTrial()
    stub = {"prepared": "stub"}  # the space leaves data alone: trials would share this, none runs here
    tuner, resumed = build_tuner(cfg, dict(cfg.base), base, tmp_path, [first], prepared=stub)
    assert not resumed and tuner._local_tuner.get_run_config().callbacks == [first]
    pickled = pickle.loads((Path(experiment_path(cfg, tmp_path)) / "tuner.pkl").read_bytes())
    assert not pickled["_run_config"].callbacks
    tuner, resumed = build_tuner(cfg, dict(cfg.base), base, tmp_path, [second], prepared=stub)
    assert resumed and tuner._local_tuner.get_run_config().callbacks == [second]


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(resumed_sweep):
    first, first_table, second = resumed_sweep["first"], resumed_sweep["first_table"], resumed_sweep["second"]
    assert first["interrupted"] and not first["resumed"]
    finished = first_table[first_table.status.isin(["completed", "stopped_early"])]
    assert 1 <= len(finished) < 4
    assert second["status"] == "succeeded" and second["resumed"] and not second["interrupted"]
    final = pd.read_parquet(resumed_sweep["out"] / "trials.parquet").set_index("trial_id")
    for _, row in finished.iterrows():  # same result, same time: not run again
        assert final.loc[row.trial_id, "time_s"] == pytest.approx(row.time_s)
        assert final.loc[row.trial_id, "steps"] == row.steps
    for path, mtime in resumed_sweep["first_files"].items():
        if any(f"train-{t}" in str(path) for t in finished.trial_id):
            assert path.stat().st_mtime_ns == mtime, f"{path} rewritten by the resumed sweep"


def test_grid_is_exactly_the_grid_and_asha_stops_some_trials(resumed_sweep):
    table = pd.read_parquet(resumed_sweep["out"] / "trials.parquet")
    combos = sorted(zip(table["config/optim.lr"], table["config/model.sequential.hidden_size"], strict=True))
    assert combos == sorted(itertools.product([0.0001, 0.01], [8, 16]))
    errors = table.loc[~table.status.isin(["completed", "stopped_early"]), ["trial_id", "status", "error"]]
    assert errors.empty, errors.to_dict("records")
    assert (table.status == "stopped_early").sum() >= 1
    stopped = table[table.status == "stopped_early"]
    assert (stopped.steps < stopped.total_steps).all()
    assert (table["best_ndcg@10"].notna()).all()
    out = resumed_sweep["out"]
    for name in ("trials.csv", "report.html", "best.yaml", "model/recsys_model.json", "model/README.md"):
        assert (out / name).is_file(), name
    assert len(pd.read_csv(out / "trials.csv")) == 4
    html = (out / "report.html").read_text()
    assert html.count("<img") == 2 + 2  # objective, curves, one per hyperparameter


def test_best_yaml_is_a_train_config_with_the_best_params(resumed_sweep):
    """best.yaml parses as the train job's config, paths checked (what `recsys run train --config best.yaml`
    does before it starts Ray), with the best trial's values. Training that config is the train job on the
    tiny base, which test_train_e2e runs; training it here again cost ~30-100 s of the suite."""
    import yaml

    out = resumed_sweep["out"]
    best = resumed_sweep["second"]["best"]
    data = yaml.safe_load((out / "best.yaml").read_text())
    assert data["optim"]["lr"] == best["params"]["optim.lr"]
    assert data["model"]["sequential"]["hidden_size"] == best["params"]["model.sequential.hidden_size"]
    # an inline `base` is expanded when the tune config is loaded, so its paths come back resolved
    # (a base given as a file keeps its ${VAR} references); either way they must point at the data
    train_path = data["data"]["train"]["path"]
    assert train_path.startswith("${RECSYS_DATA_ROOT}") or Path(train_path).exists(), train_path
    _, cfg = parse_job("train", str(out / "best.yaml"), [], check_paths=True)
    assert cfg.optim.lr == best["params"]["optim.lr"]
    assert cfg.model.sequential.hidden_size == best["params"]["model.sequential.hidden_size"]
    assert (out / "model" / "recsys_model.json").is_file()  # the best trial's model, exported by the sweep
