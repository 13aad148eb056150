"""Driver side of training: datasets, step counts, the ``TorchTrainer``, export of the best model.

Reusable pieces (the Tuning issue runs the SAME loop inside Ray Tune trials):

- ``prepare(cfg) -> Prepared``: Ray Datasets (tokenized in the pipeline, by the model kind's
  ``prepare``) + the frozen ``WorkerExtras`` for the workers;
  it reads only ``PREPARE_KEYS`` of the config (enforced), so a sweep knows which keys change the data;
- ``build_run_config(cfg, storage_path, name)`` -> ``ray.train.RunConfig`` (checkpoints, failures);
- ``build_trainer(cfg, datasets, run_config, extras) -> TorchTrainer``;
- ``run_training(cfg, output_dir) -> dict``: all of it end to end, plus export + model card.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from recsys import kinds
from recsys.losses import registry as losses
from recsys.training.config import TrainConfig
from recsys.training.loop import MODEL_DIR, STATE_FILE, train_loop
from recsys.training.progress import OnProgress, step_progress
from recsys.training.specs import FaultSpec, WorkerExtras, WorkerSpec
from recsys.utils.log import get_logger, is_tty

if TYPE_CHECKING:
    from ray.train import Checkpoint, Result, RunConfig
    from ray.train.torch import TorchTrainer

RUN_NAME = "ray_train"
log = get_logger("recsys.train")


@dataclass(frozen=True)
class Prepared:
    """What ``build_trainer`` needs besides the config."""

    datasets: dict[str, Any]
    extras: WorkerExtras
    counts: dict[str, int]


# -- which config keys change the data --------------------------------------------------------------
# The train-config keys ``prepare`` reads (datasets, vocabularies, step counts); a key covers its whole
# section ("data"). The one source of truth for "does this key change the prepared data": ``prepare``
# sees the config only through ``PrepareView``, which refuses every other key, and a sweep whose space
# sets none of them shares one ``prepare(base)`` across its trials (recsys.tuning.trial).
# Each model kind adds the ``model.<kind>.*`` keys its ``prepare`` reads; a grouped loss its group size.
PREPARE_KEYS = (
    "data",
    "distil",
    "seed",
    "model.kind",
    "model.name_or_path",
    "model.max_length",
    "loss.name",
    "scaling.num_workers",
    "train.batch_size",
    "train.max_steps",
    "train.epochs",
    "optim.grad_accum",
    *(key for k in kinds.kinds() for key in k.prepare_keys),
    *(f"loss.{s.group_size}" for s in losses.specs() if s.group_size),
)


def _within(key: str, section: str) -> bool:
    """``key`` is ``section`` or a key inside it ('data.train.path' is within 'data')."""
    return key == section or key.startswith(section + ".")


def changes_prepared_data(key: str) -> bool:
    """Whether setting the dotted train-config ``key`` can change what ``prepare`` builds: it is a
    prepare key, inside one, or a section holding one ('model')."""
    return any(_within(key, k) or _within(k, key) for k in PREPARE_KEYS)


class PrepareView:
    """Read-only view of a ``TrainConfig`` through which ``prepare`` reads it: a key outside
    ``PREPARE_KEYS`` fails (naming the key and the fix), so that list cannot fall behind the code.
    Sections holding prepare keys come back as views; properties (``loss_name``) run on the view,
    so what they read is checked too."""

    def __init__(self, obj: Any, prefix: str = ""):
        self._obj = obj
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy / pickle protocol probes
            raise AttributeError(name)
        key = self._prefix + name
        attr = getattr(type(self._obj), name, None)
        if isinstance(attr, property):
            if attr.fget is None:
                raise AttributeError(f"{key} is a property without a getter")
            return attr.fget(self)
        if any(_within(key, k) for k in PREPARE_KEYS):
            return getattr(self._obj, name)
        if any(_within(k, key) for k in PREPARE_KEYS):
            return PrepareView(getattr(self._obj, name), key + ".")
        raise AttributeError(
            f"prepare() read the train-config key {key!r}, which is not in "
            "recsys.training.trainer.PREPARE_KEYS: add it there (sweeps use that list to tell "
            "whether their trials can share one prepared data set)"
        )


# -- datasets --------------------------------------------------------------------------------------
def prepare(cfg: TrainConfig) -> Prepared:
    """Datasets + extras + step counts for ``cfg`` (validates that there is data to train on).
    Reads only ``PREPARE_KEYS`` of ``cfg`` (through a ``PrepareView``)."""
    import ray.data  # lazy: Ray costs seconds; configs and tests import the trainer

    cfg = cast(TrainConfig, PrepareView(cfg))
    ray.data.DataContext.get_current().enable_progress_bars = is_tty()  # no bar spam in job logs
    prep = kinds.get(cfg.model.kind).prepare(cfg)
    if prep.counts["valid_rows"] == 0:
        raise ValueError(
            "no validation rows: set data.valid, or data.valid_split to a split the table has "
            "(sequences: data.holdout_last >= 1)"
        )
    per_worker = prep.counts["train_rows"] // cfg.scaling.num_workers
    batches = per_worker // cfg.train.batch_size
    if batches == 0:
        raise ValueError(
            f"{prep.counts['train_rows']} training rows over {cfg.scaling.num_workers} workers do not fill "
            f"one batch of train.batch_size={cfg.train.batch_size}; lower it or add data"
        )
    steps_per_epoch = max(1, batches // cfg.optim.grad_accum)
    total = cfg.train.max_steps or steps_per_epoch * cfg.train.epochs
    counts = {**prep.counts, "steps_per_epoch": steps_per_epoch, "total_steps": total}
    return Prepared(prep.datasets, WorkerExtras(steps_per_epoch, total, prep.model_inputs), counts)


# -- trainer ---------------------------------------------------------------------------------------
def build_run_config(cfg: TrainConfig, storage_path: str | Path, name: str = RUN_NAME) -> RunConfig:
    """Checkpoints (keep the best ``num_to_keep`` by the metric) and worker-failure restarts."""
    import ray.train  # lazy: Ray costs seconds; configs and tests import the trainer

    return ray.train.RunConfig(
        name=name,
        storage_path=str(Path(storage_path).resolve())
        if "://" not in str(storage_path)
        else str(storage_path),
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=cfg.train.num_to_keep,
            checkpoint_score_attribute=cfg.metric_name,
            checkpoint_score_order=cfg.train.mode,
        ),
        failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
    )


def _fault(fault: FaultSpec | Mapping[str, Any] | None) -> FaultSpec | None:
    return FaultSpec(**fault) if isinstance(fault, Mapping) else fault


def build_trainer(
    cfg: TrainConfig,
    datasets: dict[str, Any],
    run_config: RunConfig,
    extras: WorkerExtras,
    resume_from: str | None = None,
    fault: FaultSpec | Mapping[str, Any] | None = None,
    progress: Any = None,
) -> TorchTrainer:
    """The ``TorchTrainer`` running ``recsys.training.loop.train_loop`` for ``cfg`` (usable in a Tune trial)."""
    import ray.train  # lazy: Ray costs seconds; configs and tests import the trainer

    # lazy: Ray costs seconds; configs and tests import the trainer
    from ray.train.torch import TorchConfig, TorchTrainer

    s = cfg.scaling
    spec = WorkerSpec(cfg.model_dump(mode="json"), extras, resume_from, _fault(fault), progress)
    return TorchTrainer(
        train_loop,
        train_loop_config={"spec": spec},  # Ray Train hands the worker function a dict: one frozen spec in it
        scaling_config=ray.train.ScalingConfig(
            num_workers=s.num_workers,
            use_gpu=s.use_gpu,
            resources_per_worker=s.resources_per_worker(),
            placement_strategy=s.placement_strategy,
        ),
        torch_config=TorchConfig(backend="nccl" if s.use_gpu else "gloo"),
        run_config=run_config,
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )


# -- export ----------------------------------------------------------------------------------------
def best_checkpoint(result: Result, metric: str, mode: str) -> tuple[Checkpoint, dict[str, Any]]:
    """(checkpoint, metrics) with the best ``metric`` among the kept checkpoints."""
    cands = [(c, m) for c, m in (result.best_checkpoints or []) if metric in m]
    if not cands:
        if result.checkpoint is None:
            raise RuntimeError("training reported no checkpoint; check train.eval_every and the logs")
        return result.checkpoint, result.metrics or {}
    return (max if mode == "max" else min)(cands, key=lambda cm: cm[1][metric])


def write_model_card(path: Path, cfg: TrainConfig, metrics: dict[str, Any], counts: dict[str, Any]) -> None:
    """README.md beside the weights: what was trained on what, how, and how well."""
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}
    d = cfg.data
    lines = [
        f"# recsys {cfg.model.kind} model",
        "",
        f"Fine-tuned from `{cfg.model.name_or_path}` with `recsys run train` on "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        "## Load",
        "",
        "```python",
        "from recsys.models import load_model",
        f"model = load_model({str(path)!r})",
        "```",
        "",
        "## Data",
        "",
        f"- train: `{d.train.path}` (preset `{d.train.preset}`, split `{d.train_split}`)",
        f"- valid: `{(d.valid or d.train).path}` (split `{d.valid_split}`)"
        if kinds.get(cfg.model.kind).table == "pairs"
        else f"- valid: "
        f"{'`' + d.valid.path + '`' if d.valid else f'the item at position -{d.holdout_last} of each sequence'}",
        f"- counts: {json.dumps(counts)}",
        "",
        "## Training",
        "",
        f"- loss `{cfg.loss_name}`, optimizer AdamW lr {cfg.optim.lr} "
        f"({cfg.optim.scheduler}, warmup {cfg.optim.warmup_ratio}), "
        f"batch {cfg.train.batch_size} x {cfg.scaling.num_workers} workers x accum {cfg.optim.grad_accum}",
        f"- strategy `{cfg.strategy.name}` "
        f"(ZeRO {cfg.strategy.deepspeed.zero_stage if cfg.strategy.name == 'deepspeed' else '-'}), "
        f"precision {cfg.strategy.precision}, LoRA {'r=' + str(cfg.lora.r) if cfg.lora.enabled else 'off'}, "
        f"adversarial {cfg.adversarial.method}",
        "",
        "## Validation metrics (best checkpoint)",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in shown.items()],
        "",
        "## Config",
        "",
        "```json",
        json.dumps(cfg.model_dump(mode="json"), indent=2),
        "```",
        "",
    ]
    (path / "README.md").write_text("\n".join(lines), encoding="utf-8")


def export_best(
    result: Result, cfg: TrainConfig, output_dir: Path, counts: dict[str, Any]
) -> tuple[Path, dict[str, Any]]:
    """Copy the best checkpoint's ``model/`` to ``output_dir/model`` and write its model card."""
    ckpt, metrics = best_checkpoint(result, cfg.metric_name, cfg.train.mode)
    dest = output_dir / "model"
    if dest.exists():
        shutil.rmtree(dest)
    with ckpt.as_directory() as d:
        shutil.copytree(Path(d) / MODEL_DIR, dest)
    write_model_card(dest, cfg, metrics, counts)
    return dest, metrics


