"""The per-worker training loop run by ``ray.train.torch.TorchTrainer`` (Ray Train V2).

``train_loop(config)`` receives one frozen ``recsys.training.specs.WorkerSpec`` (``config["spec"]``:
the dumped ``TrainConfig``, plus the step counts and the kind's model inputs that
``recsys.training.trainer`` computed on the driver) and:

1. builds the model (``recsys.kinds.<kind>``), LoRA, the training task and the strategy (DDP or
   DeepSpeed) with ``build_components`` -- nothing here knows whether it runs on 1 CPU or 64 GPUs,
   nor which model kind it trains;
2. resumes from ``ray.train.get_checkpoint()`` (a worker restart, or a re-run in the same output
   dir) or from ``resume_from`` (any checkpoint directory);
3. streams its shard (``ray.train.get_dataset_shard("train")``), tokenized by Ray Data;
4. every ``eval_every`` optimizer steps validates on the full validation set (scores from
   ``task.validation_scores``, metrics computed by ``recsys.evaluation`` via
   ``recsys.training.validation.validate``, with ``primary_metric`` = ``train.metric``), writes a checkpoint
   from every rank (DeepSpeed ZeRO shards included; rank 0 adds the exported ``model/``) and calls
   ``ray.train.report(metrics, checkpoint=...)``; stops early after ``patience`` bad validations.
"""

from __future__ import annotations

import json
import math
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.distributed as dist

from recsys import kinds
from recsys.kinds.data import trim_batch
from recsys.losses import registry as losses
from recsys.training.adversarial import EmbeddingAttack
from recsys.training.config import TrainConfig
from recsys.training.lora import apply_lora, merged_copy
from recsys.training.progress import StepPoster
from recsys.training.specs import FaultSpec, WorkerExtras, WorkerSpec
from recsys.training.strategy import Strategy, StrategySpec, build_strategy
from recsys.training.validation import validate
from recsys.utils.log import get_logger

if TYPE_CHECKING:
    from recsys.models.base import SavableModel

STATE_FILE = "train_state.json"
MODEL_DIR = "model"


def _dist_broadcast(obj: Any) -> Any:
    """Rank 0's value on every rank (keeps early-stopping decisions identical)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def strategy_spec(cfg: TrainConfig, total_steps: int) -> StrategySpec:
    """The strategy's plain values from the validated config (its defaults live there)."""
    o, st, ds = cfg.optim, cfg.strategy, cfg.strategy.deepspeed
    return StrategySpec(
        name=st.name,
        precision=st.precision,
        lr=o.lr,
        weight_decay=o.weight_decay,
        betas=o.betas,
        eps=o.eps,
        scheduler=o.scheduler,
        total_steps=total_steps,
        warmup=int(o.warmup_ratio * total_steps),
        grad_accum=o.grad_accum,
        max_grad_norm=o.max_grad_norm,
        micro_batch=cfg.train.batch_size,
        find_unused=st.find_unused_parameters,
        zero_stage=ds.zero_stage,
        offload_optimizer=ds.offload_optimizer,
        offload_params=ds.offload_params,
        deepspeed_extra=dict(ds.extra),
    )


def build_components(
    cfg: TrainConfig, extras: WorkerExtras, device: torch.device
) -> tuple[SavableModel, Any, Strategy]:
    """Model -> (LoRA) -> training task -> strategy, from the config and driver-computed extras (no Ray
    calls of its own: the golden-loss test builds a run in-process with it)."""
    kind = kinds.get(cfg.model.kind)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = cast("SavableModel", kind.build_model(cfg.model, extras.model_inputs))  # every kind builds one
    if cfg.lora.enabled:
        apply_lora(model, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target_modules)
    loss = losses.get(cfg.loss_name)
    params = loss.params.model_validate({k: getattr(cfg.loss, k) for k in loss.params.model_fields})
    task = kind.build_task(model, loss.name, params, cfg.model)
    return model, task, build_strategy(strategy_spec(cfg, extras.total_steps), task, device)


def build_attack(cfg: TrainConfig, task: torch.nn.Module) -> EmbeddingAttack | None:
    """The FGM / PGD attack of ``cfg.adversarial`` on ``task`` (None = no adversarial training)."""
    a = cfg.adversarial
    return (
        None
        if a.method == "none"
        else EmbeddingAttack(task, a.method, a.epsilon, a.alpha, a.steps, a.emb_name)
    )


