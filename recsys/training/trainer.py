"""Driver side of training: datasets, step counts, the ``TorchTrainer``, export of the best model.

Reusable pieces (the Tuning issue runs the SAME loop inside Ray Tune trials):

- ``prepare(cfg) -> Prepared``: Ray Datasets (tokenized in the pipeline) + plain extras for workers;
  it reads only ``PREPARE_KEYS`` of the config (enforced), so a sweep knows which keys change the data;
- ``build_run_config(cfg, storage_path, name)`` -> ``ray.train.RunConfig`` (checkpoints, failures);
- ``build_trainer(cfg, datasets, run_config, extras) -> TorchTrainer``;
- ``run_training(cfg, output_dir) -> dict``: all of it end to end, plus export + model card.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from recsys.training.config import TrainConfig
from recsys.utils.log import get_logger

RUN_NAME = "ray_train"
log = get_logger("recsys.train")


@dataclass
class Prepared:
    """What ``build_trainer`` needs besides the config."""

    datasets: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


# -- which config keys change the data --------------------------------------------------------------
# The train-config keys ``prepare`` reads (datasets, vocabularies, step counts); a key covers its whole
# section ("data"). The one source of truth for "does this key change the prepared data": ``prepare``
# sees the config only through ``PrepareView``, which refuses every other key, and a sweep whose space
# sets none of them shares one ``prepare(base)`` across its trials (recsys.tuning.trial).
PREPARE_KEYS = ("data", "seed", "model.kind", "model.name_or_path", "model.max_length", "model.sequential.max_len",
                "model.sequential.user_features", "model.sequential.use_text", "model.sequential.text_batch_size",
                "loss.name", "loss.list_size", "scaling.num_workers", "train.batch_size", "train.max_steps",
                "train.epochs", "optim.grad_accum")


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
            return attr.fget(self)
        if any(_within(key, k) for k in PREPARE_KEYS):
            return getattr(self._obj, name)
        if any(_within(k, key) for k in PREPARE_KEYS):
            return PrepareView(getattr(self._obj, name), key + ".")
        raise AttributeError(f"prepare() read the train-config key {key!r}, which is not in "
                             "recsys.training.trainer.PREPARE_KEYS: add it there (sweeps use that list to tell "
                             "whether their trials can share one prepared data set)")


# -- datasets --------------------------------------------------------------------------------------
def _valid_input(cfg: TrainConfig):
    return cfg.data.valid or cfg.data.train


def _pairs_datasets(cfg: TrainConfig) -> Prepared:
    from recsys.training import data as D

    d = cfg.data
    train = D.load_pairs(d.train, d.train_split, d.max_train_rows, d.relevance_gains)
    valid = D.load_pairs(_valid_input(cfg), d.valid_split, d.max_valid_rows, d.relevance_gains)
    tok_path = cfg.model.name_or_path
    kw = {"tokenizer_path": tok_path, "max_length": cfg.model.max_length}
    if cfg.model.kind == "bi_encoder":
        train = D.bi_encoder_rows(train, d.hard_negatives, cfg.seed)
        valid = D.bi_encoder_rows(valid, False, cfg.seed)
        fn = D.tokenize_bi
    else:
        if cfg.loss_name == "listwise":
            train = D.listwise_groups(train, cfg.loss.list_size, cfg.seed)
        fn = D.tokenize_cross
    if cfg.loss_name != "listwise":  # rows are shuffled again per epoch in the loop (train.shuffle_buffer)
        train = train.randomize_block_order(seed=cfg.seed)
    train = train.map_batches(fn, batch_format="pandas", fn_kwargs=kw)
    valid = valid.map_batches(fn, batch_format="pandas", fn_kwargs=kw).materialize()  # read once, every eval reuses it
    train = train.materialize() if d.cache else train
    counts = {"train_rows": train.count(), "valid_rows": valid.count()}
    return Prepared({"train": train, "valid": valid}, counts=counts)


def _text_embeddings(cfg: TrainConfig, item_ids: list[str]):
    """Item titles encoded once by the pretrained encoder (model.name_or_path) -> [num_items, D]."""
    from recsys.models.bi_encoder import BiEncoder
    from recsys.training.data import item_texts, read_table

    texts = item_texts(read_table(cfg.data.items, "items"), item_ids)
    missing = sum(1 for t in texts if not t)
    if missing:
        log.info("%d of %d items have no text (their text embedding is the empty string's)", missing, len(texts))
    encoder = BiEncoder.from_encoder(cfg.model.name_or_path, max_length=cfg.model.max_length)
    return encoder.encode(texts, batch_size=cfg.model.sequential.text_batch_size, tower="item")


def _sequence_datasets(cfg: TrainConfig) -> Prepared:
    import ray

    from recsys.training import data as D

    d, o = cfg.data, cfg.model.sequential
    feats = list(o.user_features)
    seqs = D.load_sequences(d.train, feats, d.max_train_rows).materialize()
    extra_items = None
    if o.use_text:
        from recsys.training.data import read_table

        extra_items = [str(i) for i in read_table(d.items, "items").unique("item_id")]  # cold items get text
    vocab = D.build_vocab(seqs, feats, extra_items)
    holdout = 0 if d.valid is not None else d.holdout_last
    kw = {"item_index": vocab.item_index(), "max_len": o.max_len,
          "feature_index": {c: {v: i + 1 for i, v in enumerate(vals)} for c, vals in vocab.user_features.items()}}
    train = seqs.map_batches(D.encode_sequences, batch_format="pandas", fn_kwargs={**kw, "holdout": holdout, "mode": "train"})
    valid_src = D.load_sequences(d.valid, feats, None) if d.valid is not None else seqs
    valid = valid_src.map_batches(D.encode_sequences, batch_format="pandas",
                                  fn_kwargs={**kw, "holdout": holdout, "mode": "valid"})
    if d.max_valid_rows:
        valid = D.head(valid, d.max_valid_rows)
    train = train.randomize_block_order(seed=cfg.seed)
    train, valid = (train.materialize() if d.cache else train), valid.materialize()
    extras: dict[str, Any] = {"item_ids": vocab.item_ids, "user_features": vocab.user_features}
    if o.use_text:
        extras["text_embeddings_ref"] = ray.put(_text_embeddings(cfg, vocab.item_ids))
    counts = {"train_rows": train.count(), "valid_rows": valid.count(), "items": len(vocab.item_ids)}
    return Prepared({"train": train, "valid": valid}, extras, counts)


def prepare(cfg: TrainConfig) -> Prepared:
    """Datasets + extras + step counts for ``cfg`` (validates that there is data to train on).
    Reads only ``PREPARE_KEYS`` of ``cfg`` (through a ``PrepareView``)."""
    import ray.data

    from recsys.utils.log import is_tty

    cfg = cast(TrainConfig, PrepareView(cfg))
    ray.data.DataContext.get_current().enable_progress_bars = is_tty()  # no bar spam in job logs
    prep = _sequence_datasets(cfg) if cfg.model.kind == "sequential" else _pairs_datasets(cfg)
    if prep.counts["valid_rows"] == 0:
        raise ValueError("no validation rows: set data.valid, or data.valid_split to a split the table has "
                         "(sequences: data.holdout_last >= 1)")
    per_worker = prep.counts["train_rows"] // cfg.scaling.num_workers
    batches = per_worker // cfg.train.batch_size
    if batches == 0:
        raise ValueError(f"{prep.counts['train_rows']} training rows over {cfg.scaling.num_workers} workers do not fill "
                         f"one batch of train.batch_size={cfg.train.batch_size}; lower it or add data")
    steps_per_epoch = max(1, batches // cfg.optim.grad_accum)
    total = cfg.train.max_steps or steps_per_epoch * cfg.train.epochs
    prep.extras.update(steps_per_epoch=steps_per_epoch, total_steps=total)
    prep.counts.update(steps_per_epoch=steps_per_epoch, total_steps=total)
    return prep


# -- trainer ---------------------------------------------------------------------------------------
def build_run_config(cfg: TrainConfig, storage_path: str | Path, name: str = RUN_NAME):
    """Checkpoints (keep the best ``num_to_keep`` by the metric) and worker-failure restarts."""
    import ray.train

    return ray.train.RunConfig(
        name=name,
        storage_path=str(Path(storage_path).resolve()) if "://" not in str(storage_path) else str(storage_path),
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=cfg.train.num_to_keep, checkpoint_score_attribute=cfg.metric_name,
            checkpoint_score_order=cfg.train.mode),
        failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
    )


def build_trainer(cfg: TrainConfig, datasets: dict[str, Any], run_config, extras: dict[str, Any] | None = None,
                  resume_from: str | None = None, fault: dict[str, Any] | None = None):
    """The ``TorchTrainer`` running ``recsys.training.loop.train_loop`` for ``cfg`` (usable in a Tune trial)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from recsys.training.loop import train_loop

    s = cfg.scaling
    loop_config = {"cfg": cfg.model_dump(mode="json"), **(extras or {}), "resume_from": resume_from, "fault": fault}
    return TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker=s.resources_per_worker(),
            placement_strategy=s.placement_strategy),
        torch_config=TorchConfig(backend="nccl" if s.use_gpu else "gloo"),
        run_config=run_config,
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )


# -- export ----------------------------------------------------------------------------------------
def best_checkpoint(result, metric: str, mode: str):
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
        f"# recsys {cfg.model.kind} model", "",
        f"Fine-tuned from `{cfg.model.name_or_path}` with `recsys run train` on "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
        "## Load", "", "```python", "from recsys.models import load_model",
        f"model = load_model({str(path)!r})", "```", "",
        "## Data", "",
        f"- train: `{d.train.path}` (preset `{d.train.preset}`, split `{d.train_split}`)",
        f"- valid: `{(d.valid or d.train).path}` (split `{d.valid_split}`)" if cfg.model.kind != "sequential"
        else f"- valid: {'`' + d.valid.path + '`' if d.valid else f'the item at position -{d.holdout_last} of each sequence'}",
        f"- counts: {json.dumps(counts)}", "",
        "## Training", "",
        f"- loss `{cfg.loss_name}`, optimizer AdamW lr {cfg.optim.lr} ({cfg.optim.scheduler}, warmup {cfg.optim.warmup_ratio}), "
        f"batch {cfg.train.batch_size} x {cfg.scaling.num_workers} workers x accum {cfg.optim.grad_accum}",
        f"- strategy `{cfg.strategy.name}` (ZeRO {cfg.strategy.deepspeed.zero_stage if cfg.strategy.name == 'deepspeed' else '-'}), "
        f"precision {cfg.strategy.precision}, LoRA {'r=' + str(cfg.lora.r) if cfg.lora.enabled else 'off'}, "
        f"adversarial {cfg.adversarial.method}", "",
        "## Validation metrics (best checkpoint)", "",
        "| metric | value |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in shown.items()], "",
        "## Config", "", "```json", json.dumps(cfg.model_dump(mode="json"), indent=2), "```", "",
    ]
    (path / "README.md").write_text("\n".join(lines), encoding="utf-8")