def read_history(checkpoint: Checkpoint) -> list[dict[str, Any]]:
    """Every validation's metrics of the run (kept in each checkpoint's train state, restarts included)."""
    if checkpoint is None:
        return []
    with checkpoint.as_directory() as d:
        state_file = Path(d) / STATE_FILE
        return json.loads(state_file.read_text()).get("history", []) if state_file.is_file() else []


def run_training(
    cfg: TrainConfig,
    output_dir: str | Path,
    *,
    resume_from: str | None = None,
    fault: FaultSpec | Mapping[str, Any] | None = None,
    on_progress: OnProgress | None = None,
) -> dict[str, Any]:
    """Prepare data, fit, export the best model. Returns counts, metrics, history and artifact paths.
    ``on_progress(step, total_steps)`` is called from a driver thread while the run trains (console bars)."""
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / RUN_NAME
    if run_dir.exists() and not cfg.train.resume:
        stale = out / f"{RUN_NAME}.old-{dt.datetime.now():%Y%m%d-%H%M%S}"
        run_dir.rename(stale)
        log.info("train.resume is false: moved the previous run to %s", stale)
    prep = prepare(cfg)
    log.info("data: %s", prep.counts)
    with step_progress(on_progress) as board:
        trainer = build_trainer(
            cfg, prep.datasets, build_run_config(cfg, out), prep.extras, resume_from, fault, board
        )
        result = trainer.fit()
    model_dir, best = export_best(result, cfg, out, prep.counts)
    history = read_history(result.checkpoint)
    return {
        "counts": prep.counts,
        "metrics": {k: v for k, v in best.items() if isinstance(v, (int, float))},
        "final_metrics": {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))},
        "history": history,
        "artifacts": {"model": str(model_dir), "checkpoints": str(run_dir)},
    }