def train_step(
    strategy: Strategy,
    task: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    adv: EmbeddingAttack | None = None,
) -> torch.Tensor:
    """Forward + backward of one micro-batch (plus the adversarial pass); the caller calls
    ``strategy.step()``. Returns the clean loss."""
    loss = strategy.forward(batch)
    strategy.backward(loss)
    if adv:
        adv.run(strategy.param_grads(adv.tensors), lambda: task(batch))
        strategy.backward(strategy.forward(batch))
        adv.restore()
    return loss


def export_model(model: SavableModel, strategy: Strategy, path: Path, lora_export: str | None) -> None:
    """Write ``model`` the save_pretrained way (LoRA merged; fp32 weights) -- collective under ZeRO-3."""
    full = strategy.full_state_dict()  # every rank takes part (ZeRO-3 gathers)
    import ray.train  # lazy: Ray Train; the driver imports this module too

    if ray.train.get_context().get_world_rank() != 0:
        return
    if lora_export is not None:
        merged = cast(
            "SavableModel", merged_copy(model, path / "adapter" if lora_export == "adapter" else None)
        )
        merged.save_pretrained(path, state_dict={k: v.float() for k, v in merged.state_dict().items()})
        return
    prefix = "model."
    model.save_pretrained(
        path, state_dict={k[len(prefix) :]: v for k, v in full.items() if k.startswith(prefix)}
    )


def _save_and_report(
    cfg: TrainConfig,
    model: SavableModel,
    strategy: Strategy,
    state: dict[str, Any],
    metrics: dict[str, float],
) -> None:
    import ray.train  # lazy: Ray Train; the driver imports this module too

    rank = ray.train.get_context().get_world_rank()
    with tempfile.TemporaryDirectory(prefix="recsys-ckpt-") as tmp:
        d = Path(tmp)
        strategy.save(d, rank)
        export_model(model, strategy, d / MODEL_DIR, cfg.lora.export if cfg.lora.enabled else None)
        (d / f"rank_{rank}.json").write_text(
            json.dumps({"rank": rank, **{k: v for k, v in state.items() if k != "history"}})
        )
        if rank == 0:
            (d / STATE_FILE).write_text(json.dumps(state, indent=2))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(d)))


def _maybe_fault(fault: FaultSpec | None, rank: int, step: int) -> None:
    """Test hook: SIGKILL this worker process once at ``step`` on ``rank`` (a marker file makes it once)."""
    if fault is None or rank != fault.rank or step != fault.step:
        return
    marker = Path(fault.marker)
    if marker.exists():
        return
    marker.write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)


def _restore(strategy: Strategy, resume_from: str | None) -> dict[str, Any] | None:
    import ray.train  # lazy: Ray Train; the driver imports this module too

    ckpt = ray.train.get_checkpoint()
    if ckpt is None and resume_from:
        ckpt = ray.train.Checkpoint(resume_from)
    if ckpt is None:
        return None
    rank = ray.train.get_context().get_world_rank()
    with ckpt.as_directory() as d:
        strategy.load(Path(d), rank)
        return cast(dict[str, Any], json.loads((Path(d) / STATE_FILE).read_text()))


