"""Builders (search algorithm, scheduler, Tuner) and the sweep itself: fit, or resume with
``Tuner.restore`` when an interrupted sweep is found at ``storage_path/name``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune import Callback
from ray.tune import schedulers as S
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

from recsys.training.config import TrainConfig
from recsys.training.trainer import prepare
from recsys.tuning.config import SchedulerConfig, SearchConfig, TuneJobConfig
from recsys.tuning.promotion import GatedLimiter, GatedVariantGenerator, PromotionASHA
from recsys.tuning.space import param_space, tune_domain
from recsys.tuning.trial import shares_prepared_data, train_trial
from recsys.utils.log import get_logger

log = get_logger("recsys.tune")
TRAIN_RUNS = "train_runs"


def storage_root(cfg: TuneJobConfig, output_dir: Path) -> str:
    """Absolute local path or URI under which the experiment ``cfg.name`` lives."""
    if cfg.storage_path and "://" in cfg.storage_path:
        return cfg.storage_path.rstrip("/")
    return str(Path(cfg.storage_path or output_dir).expanduser().resolve())


def experiment_path(cfg: TuneJobConfig, output_dir: Path) -> str:
    return f"{storage_root(cfg, output_dir)}/{cfg.name}"


def build_search_alg(search: SearchConfig, seed: int, concurrency: int, gate: PromotionASHA | None = None):
    """random / grid -> BasicVariantGenerator (seeded); optuna -> OptunaSearch with a seeded TPE sampler.
    Both limited to ``concurrency`` running trials (Tune ignores max_concurrent_trials for the former);
    with a ``gate`` (asha_promote) to the gate's running trials, so that paused trials free their slot."""
    if search.algorithm == "optuna":
        import optuna  # lazy: optional search algorithm (optuna costs ~1 s)
        from ray.tune.search.optuna import OptunaSearch  # lazy: optional search algorithm, needs optuna

        tpe = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed))
        return GatedLimiter(tpe, gate) if gate else ConcurrencyLimiter(tpe, max_concurrent=concurrency)
    if gate:
        return GatedVariantGenerator(gate, random_state=seed)
    return BasicVariantGenerator(random_state=seed, max_concurrent=concurrency)


def scheduler_defaults(sched: SchedulerConfig, base: TrainConfig) -> dict[str, int]:
    """max_t / grace_period / perturbation_interval in ``time_attr`` units, from the base config."""
    per_eval = base.train.eval_every if sched.time_attr == "step" else 1
    longest = (
        base.train.max_steps
        if sched.time_attr == "step"
        else (math.ceil(base.train.max_steps / base.train.eval_every) if base.train.max_steps else None)
    )
    return {
        "max_t": sched.max_t or longest or 100 * per_eval,
        "grace_period": sched.grace_period or per_eval,
        "perturbation_interval": sched.perturbation_interval or 2 * per_eval,
    }


def build_scheduler(cfg: TuneJobConfig, base: TrainConfig, concurrency: int = 1):
    """ASHA (stopping or promotion) / median / PBT / FIFO; metric and mode come from the TuneConfig.
    ``concurrency``: trials running at once (asha_promote keeps to it itself: its trials pause)."""
    s = cfg.scheduler
    d = scheduler_defaults(s, base)
    if s.name == "asha":
        return S.ASHAScheduler(
            time_attr=s.time_attr,
            max_t=d["max_t"],
            grace_period=min(d["grace_period"], d["max_t"]),
            reduction_factor=s.reduction_factor,
        )
    if s.name == "asha_promote":
        return PromotionASHA(
            time_attr=s.time_attr,
            max_t=d["max_t"],
            grace_period=min(d["grace_period"], d["max_t"]),
            reduction_factor=s.reduction_factor,
            max_running=concurrency,
        )
    if s.name == "median":
        return S.MedianStoppingRule(
            time_attr=s.time_attr, grace_period=d["grace_period"], min_samples_required=s.min_samples_required
        )
    if s.name == "pbt":
        mutations = {k: tune_domain(p) for k, p in cfg.space.items()}
        return S.PopulationBasedTraining(
            time_attr=s.time_attr,
            perturbation_interval=d["perturbation_interval"],
            hyperparam_mutations=mutations,
            quantile_fraction=s.quantile_fraction,
        )
    return S.FIFOScheduler()


