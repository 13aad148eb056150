"""Distributed strategies behind one interface: DDP (gloo on CPU, nccl on GPU) and DeepSpeed ZeRO 0-3.

``Strategy`` owns the wrapped module, optimizer and scheduler: ``forward(batch)``,
``backward(loss)``, ``step() -> bool`` (True when an optimizer step happened, i.e. at a gradient
accumulation boundary), ``save(dir)`` / ``load(dir)`` (every rank; DeepSpeed writes its ZeRO shards)
and ``full_state_dict()`` (collective; consolidated weights on every rank for export).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class StrategySpec:
    """Everything a strategy needs, as plain values (built from the train config by
    ``recsys.training.loop.strategy_spec``; the defaults live in the config only)."""

    name: str  # ddp | deepspeed
    precision: str  # fp32 | bf16 | fp16
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    eps: float
    scheduler: str  # constant | linear | cosine
    total_steps: int
    warmup: int
    grad_accum: int
    max_grad_norm: float | None
    micro_batch: int
    find_unused: bool = False  # DDP
    zero_stage: int = 0  # DeepSpeed
    offload_optimizer: bool = False
    offload_params: bool = False
    deepspeed_extra: Mapping[str, Any] = field(default_factory=dict)


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases, norms and embeddings' padding-free 1-D params."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def on_cuda(module: nn.Module) -> bool | None:
    """``fused=`` for AdamW: one kernel per step on GPU; None (torch's default) on CPU."""
    return True if next(module.parameters()).is_cuda else None


def build_scheduler(
    optimizer: torch.optim.Optimizer, name: str, warmup: int, total: int
) -> Any:  # an LR scheduler
    from transformers import get_scheduler  # lazy: transformers costs seconds; only the scheduler needs it

    name = {"constant": "constant_with_warmup"}.get(name, name)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=max(total, 1))


class Strategy:
    """Common bookkeeping; subclasses implement the mechanics."""

    module: nn.Module  # the unwrapped training module
    micro: int = 0  # micro-batches seen since the last optimizer step

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, loss: torch.Tensor) -> None:
        raise NotImplementedError

    def step(self) -> bool:
        raise NotImplementedError

    def lr(self) -> float:
        raise NotImplementedError

    def save(self, path: Path, rank: int) -> None:
        raise NotImplementedError

    def load(self, path: Path, rank: int) -> None:
        raise NotImplementedError

    def param_grads(self, params: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """Full (unpartitioned) gradients of ``params`` after ``backward``."""
        return [None if p.grad is None else p.grad.detach().clone() for p in params]

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        return {
            k: v.detach().float().cpu() if v.is_floating_point() else v.cpu()
            for k, v in self.module.state_dict().items()
        }


class DDPStrategy(Strategy):
    """torch DDP (world > 1) with autocast bf16, grad accumulation (no_sync) and clipping."""

    def __init__(self, module: nn.Module, spec: StrategySpec, device: torch.device):
        self.module = module.to(device)
        self.device = device
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.wrapped = (
            nn.parallel.DistributedDataParallel(
                self.module,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=spec.find_unused,
            )
            if distributed
            else self.module
        )
        self.optimizer = torch.optim.AdamW(
            param_groups(self.module, spec.weight_decay),
            lr=spec.lr,
            betas=spec.betas,
            eps=spec.eps,
            fused=on_cuda(self.module),
        )
        self.scheduler = build_scheduler(self.optimizer, spec.scheduler, spec.warmup, spec.total_steps)
        self.precision, self.grad_accum, self.max_grad_norm = (
            spec.precision,
            spec.grad_accum,
            spec.max_grad_norm,
        )
        self.scaler = torch.amp.GradScaler("cuda") if spec.precision == "fp16" else None

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        sync = (self.micro + 1) % self.grad_accum == 0
        ctx = (
            self.wrapped.no_sync()
            if (not sync and isinstance(self.wrapped, nn.parallel.DistributedDataParallel))
            else contextlib.nullcontext()
        )
        with ctx, self._autocast():
            return cast(torch.Tensor, self.wrapped(batch))

    def backward(self, loss: torch.Tensor) -> None:
        sync = (self.micro + 1) % self.grad_accum == 0
        ctx = (
            self.wrapped.no_sync()
            if (not sync and isinstance(self.wrapped, nn.parallel.DistributedDataParallel))
            else contextlib.nullcontext()
        )
        loss = loss / self.grad_accum
        with ctx:
            (self.scaler.scale(loss) if self.scaler else loss).backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated

    def step(self) -> bool:
        self.micro += 1
        if self.micro % self.grad_accum:
            return False
        self.micro = 0
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.module.parameters() if p.requires_grad], self.max_grad_norm
            )
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def save(self, path: Path, rank: int) -> None:
        if rank == 0:  # DDP replicas are identical: rank 0 writes the training state
            torch.save(
                {
                    "module": self.module.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                },
                path / "ddp_state.pt",
            )

    def load(self, path: Path, rank: int) -> None:
        state = torch.load(path / "ddp_state.pt", map_location=self.device, weights_only=False)
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