def _tokens(batch: dict[str, torch.Tensor]) -> int:
    """Token positions the encoder(s) ran over in this (trimmed) batch: every ``*input_ids`` tensor."""
    return sum(v.numel() for k, v in batch.items() if k.endswith("input_ids"))


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train per-worker function (see module docstring)."""
    import ray.train  # lazy: Ray Train; the driver imports this module too
    import ray.train.torch  # lazy: Ray Train; the driver imports this module too

    log = get_logger("recsys.train")
    spec: WorkerSpec = config["spec"]
    cfg = TrainConfig.model_validate(dict(spec.config), context={"check_paths": False})
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    model, task, strategy = build_components(cfg, spec.extras, device)
    loop = cfg.train
    total, steps_per_epoch = spec.extras.total_steps, spec.extras.steps_per_epoch
    poster = StepPoster(spec.progress)
    state = _restore(strategy, spec.resume_from) or {
        "step": 0,
        "epoch": 0,
        "batches_in_epoch": 0,
        "best": None,
        "bad_evals": 0,
        "samples": 0,
    }
    if state["step"]:
        log.info("rank %d resumed at step %d (epoch %d)", rank, state["step"], state["epoch"])
    torch.manual_seed(cfg.seed + 1000 * rank + state["step"])  # dropout differs per rank and resume
    adv = build_attack(cfg, task)
    grouped = losses.get(cfg.loss_name).group_size is not None  # lists of rows stay together: no shuffle
    metric, sign = cfg.metric_name, (1.0 if loop.mode == "max" else -1.0)
    train_it = ray.train.get_dataset_shard("train")
    valid_it = ray.train.get_dataset_shard("valid")
    step_losses: list[torch.Tensor] = []
    t_start, done = time.perf_counter(), state["step"] >= total
    evaluated_at = state["step"] if state["step"] else -1

    def validate_and_report() -> bool:
        """Validate, checkpoint, report; True = stop early."""
        nonlocal step_losses, evaluated_at, t_start
        task.eval()
        batches = (
            trim_batch(b, task.prefixes)
            for b in valid_it.iter_torch_batches(batch_size=loop.eval_batch_size, device=device)
        )
        metrics = validate(task, batches, metric)
        task.train()
        if metric not in metrics:
            raise ValueError(
                f"train.metric {metric!r} is not computed for {cfg.model.kind}; choose from {sorted(metrics)}"
            )
        elapsed = time.perf_counter() - t_start
        metrics.update(
            step=state["step"],
            epoch=state["epoch"],
            lr=strategy.lr(),
            train_loss=float(torch.stack(step_losses).float().mean()) if step_losses else float("nan"),
            samples_per_s=state.pop("_window_samples", 0) / elapsed if elapsed > 0 else 0.0,
        )
        tokens = state.pop("_window_tokens", 0)
        if tokens and elapsed > 0:  # text models only: the sequential model's inputs are item ids
            metrics["tokens_per_s"] = tokens / elapsed
        if device.type == "cuda":  # peak on this worker since the last report
            metrics["gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
            torch.cuda.reset_peak_memory_stats(device)
        score = sign * metrics[metric]
        if state["best"] is None or score > state["best"]:
            state["best"], state["bad_evals"] = score, 0
        else:
            state["bad_evals"] += 1
        stop = bool(_dist_broadcast(loop.patience is not None and state["bad_evals"] >= loop.patience))
        state["history"] = [*state.get("history", []), metrics]  # kept in every checkpoint, survives restarts
        if rank == 0:
            log.info(
                "step %d: %s",
                state["step"],
                {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in metrics.items()},
            )
        _save_and_report(
            cfg, model, strategy, {k: v for k, v in state.items() if not k.startswith("_")}, metrics
        )
        step_losses, evaluated_at, t_start = [], state["step"], time.perf_counter()
        return stop

    stopped = False
    while not done and not stopped:
        skip = state["batches_in_epoch"]
        shuffle = 0 if grouped else loop.shuffle_buffer
        batches = train_it.iter_torch_batches(
            batch_size=loop.batch_size,
            drop_last=True,
            device=device,
            local_shuffle_buffer_size=shuffle or None,
            local_shuffle_seed=cfg.seed + 7919 * state["epoch"] + rank if shuffle else None,
        )
        for i, batch in enumerate(batches):
            if i < skip:  # resumed mid-epoch: these batches were trained on before the checkpoint
                continue
            batch = trim_batch(batch, task.prefixes)
            loss = train_step(strategy, task, batch, adv)
            step_losses.append(loss.detach())  # a device tensor: float() here would sync the GPU every step
            state["batches_in_epoch"] = i + 1
            n = next(iter(batch.values())).shape[0] * world
            state["samples"] += n
            state["_window_samples"] = state.get("_window_samples", 0) + n
            state["_window_tokens"] = state.get("_window_tokens", 0) + _tokens(batch) * world
            if not strategy.step():
                continue
            state["step"] += 1
            _maybe_fault(spec.fault, rank, state["step"])
            if rank == 0:
                poster.post(state["step"], total)
            if rank == 0 and state["step"] % loop.log_every == 0:
                log.info(
                    "step %d/%d loss %.4f lr %.2e",
                    state["step"],
                    total,
                    float(step_losses[-1]),
                    strategy.lr(),
                )
            if state["step"] % loop.eval_every == 0 and validate_and_report():
                stopped = True
                break
            if state["step"] >= total:
                done = True
                break
        else:
            state["epoch"] += 1
            state["batches_in_epoch"] = 0
            if state["epoch"] >= math.ceil(total / max(steps_per_epoch, 1)) and not loop.max_steps:
                done = True
        if state["batches_in_epoch"] == 0 and state["samples"] == 0:
            raise ValueError(
                "this worker got no training batch: lower train.batch_size or scaling.num_workers, "
                "or give more training rows"
            )
    if not stopped and evaluated_at != state["step"]:
        validate_and_report()