def export_best(result, cfg: TrainConfig, output_dir: Path, counts: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Copy the best checkpoint's ``model/`` to ``output_dir/model`` and write its model card."""
    from recsys.training.loop import MODEL_DIR

    ckpt, metrics = best_checkpoint(result, cfg.metric_name, cfg.train.mode)
    dest = output_dir / "model"
    if dest.exists():
        shutil.rmtree(dest)
    with ckpt.as_directory() as d:
        shutil.copytree(Path(d) / MODEL_DIR, dest)
    write_model_card(dest, cfg, metrics, counts)
    return dest, metrics


def read_history(checkpoint) -> list[dict[str, Any]]:
    """Every validation's metrics of the run (kept in each checkpoint's train state, restarts included)."""
    from recsys.training.loop import STATE_FILE

    if checkpoint is None:
        return []
    with checkpoint.as_directory() as d:
        state_file = Path(d) / STATE_FILE
        return json.loads(state_file.read_text()).get("history", []) if state_file.is_file() else []


def run_training(cfg: TrainConfig, output_dir: str | Path, *, resume_from: str | None = None,
                 fault: dict[str, Any] | None = None) -> dict[str, Any]:
    """Prepare data, fit, export the best model. Returns counts, metrics, history and artifact paths."""
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / RUN_NAME
    if run_dir.exists() and not cfg.train.resume:
        stale = out / f"{RUN_NAME}.old-{dt.datetime.now():%Y%m%d-%H%M%S}"
        run_dir.rename(stale)
        log.info("train.resume is false: moved the previous run to %s", stale)
    prep = prepare(cfg)
    log.info("data: %s", prep.counts)
    trainer = build_trainer(cfg, prep.datasets, build_run_config(cfg, out), prep.extras, resume_from, fault)
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