class DeepSpeedStrategy(Strategy):
    """DeepSpeed engine (ZeRO 0-3, bf16/fp16, offload); our AdamW + HF scheduler as client objects."""

    def __init__(self, module: nn.Module, spec: StrategySpec):
        import deepspeed  # lazy: deepspeed is optional and slow to import

        zero: dict[str, Any] = {"stage": spec.zero_stage}
        if spec.offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if spec.offload_params:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
        config: dict[str, Any] = {
            "train_micro_batch_size_per_gpu": spec.micro_batch,
            "gradient_accumulation_steps": spec.grad_accum,
            "zero_optimization": zero,
            "bf16": {"enabled": spec.precision == "bf16"},
            "fp16": {"enabled": spec.precision == "fp16"},
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        }
        if spec.max_grad_norm:
            config["gradient_clipping"] = spec.max_grad_norm
        _deep_update(config, dict(spec.deepspeed_extra))
        groups = param_groups(module, spec.weight_decay)
        if spec.offload_optimizer:
            from deepspeed.ops.adam import DeepSpeedCPUAdam  # lazy: deepspeed is optional and slow to import

            optimizer = DeepSpeedCPUAdam(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps)
        else:
            optimizer = torch.optim.AdamW(
                groups, lr=spec.lr, betas=spec.betas, eps=spec.eps, fused=on_cuda(module)
            )
        scheduler = build_scheduler(optimizer, spec.scheduler, spec.warmup, spec.total_steps)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=module, optimizer=optimizer, lr_scheduler=scheduler, config=config, dist_init_required=False
        )
        self.module = self.engine.module
        self.grad_accum = spec.grad_accum
        self.zero_stage = spec.zero_stage

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return cast(torch.Tensor, self.engine(batch))

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> bool:
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.step()
        return bool(boundary)

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def param_grads(self, params: list[torch.Tensor]) -> list[torch.Tensor | None]:
        from deepspeed.utils import safe_get_full_grad  # lazy: deepspeed is optional and slow to import

        return [safe_get_full_grad(p) for p in params]

    def save(self, path: Path, rank: int) -> None:
        self.engine.save_checkpoint(str(path / "deepspeed"), tag="state")  # every rank writes its shards

    def load(self, path: Path, rank: int) -> None:
        self.engine.load_checkpoint(str(path / "deepspeed"), tag="state")

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        if self.zero_stage == 3:  # parameters are partitioned: gather them (collective)
            import deepspeed  # lazy: deepspeed is optional and slow to import

            with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
                return super().full_state_dict()
        return super().full_state_dict()


def _deep_update(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v


def build_strategy(spec: StrategySpec, module: nn.Module, device: torch.device) -> Strategy:
    """``spec.name``: ddp | deepspeed."""
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if device.type == "cuda" else "cpu")
    if spec.name == "deepspeed":
        return DeepSpeedStrategy(module.to(device), spec)
    return DDPStrategy(module, spec, device)