def default_concurrency(base: TrainConfig) -> int:
    """Trials whose Train workers fit the cluster at once, keeping ~1 CPU free for Ray Data."""
    res = ray.cluster_resources()
    s = base.scaling
    if s.use_gpu:
        return max(1, int(res.get("GPU", 0) // (s.num_workers * (s.gpus_per_worker or 1.0))))
    return max(1, int((res.get("CPU", 1) - 1) // (s.num_workers * s.cpus_per_worker)))


def build_trainable(
    cfg: TuneJobConfig, base_raw: dict[str, Any], base: TrainConfig, exp_path: str, prepared=None
):
    """The trial function with its fixed arguments; data prepared once here when the space allows
    (``prepared``: a ``prepare(base)`` the caller already made, e.g. shared by several sweeps)."""
    if not shares_prepared_data(list(cfg.space)):
        prepared = None
    elif prepared is None:
        prepared = prepare(base)
        log.info(
            "the space leaves the data unchanged: trials share one prepared data set %s", prepared.counts
        )

    fn = tune.with_parameters(
        train_trial,
        base=base_raw,
        train_storage=f"{exp_path}/{TRAIN_RUNS}",
        report_checkpoints=cfg.scheduler.name in ("pbt", "asha_promote"),  # they pause trials
        worker_start_timeout_s=cfg.trial.worker_start_timeout_s,
        prepared=prepared,
    )
    return tune.with_resources(fn, {"cpu": cfg.trial.driver_cpus})


def build_tuner(
    cfg: TuneJobConfig,
    base_raw: dict[str, Any],
    base: TrainConfig,
    output_dir: Path,
    callbacks: list | None = None,
    prepared=None,
):
    """A fresh ``Tuner``, or the interrupted one at ``storage_path/name`` (``Tuner.restore``)."""
    metric, mode = base.metric_name, base.train.mode
    exp_path = experiment_path(cfg, output_dir)
    trainable = build_trainable(cfg, base_raw, base, exp_path, prepared)
    if cfg.resume and tune.Tuner.can_restore(exp_path):
        log.info("resuming the sweep at %s (finished trials are kept)", exp_path)
        tuner = tune.Tuner.restore(
            exp_path,
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=True,
            param_space=param_space(cfg.space),
        )
        use_callbacks(tuner, callbacks or [])
        return tuner, True
    seed = cfg.search.seed if cfg.search.seed is not None else cfg.seed
    concurrency = cfg.search.max_concurrent_trials or default_concurrency(base)
    log.info(
        "sweep: %d sample(s), %d at a time, %s search, %s scheduler -> %s",
        cfg.search.num_samples,
        concurrency,
        cfg.search.algorithm,
        cfg.scheduler.name,
        exp_path,
    )
    scheduler = build_scheduler(cfg, base, concurrency)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space(cfg.space),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            num_samples=cfg.search.num_samples,
            search_alg=build_search_alg(
                cfg.search, seed, concurrency, scheduler if isinstance(scheduler, PromotionASHA) else None
            ),
            scheduler=scheduler,
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(  # callbacks set below, after tuner.pkl is written without them
            name=cfg.name,
            storage_path=storage_root(cfg, output_dir),
            failure_config=tune.FailureConfig(max_failures=cfg.trial.max_failures),
            verbose=1,
        ),
    )
    use_callbacks(tuner, callbacks or [])
    return tuner, False


def use_callbacks(tuner, callbacks: list) -> None:
    """Make ``tuner`` (fresh or restored) report to ``callbacks``, the objects of *this* run.

    ``Tuner.restore`` brings back the RunConfig pickled in ``tuner.pkl`` when the sweep first started,
    callbacks included, and has no argument to replace them. A resumed sweep then reported to
    unpickled copies of the interrupted run's callbacks instead of this run's: a stale
    ``TrialStatuses`` that nobody reads (a second interruption went unnoticed) and any one-shot hook
    of the first run firing again (the stop hook of the resume test stopped the resumed sweep before
    the grid's last point was generated: 3 of 4 points). Setting them after construction also keeps
    them out of ``tuner.pkl``, so a restore never needs to unpickle them. Ray 2.60 has no public
    setter (ray-project/ray#41364): the callbacks go on the internal tuner's RunConfig."""
    local = getattr(tuner, "_local_tuner", None)
    if local is not None:
        local.get_run_config().callbacks = list(callbacks)
        return
    remote = getattr(tuner, "_remote_tuner", None)  # Ray Client: the internal tuner is an actor
    if remote is None:
        raise RuntimeError(
            "cannot set the sweep's callbacks on this ray.tune.Tuner (Ray internals changed?); "
            "check recsys.tuning.sweep.use_callbacks against the installed Ray"
        )
    run_config = ray.get(remote.get_run_config.remote())
    run_config.callbacks = list(callbacks)
    ray.get(remote.set_run_config_and_remote_string_queue.remote(run_config, None))


class KeepTrialLogs(Callback):
    """Pushes a restarted trial's driver-side logs (``result.json``, ``progress.csv``) to its storage
    directory before Tune's loggers pull them back.

    On every trial start Ray's ``JsonLoggerCallback`` (and ``CSVLoggerCallback`` on its next setup)
    copies the trial's log from storage over the driver's copy when the trial has a checkpoint, i.e.
    when a paused trial is promoted. Storage is only synced every ``SyncConfig.sync_period`` (300 s),
    so a trial paused and restarted within that window lost the results reported since the last sync
    (trials.parquet showed 2 validations for 3; the trials table and the best value read those files).
    The driver's copy is the newer one whenever it is longer, so it is pushed first."""

    FILES = ("result.json", "progress.csv")

    def on_trial_start(self, iteration, trials, trial, **info):
        if not trial.checkpoint:
            return  # a first start: Tune restores nothing
        fs = trial.storage.storage_filesystem
        for name in self.FILES:
            local = Path(trial.local_path, name)
            remote = Path(trial.storage.trial_fs_path, name).as_posix()
            if not local.exists():
                continue
            stored = fs.get_file_info(remote)
            stored_size = stored.size if stored.type == pafs.FileType.File else -1
            if local.stat().st_size > stored_size:
                fs.create_dir(Path(remote).parent.as_posix(), recursive=True)
                pafs.copy_files(local.as_posix(), remote, destination_filesystem=fs)


class TrialStatuses(Callback):
    """Which trials finished (TERMINATED / ERROR) and which an interruption left unfinished.

    Tune marks the trials it tears down on Ctrl-C as TERMINATED in memory (they are RUNNING in the
    saved state that a resume reads), so finished = already finished when the run started (a resumed
    sweep) + completed or errored during it; everything else is UNFINISHED."""

    def __init__(self):
        self.finished: dict[str, str] = {}
        self.seen: set[str] = set()
        self.statuses: dict[str, str] = {}

    def on_step_begin(self, iteration, trials, **info):
        for t in trials:
            if t.trial_id not in self.seen:
                self.seen.add(t.trial_id)
                if t.status in ("TERMINATED", "ERROR"):
                    self.finished[t.trial_id] = t.status

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.finished[trial.trial_id] = "TERMINATED"

    def on_trial_error(self, iteration, trials, trial, **info):
        self.finished[trial.trial_id] = "ERROR"

    def on_experiment_end(self, trials, **info):
        self.statuses = {t.trial_id: self.finished.get(t.trial_id, "UNFINISHED") for t in trials}


def run_sweep(
    cfg: TuneJobConfig,
    base_raw: dict[str, Any],
    base: TrainConfig,
    output_dir: Path,
    callbacks: list | None = None,
    prepared=None,
):
    """Fit (or resume) the sweep; returns (ResultGrid, resumed, {trial_id: Tune status})."""
    statuses = TrialStatuses()
    # KeepTrialLogs first: Tune appends its JSON / CSV loggers after the callbacks given here
    tuner, resumed = build_tuner(
        cfg, base_raw, base, output_dir, [KeepTrialLogs(), *(callbacks or []), statuses], prepared
    )
    grid = tuner.fit()
    return grid, resumed, statuses.statuses
