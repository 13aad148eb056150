"""Config of the train job: model kind and options, data, loss, optimizer, strategy, loop, scaling.

Every section is typed and documented; cross-field checks name the fix. Builders in
``recsys.models.builders`` and ``recsys.training.*`` turn these into objects.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recsys.config.base import InputConfig, JobConfig, ModelConfig, ScalingConfig, StrictModel
from recsys.losses import LOSSES_BY_KIND

ModelKind = Literal["bi_encoder", "cross_encoder", "sequential"]
DEFAULT_LOSS = {"bi_encoder": "infonce", "cross_encoder": "bce", "sequential": "full_softmax"}
DEFAULT_METRIC = {"bi_encoder": "mrr", "cross_encoder": "f1", "sequential": "ndcg@10"}


class BiEncoderOptions(StrictModel):
    """Options of the bi-encoder (query/user tower <-> item tower)."""

    pooling: Literal["mean", "cls", "max"] = Field("mean", description="Token pooling (mean for sentence-transformers models).")
    projection_dim: int | None = Field(None, ge=8, description="Linear projection after pooling (None = encoder width).")
    shared_towers: bool = Field(True, description="One encoder for queries and items; false = a separate item tower.")
    normalize: bool = Field(True, description="L2-normalize vectors (cosine similarity).")


class CrossEncoderOptions(StrictModel):
    """Options of the cross-encoder (query + item -> relevance)."""

    pooling: Literal["mean", "cls", "max"] = Field("cls", description="Pooling of the pair's token states.")
    num_labels: int = Field(1, ge=1, description="Head outputs: 1 = binary/graded score.")
    head_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout before the head.")


class SequentialOptions(StrictModel):
    """Options of the SASRec-style sequential recommender."""

    hidden_size: int = Field(64, ge=8, description="Transformer width.")
    num_layers: int = Field(2, ge=1, description="Transformer blocks.")
    num_heads: int = Field(2, ge=1, description="Attention heads (divide hidden_size).")
    max_len: int = Field(50, ge=2, description="History positions used (the most recent items).")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout of embeddings and blocks.")
    use_id_embeddings: bool = Field(True, description="Learn an embedding per item id (false = text-only, cold-start items).")
    use_text: bool = Field(False, description="Add item-text embeddings precomputed by model.name_or_path (needs data.items).")
    text_trainable: bool = Field(False, description="Fine-tune the precomputed text embedding table (false = frozen).")
    text_batch_size: int = Field(128, ge=1, description="Batch size when precomputing item-text embeddings.")
    user_features: list[str] = Field(
        default_factory=list, description="Columns of the sequences table used as user-feature tokens (country, segment, price_band)."
    )
    num_negatives: int = Field(256, ge=1, description="Sampled negatives per batch (loss: sampled_softmax / bpr).")

    @model_validator(mode="after")
    def _check(self) -> SequentialOptions:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}; change one")
        if not self.use_id_embeddings and not self.use_text:
            raise ValueError("set use_id_embeddings: true or use_text: true (the model needs item representations)")
        return self


class TrainModelConfig(ModelConfig):
    """Which model to train, from which pretrained encoder, and its options."""

    kind: ModelKind = Field(..., description="bi_encoder | cross_encoder | sequential.")
    bi_encoder: BiEncoderOptions = Field(default_factory=BiEncoderOptions, description="Bi-encoder options.")
    cross_encoder: CrossEncoderOptions = Field(default_factory=CrossEncoderOptions, description="Cross-encoder options.")
    sequential: SequentialOptions = Field(default_factory=SequentialOptions, description="Sequential model options.")
    freeze_layers: int = Field(0, ge=0, description="Freeze the embeddings and the first N transformer layers of the encoder.")
    dropout: float | None = Field(None, ge=0, lt=1, description="Override the encoder's hidden/attention dropout.")


class DataSection(StrictModel):
    """Training / validation tables (canonical, see docs/DATA.md) and how to slice them."""

    train: InputConfig = Field(..., description="Pairs (bi/cross-encoder) or sequences/events (sequential) to train on.")
    train_split: str | None = Field("train", description="Keep rows whose 'split' column has this value (if the column exists).")
    valid: InputConfig | None = Field(None, description="Validation table (default: data.train rows of valid_split).")
    valid_split: str | None = Field("valid", description="Validation rows' 'split' value (pairs); sequences hold out the last item.")
    items: InputConfig | None = Field(None, description="Items table (item_id, title): text for the sequential model.")
    holdout_last: int = Field(
        2, ge=1, le=2,
        description="Sequential without data.valid: items at the end held out (2 = last is test, second-last validates; 1 = last validates).",
    )
    max_train_rows: int | None = Field(None, ge=1, description="Use the first this many training rows (quick runs; the same rows every run).")
    max_valid_rows: int | None = Field(None, ge=1, description="Use the first this many validation rows (the same rows every run).")
    cache: bool = Field(
        True, description="Materialize the tokenized training data in the object store once (fast epochs); false = stream "
        "it every epoch (data larger than the object store).",
    )
    hard_negatives: bool = Field(False, description="Bi-encoder: add each query's label-0 right text as a mined hard negative.")
    relevance_gains: dict[str, float] | None = Field(
        None, description="Event type -> gain when pairs carry event_type instead of label (default view<click<cart<buy)."
    )


class LossConfig(StrictModel):
    """Training objective (see recsys.losses)."""

    name: Literal["infonce", "bce", "mse", "bpr", "margin", "listwise", "full_softmax", "sampled_softmax"] | None = Field(
        None, description="Loss; None = the kind's default (infonce / bce / full_softmax)."
    )
    temperature: float = Field(0.05, gt=0, description="InfoNCE temperature.")
    margin: float = Field(0.2, ge=0, description="Margin of the margin loss.")
    pos_weight: float | None = Field(None, gt=0, description="BCE weight of positives (e.g. 3 for ~25% positives).")
    list_size: int = Field(8, ge=2, description="Listwise: candidates per query group.")


class OptimConfig(StrictModel):
    """AdamW with warmup and a decay schedule, gradient accumulation and clipping."""

    lr: float = Field(5e-5, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not applied to biases and norms).")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    scheduler: Literal["constant", "linear", "cosine"] = Field("linear", description="Decay after warmup.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Fraction of the optimizer steps spent warming up.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the gradient norm (None = no clipping).")


class DeepSpeedOptions(StrictModel):
    """DeepSpeed ZeRO options (strategy: deepspeed)."""

    # an int in [0, 3], not Literal[0, 1, 2, 3]: a Literal of ints rejects the command-line override
    # strategy.deepspeed.zero_stage=3 (overrides arrive as strings; pydantic coerces '3' only for int fields)
    zero_stage: int = Field(2, ge=0, le=3, description="ZeRO stage: 0 none, 1 optimizer, 2 +gradients, 3 +parameters.")
    offload_optimizer: bool = Field(False, description="ZeRO-Offload: optimizer states on CPU (stage >= 1; GPUs only).")
    offload_params: bool = Field(False, description="Offload parameters to CPU (stage 3; GPUs only).")
    extra: dict = Field(default_factory=dict, description="Merged into the generated DeepSpeed config (advanced).")


class StrategyConfig(StrictModel):
    """How gradients are synchronized and in which precision."""

    name: Literal["deepspeed", "ddp"] = Field("ddp", description="deepspeed (ZeRO) or ddp (gloo on CPU, nccl on GPU).")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="Training precision (fp16 needs GPUs).")
    deepspeed: DeepSpeedOptions = Field(default_factory=DeepSpeedOptions, description="DeepSpeed options.")
    find_unused_parameters: bool = Field(False, description="DDP: allow parameters without gradients (slower).")


class LoraConfig(StrictModel):
    """LoRA adapters on the encoder (peft)."""

    enabled: bool = Field(False, description="Train LoRA adapters instead of the full encoder.")
    r: int = Field(8, ge=1, description="Adapter rank.")
    alpha: int = Field(16, ge=1, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Adapter dropout.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "key", "value", "dense"], description="Module-name suffixes that get adapters."
    )
    export: Literal["merged", "adapter"] = Field("merged", description="Export merged weights, or the adapter as well.")


class AdversarialConfig(StrictModel):
    """Adversarial training on the word-embedding layer."""

    method: Literal["none", "fgm", "pgd"] = Field("none", description="fgm (one step) or pgd (k steps) perturbations.")
    epsilon: float = Field(1.0, gt=0, description="Perturbation norm bound.")
    alpha: float = Field(0.3, gt=0, description="PGD step size.")
    steps: int = Field(3, ge=1, description="PGD steps.")
    emb_name: str = Field("word_embeddings", description="Name fragment of the embedding parameter perturbed.")


class LoopConfig(StrictModel):
    """Epochs, batches, validation cadence, early stopping, checkpoints, failures."""

    epochs: int = Field(1, ge=1, description="Passes over the training data.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = Field(32, ge=1, description="Micro-batch size per worker.")
    shuffle_buffer: int = Field(
        2048, ge=0, description="Rows in each worker's shuffle buffer (new order every epoch; 0 = no shuffle)."
    )
    eval_batch_size: int = Field(128, ge=1, description="Validation batch size.")
    eval_every: int = Field(100, ge=1, description="Validate, report and checkpoint every N optimizer steps (and at the end).")
    log_every: int = Field(10, ge=1, description="Log the training loss every N optimizer steps.")
    metric: str | None = Field(None, description="Metric for best model / early stopping (default: mrr / f1 / ndcg@10).")
    mode: Literal["max", "min"] = Field("max", description="Whether a larger metric is better.")
    patience: int | None = Field(None, ge=1, description="Stop after N validations without improvement (None = never).")
    num_to_keep: int = Field(2, ge=1, description="Checkpoints kept (the best N by metric).")
    max_failures: int = Field(1, ge=0, description="Restart the workers from the latest checkpoint this many times.")
    resume: bool = Field(True, description="Resume from the latest checkpoint of a previous run in output_dir.")


class TrainConfig(JobConfig):
    """Fine-tune a bi-encoder, cross-encoder or sequential recommender with Ray Train (DDP / DeepSpeed)."""

    model: TrainModelConfig = Field(..., description="Model kind, pretrained encoder and options.")
    data: DataSection = Field(..., description="Training / validation tables.")
    loss: LossConfig = Field(default_factory=LossConfig, description="Objective.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimizer and schedule.")
    strategy: StrategyConfig = Field(default_factory=StrategyConfig, description="DDP / DeepSpeed and precision.")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA adapters.")
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig, description="FGM / PGD.")
    train: LoopConfig = Field(default_factory=LoopConfig, description="Loop, validation and checkpoints.")
    scaling: ScalingConfig = Field(default_factory=ScalingConfig, description="Ray Train workers and resources.")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        kind = self.model.kind
        loss = self.loss_name
        if loss not in LOSSES_BY_KIND[kind]:
            raise ValueError(f"loss.name {loss!r} does not fit model.kind {kind!r}; use one of {LOSSES_BY_KIND[kind]}")
        if kind == "sequential":
            if self.lora.enabled:
                raise ValueError("lora.enabled needs a transformer encoder; the sequential model has none: set lora.enabled: false")
            if self.adversarial.method != "none":
                raise ValueError("adversarial training perturbs word embeddings of a text encoder: set adversarial.method: none for sequential")
            if self.model.sequential.use_text and self.data.items is None:
                raise ValueError("model.sequential.use_text needs data.items (a table with item_id, title)")
        if self.data.hard_negatives and kind != "bi_encoder":
            raise ValueError("data.hard_negatives applies to the bi_encoder only; set it to false")
        if loss in ("bpr", "margin") and kind == "bi_encoder" and not self.data.hard_negatives:
            raise ValueError(f"loss {loss} for the bi_encoder needs negatives: set data.hard_negatives: true")
        if loss == "listwise" and self.train.batch_size % self.loss.list_size:
            raise ValueError(f"listwise loss: train.batch_size ({self.train.batch_size}) must be a multiple of loss.list_size ({self.loss.list_size})")
        if self.lora.enabled and self.strategy.name == "deepspeed" and self.strategy.deepspeed.zero_stage == 3:
            raise ValueError("LoRA export merges adapters on rank 0; use strategy.deepspeed.zero_stage <= 2 with lora.enabled")
        adv = self.adversarial
        if adv.method != "none" and "embeddings" in adv.emb_name and (self.lora.enabled or self.model.freeze_layers):
            # LoRA (peft) and freeze_layers freeze the embedding matrix the attack perturbs: the workers
            # would fail at start-up; say so at validate time
            raise ValueError(f"adversarial.method {adv.method} perturbs the trainable {adv.emb_name}, which "
                             f"{'lora.enabled' if self.lora.enabled else 'model.freeze_layers'} freezes: set "
                             "adversarial.method: none, or lora.enabled: false and model.freeze_layers: 0")
        if self.adversarial.method == "pgd" and self.strategy.name == "deepspeed":
            raise ValueError("adversarial.method pgd needs strategy.name: ddp (DeepSpeed hooks every backward); use fgm with deepspeed")
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

    @property
    def loss_name(self) -> str:
        return self.loss.name or DEFAULT_LOSS[self.model.kind]

    @property
    def metric_name(self) -> str:
        return self.train.metric or DEFAULT_METRIC[self.model.kind]
