"""Config of the train job: model kind and options, data, loss, optimizer, strategy, loop, scaling.

Every section is typed and documented; cross-field checks name the fix. The ``model.<kind>`` sections
come from the registered model kinds (``recsys.kinds``) and the ``loss`` options from the registered
losses (``recsys.losses.registry``), so defaults live in one place each. Builders in
``recsys.kinds.<kind>`` and ``recsys.training.*`` turn these into objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, create_model, field_validator, model_validator

from recsys import kinds
from recsys.config.base import InputConfig, JobConfig, ModelConfig, ScalingConfig, StrictModel
from recsys.config.types import InputPath
from recsys.losses import registry as losses


def _kind_sections() -> dict[str, Any]:
    """One ``model.<kind>`` section per registered model kind (its options, with their defaults)."""
    return {
        k.name: (
            k.options,
            Field(default_factory=k.options, description=f"{k.summary} (model.kind: {k.name}).".capitalize()),
        )
        for k in kinds.kinds()
    }


class _ModelBase(ModelConfig):
    """Which model to train, from which pretrained encoder, and its options."""

    kind: str = Field(..., description="The model kind: " + " | ".join(kinds.names()) + " (recsys.kinds).")
    freeze_layers: int = Field(
        0, ge=0, description="Freeze the embeddings and the first N transformer layers of the encoder."
    )
    dropout: float | None = Field(
        None, ge=0, lt=1, description="Override the encoder's hidden/attention dropout."
    )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        kinds.get(v)  # an unknown kind fails naming model.kind and the registered kinds
        return v


if TYPE_CHECKING:  # the static view; at run time one section per registered kind is added
    TrainModelConfig = _ModelBase
else:
    TrainModelConfig = create_model(
        "TrainModelConfig", __base__=_ModelBase, __module__=__name__, **_kind_sections()
    )
    TrainModelConfig.__doc__ = _ModelBase.__doc__


def _loss_params() -> dict[str, Any]:
    """Every registered loss's options as fields of one ``loss`` section (an option two losses share
    must be declared the same way by both)."""
    fields: dict[str, Any] = {}
    for spec in losses.specs():
        for name, f in spec.params.model_fields.items():
            if name in fields and repr(fields[name][1]) != repr(f):
                raise ValueError(f"loss option {name!r} is declared differently by two losses ({spec.name})")
            fields[name] = (f.annotation, f)
    return fields


class DataSection(StrictModel):
    """Training / validation tables (canonical, see docs/DATA.md) and how to slice them."""

    train: InputConfig = Field(
        ..., description="Pairs (bi/cross-encoder) or sequences/events (sequential) to train on."
    )
    train_split: str | None = Field(
        "train", description="Keep rows whose 'split' column has this value (if the column exists)."
    )
    valid: InputConfig | None = Field(
        None, description="Validation table (default: data.train rows of valid_split)."
    )
    valid_split: str | None = Field(
        "valid", description="Validation rows' 'split' value (pairs); sequences hold out the last item."
    )
    items: InputConfig | None = Field(
        None, description="Items table (item_id, title): text for the sequential model."
    )
    holdout_last: int = Field(
        2,
        ge=1,
        le=2,
        description="Sequential without data.valid: items at the end held out "
        "(2 = last is test, second-last validates; 1 = last validates).",
    )
    max_train_rows: int | None = Field(
        None, ge=1, description="Use the first this many training rows (quick runs; the same rows every run)."
    )
    max_valid_rows: int | None = Field(
        None, ge=1, description="Use the first this many validation rows (the same rows every run)."
    )
    cache: bool = Field(
        True,
        description="Materialize the tokenized training data in the object store once (fast epochs); false = stream "
        "it every epoch (data larger than the object store).",
    )
    hard_negatives: bool = Field(
        False, description="Bi-encoder: add each query's label-0 right text as a mined hard negative."
    )
    relevance_gains: dict[str, float] | None = Field(
        None,
        description="Event type -> gain when pairs carry event_type instead of label (default view<click<cart<buy).",
    )


class _LossBase(StrictModel):
    """Training objective (see recsys.losses); each option is declared by the loss that reads it."""

    name: str | None = Field(
        None, description="Loss: " + " | ".join(losses.names()) + "; None = the kind's default."
    )

    @field_validator("name")
    @classmethod
    def _known_loss(cls, v: str | None) -> str | None:
        if v is not None:
            losses.get(v)  # an unknown loss fails naming loss.name and the registered losses
        return v


if TYPE_CHECKING:  # the static view; at run time every registered loss's options are added
    LossConfig = _LossBase
else:
    LossConfig = create_model("LossConfig", __base__=_LossBase, __module__=__name__, **_loss_params())
    LossConfig.__doc__ = _LossBase.__doc__


class DistilConfig(StrictModel):
    """Knowledge distillation of a trained cross-encoder (the teacher) into a smaller student."""

    teacher: InputPath | None = Field(
        None,
        description="Saved cross-encoder directory (e.g. runs/train/local/model) whose logits label the "
        "training pairs (a teacher_score column) for loss distil_mse / margin_mse; None = no distillation.",
    )
    student_layers: list[int] | None = Field(
        None,
        description="Teacher layers the student keeps (e.g. [0, 2, 4] of 6), with the teacher's embeddings and "
        "head; None = the student is model.name_or_path.",
    )
    score_batch_size: int = Field(64, ge=1, description="Pairs per teacher forward pass when scoring.")
    mined_per_query: int = Field(
        0,
        ge=0,
        description="Add each training query's top-k BM25 matches among the training pairs' right texts (the "
        "catalog) as unlabelled pairs (label 0) scored by the teacher; 0 = the training pairs only.",
    )

    @field_validator("student_layers")
    @classmethod
    def _layers(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or v != sorted(set(v)) or v[0] < 0):
            raise ValueError(
                f"distil.student_layers={v}: give distinct teacher layer indices >= 0 in increasing order, "
                "e.g. [0, 2, 4]"
            )
        return v


class OptimConfig(StrictModel):
    """AdamW with warmup and a decay schedule, gradient accumulation and clipping."""

    lr: float = Field(5e-5, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(
        0.01, ge=0, description="AdamW weight decay (not applied to biases and norms)."
    )
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    scheduler: Literal["constant", "linear", "cosine"] = Field("linear", description="Decay after warmup.")
    warmup_ratio: float = Field(
        0.1, ge=0, lt=1, description="Fraction of the optimizer steps spent warming up."
    )
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the gradient norm (None = no clipping).")


class DeepSpeedOptions(StrictModel):
    """DeepSpeed ZeRO options (strategy: deepspeed)."""

    # an int in [0, 3], not Literal[0, 1, 2, 3]: a Literal of ints rejects the command-line override
    # strategy.deepspeed.zero_stage=3 (overrides arrive as strings; pydantic coerces '3' only for int fields)
    zero_stage: int = Field(
        2, ge=0, le=3, description="ZeRO stage: 0 none, 1 optimizer, 2 +gradients, 3 +parameters."
    )
    offload_optimizer: bool = Field(
        False, description="ZeRO-Offload: optimizer states on CPU (stage >= 1; GPUs only)."
    )
    offload_params: bool = Field(False, description="Offload parameters to CPU (stage 3; GPUs only).")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Merged into the generated DeepSpeed config (advanced)."
    )


class StrategyConfig(StrictModel):
    """How gradients are synchronized and in which precision."""

    name: Literal["deepspeed", "ddp"] = Field(
        "ddp", description="deepspeed (ZeRO) or ddp (gloo on CPU, nccl on GPU)."
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Training precision (fp16 needs GPUs)."
    )
    deepspeed: DeepSpeedOptions = Field(default_factory=DeepSpeedOptions, description="DeepSpeed options.")
    find_unused_parameters: bool = Field(
        False, description="DDP: allow parameters without gradients (slower)."
    )


class LoraConfig(StrictModel):
    """LoRA adapters on the encoder (peft)."""

    enabled: bool = Field(False, description="Train LoRA adapters instead of the full encoder.")
    r: int = Field(8, ge=1, description="Adapter rank.")
    alpha: int = Field(16, ge=1, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Adapter dropout.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "key", "value", "dense"],
        description="Module-name suffixes that get adapters.",
    )
    export: Literal["merged", "adapter"] = Field(
        "merged", description="Export merged weights, or the adapter as well."
    )


class AdversarialConfig(StrictModel):
    """Adversarial training on the word-embedding layer."""

    method: Literal["none", "fgm", "pgd"] = Field(
        "none", description="fgm (one step) or pgd (k steps) perturbations."
    )
    epsilon: float = Field(1.0, gt=0, description="Perturbation norm bound.")
    alpha: float = Field(0.3, gt=0, description="PGD step size.")
    steps: int = Field(3, ge=1, description="PGD steps.")
    emb_name: str = Field(
        "word_embeddings", description="Name fragment of the embedding parameter perturbed."
    )


class LoopConfig(StrictModel):
    """Epochs, batches, validation cadence, early stopping, checkpoints, failures."""

    epochs: int = Field(1, ge=1, description="Passes over the training data.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps (overrides epochs)."
    )
    batch_size: int = Field(32, ge=1, description="Micro-batch size per worker.")
    shuffle_buffer: int = Field(
        2048,
        ge=0,
        description="Rows in each worker's shuffle buffer (new order every epoch; 0 = no shuffle).",
    )
    eval_batch_size: int = Field(128, ge=1, description="Validation batch size.")
    eval_every: int = Field(
        100, ge=1, description="Validate, report and checkpoint every N optimizer steps (and at the end)."
    )
    log_every: int = Field(10, ge=1, description="Log the training loss every N optimizer steps.")
    metric: str | None = Field(
        None, description="Metric for best model / early stopping (default: mrr / f1 / ndcg@10)."
    )
    mode: Literal["max", "min"] = Field("max", description="Whether a larger metric is better.")
    patience: int | None = Field(
        None, ge=1, description="Stop after N validations without improvement (None = never)."
    )
    num_to_keep: int = Field(2, ge=1, description="Checkpoints kept (the best N by metric).")
    max_failures: int = Field(
        1, ge=0, description="Restart the workers from the latest checkpoint this many times."
    )
    resume: bool = Field(
        True, description="Resume from the latest checkpoint of a previous run in output_dir."
    )


class TrainConfig(JobConfig):
    """Fine-tune a bi-encoder, cross-encoder or sequential recommender with Ray Train (DDP / DeepSpeed)."""

    model: TrainModelConfig = Field(..., description="Model kind, pretrained encoder and options.")
    data: DataSection = Field(..., description="Training / validation tables.")
    distil: DistilConfig = Field(
        default_factory=DistilConfig, description="Distillation: teacher scores and student layers."
    )
    loss: LossConfig = Field(default_factory=LossConfig, description="Objective.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimizer and schedule.")
    strategy: StrategyConfig = Field(
        default_factory=StrategyConfig, description="DDP / DeepSpeed and precision."
    )
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA adapters.")
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig, description="FGM / PGD.")
    train: LoopConfig = Field(default_factory=LoopConfig, description="Loop, validation and checkpoints.")
    scaling: ScalingConfig = Field(
        default_factory=ScalingConfig, description="Ray Train workers and resources."
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        kind = kinds.get(self.model.kind)
        loss = self.loss_name
        fits = losses.for_kind(kind.name)
        if loss not in fits:
            raise ValueError(f"loss.name {loss!r} does not fit model.kind {kind.name!r}; use one of {fits}")
        if not kind.text:
            if self.lora.enabled:
                raise ValueError(
                    f"lora.enabled needs a transformer encoder; the {kind.name} model has none: set lora.enabled: false"
                )
            if self.adversarial.method != "none":
                raise ValueError(
                    "adversarial training perturbs word embeddings of a text encoder: set "
                    f"adversarial.method: none for {kind.name}"
                )
        if self.data.hard_negatives and not kind.hard_negatives:
            takers = " / ".join(k.name for k in kinds.kinds() if k.hard_negatives)
            raise ValueError(f"data.hard_negatives applies to the {takers} only; set it to false")
        self._check_distil(kind)
        kind.check(self)
        group = losses.get(loss).group_size
        if group is not None and self.train.batch_size % getattr(self.loss, group):
            raise ValueError(
                f"{loss} loss: train.batch_size ({self.train.batch_size}) must be a multiple of "
                f"loss.{group} ({getattr(self.loss, group)})"
            )
        if (
            self.lora.enabled
            and self.strategy.name == "deepspeed"
            and self.strategy.deepspeed.zero_stage == 3
        ):
            raise ValueError(
                "LoRA export merges adapters on rank 0; use strategy.deepspeed.zero_stage <= 2 with lora.enabled"
            )
        adv = self.adversarial
        if (
            adv.method != "none"
            and "embeddings" in adv.emb_name
            and (self.lora.enabled or self.model.freeze_layers)
        ):
            # LoRA (peft) and freeze_layers freeze the embedding matrix the attack perturbs: the workers
            # would fail at start-up; say so at validate time
            raise ValueError(
                f"adversarial.method {adv.method} perturbs the trainable {adv.emb_name}, which "
                f"{'lora.enabled' if self.lora.enabled else 'model.freeze_layers'} freezes: set "
                "adversarial.method: none, or lora.enabled: false and model.freeze_layers: 0"
            )
        if self.adversarial.method == "pgd" and self.strategy.name == "deepspeed":
            raise ValueError(
                "adversarial.method pgd needs strategy.name: ddp (DeepSpeed hooks every backward); "
                "use fgm with deepspeed"
            )
        if self.strategy.precision == "fp16" and not self.scaling.use_gpu:
            raise ValueError("strategy.precision fp16 needs GPUs; use bf16 or fp32 on CPU")
        ds = self.strategy.deepspeed
        if (ds.offload_optimizer or ds.offload_params) and self.strategy.name != "deepspeed":
            raise ValueError("offload_* needs strategy.name: deepspeed")
        if ds.offload_params and ds.zero_stage != 3:
            raise ValueError("deepspeed.offload_params needs zero_stage: 3")
        if ds.offload_optimizer and ds.zero_stage == 0:
            raise ValueError("deepspeed.offload_optimizer needs zero_stage >= 1")
        return self

    def _check_distil(self, kind: Any) -> None:
        d, loss = self.distil, self.loss_name
        distils = [s.name for s in losses.specs() if s.inputs is losses.Distillation]
        if (d.teacher is not None or d.student_layers is not None) and not kind.distil:
            takers = " / ".join(k.name for k in kinds.kinds() if k.distil)
            raise ValueError(f"the distil section applies to the {takers} only; remove it for {kind.name}")
        if loss in distils and d.teacher is None:
            raise ValueError(
                f"loss {loss} regresses a teacher's scores: set distil.teacher to a saved cross-encoder "
                "directory (e.g. runs/train/local/model)"
            )
        if d.teacher is not None and loss not in distils:
            raise ValueError(
                f"distil.teacher scores the pairs for a distillation loss, which loss {loss} ignores: set "
                f"loss.name to one of {distils}, or remove distil.teacher"
            )
        if d.mined_per_query and d.teacher is None:
            raise ValueError(
                "distil.mined_per_query adds pairs labelled by the teacher: set distil.teacher, or set "
                "distil.mined_per_query: 0"
            )
        if d.student_layers is not None and d.teacher is None:
            raise ValueError(
                "distil.student_layers slices the teacher's layers: set distil.teacher, or remove "
                "distil.student_layers"
            )
        if d.student_layers is not None and self.model.freeze_layers > len(d.student_layers):
            raise ValueError(
                f"model.freeze_layers={self.model.freeze_layers} but the student keeps {len(d.student_layers)} "
                f"layers: set model.freeze_layers <= {len(d.student_layers)}"
            )
        if d.teacher is not None and d.student_layers is not None:
            num = _teacher_layers(d.teacher)
            if num is not None and d.student_layers[-1] >= num:
                raise ValueError(
                    f"distil.student_layers={d.student_layers}: the teacher has {num} layers "
                    f"(indices 0..{num - 1}); pick a subset of them"
                )

    @property
    def loss_name(self) -> str:
        return self.loss.name or kinds.get(self.model.kind).default_loss

    @property
    def metric_name(self) -> str:
        return self.train.metric or kinds.get(self.model.kind).default_metric


def _teacher_layers(teacher: str) -> int | None:
    """The layer count of a saved cross-encoder's encoder (``encoder/config.json``); None if unreadable
    (not written yet: a pipeline validates before training)."""
    import json
    from pathlib import Path

    path = Path(teacher) / "encoder" / "config.json"
    try:
        n = json.loads(path.read_text(encoding="utf-8")).get("num_hidden_layers")
    except (OSError, ValueError):
        return None
    return n if isinstance(n, int) else None
