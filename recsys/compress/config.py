"""Config of the compress job: which saved model, which variants, the comparison sample, the benchmark."""

from __future__ import annotations

import os
from typing import Literal, cast

from pydantic import Field, ValidationInfo, field_validator, model_validator

from recsys.config import JobConfig, StrictModel
from recsys.config.types import InputPath

VariantKind = Literal["onnx", "onnx-int8", "torch-int8"]


def check_saved_model(value: str | None, info: ValidationInfo, field: str) -> str | None:
    """``value`` is a saved recsys model directory (unless the validation context says check_paths=False)."""
    if value is None or (info.context or {}).get("check_paths", True) is False:
        return value
    if not os.path.isdir(value):
        raise ValueError(
            f"{field} {value!r} does not exist (cwd {os.getcwd()}); train it first "
            "(recsys run train --config configs/train/local.yaml writes runs/train/local/model) "
            f"or point {field} at a saved model directory"
        )
    if not os.path.isfile(os.path.join(value, "recsys_model.json")):
        raise ValueError(
            f"{field} {value!r} has no recsys_model.json: not a saved recsys model; point it at the "
            "`model` folder a train job wrote (runs/train/<scale>/model)"
        )
    return value


class SourceModelConfig(StrictModel):
    """The model to compress: a saved directory, or (smoke tests) a freshly built random one."""

    path: str | None = Field(
        None,
        description="A saved cross-encoder or bi-encoder directory (runs/train/<scale>/model, with recsys_model.json).",
    )
    random: Literal["cross_encoder", "bi_encoder"] | None = Field(
        None,
        description="Instead of path: build this kind over `encoder` with random heads (smoke tests only).",
    )
    encoder: str = Field(
        "random-bert-tiny",
        description="Encoder of a `random` model: an alias, HF directory or random-bert-tiny.",
    )
    max_length: int = Field(48, ge=8, le=8192, description="Tokenizer truncation length of a `random` model.")

    @model_validator(mode="after")
    def _one_source(self) -> SourceModelConfig:
        if (self.path is None) == (self.random is None):
            raise ValueError(
                "set exactly one of model.path (a trained model directory, e.g. runs/train/local/model) "
                "and model.random (cross_encoder | bi_encoder, a random model for smoke tests)"
            )
        return self

    @field_validator("path")
    @classmethod
    def _saved_model(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_saved_model(value, info, "model.path")


class ExportConfig(StrictModel):
    """torch -> ONNX export settings."""

    opset: int = Field(17, ge=14, le=21, description="ONNX opset (14+: what the HF encoders' ops need).")
    optimization: Literal["none", "basic", "extended", "all"] = Field(
        "extended",
        description="ONNX Runtime offline graph optimization of the fp32 graph (extended = fused attention, "
        "portable across CPUs; all adds machine-specific layouts).",
    )


class SampleConfig(StrictModel):
    """The fixed pairs every variant is scored on and compared with the torch model."""

    path: InputPath | None = Field(
        None,
        description="Pairs to score: a Parquet file with left, right[, label] columns or a Ditto "
        "left<TAB>right<TAB>label .txt; null = a built-in set of product pairs.",
    )
    size: int = Field(64, ge=2, le=100_000, description="Pairs taken from the start of the file (or built).")


class BenchConfig(StrictModel):
    """Latency benchmark settings (fixed threads, one process)."""

    threads: int = Field(2, ge=1, le=256, description="Intra-op threads of torch and ONNX Runtime.")
    batch_sizes: list[int] = Field(
        default_factory=lambda: [1, 8, 32, 64],
        min_length=1,
        description="Batch sizes timed (pairs per call).",
    )
    repeats: int = Field(20, ge=1, description="Timed calls per batch size (p99 needs >= 100 to mean much).")
    warmup: int = Field(2, ge=0, description="Untimed calls per batch size first.")
    throughput_batch: int = Field(32, ge=1, description="Batch size whose pairs/s is reported as pairs_s.")
    isolated_rss: bool = Field(
        False,
        description="Also measure each model's / variant's peak RSS alone (isolated_peak_rss_mb): a fresh process "
        "opens it and scores one batch of each size (a few seconds per row).",
    )

    @model_validator(mode="after")
    def _throughput_batch_timed(self) -> BenchConfig:
        if self.throughput_batch not in self.batch_sizes:
            raise ValueError(
                f"bench.throughput_batch={self.throughput_batch} is not in bench.batch_sizes={self.batch_sizes}; "
                "add it to batch_sizes or pick one of them"
            )
        return self


class QualityConfig(StrictModel):
    """Quality of every variant on a shared evaluation protocol, paired against the uncompressed model."""

    protocol: InputPath = Field(
        description="An evaluate config (configs/evaluate/*.yaml) whose data, protocol, metrics, bootstrap and "
        "significance settings are the protocol (its models are ignored: the compress job scores its own). "
        "Task matching (cross-encoders: F1 at the threshold chosen on valid) or retrieval (bi-encoders: MRR, "
        "Recall@10, ...).",
    )
    overrides: list[str] = Field(
        default_factory=list,
        description="key=value overrides of that config, e.g. protocol.max_queries=256 (a faster, smaller test set).",
    )
    max_relative_drop: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Quality gate: a variant whose primary metric falls more than this share below the "
        "uncompressed model's (e.g. 0.01 = 1 %) is marked not promotable, with the reason.",
    )
    batch_size: int = Field(64, ge=1, description="Scoring batch size of the quality run.")


class ExtraModelConfig(StrictModel):
    """Another trained model compressed and compared against the same reference (a chain: distil -> int8)."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_\-]{1,40}$",
        description="Its rows' name (e.g. student): rows <name> (torch fp32) and <name>/<kind> per variant.",
    )
    path: str = Field(
        description="Its saved model directory, e.g. runs/train/local-distil/model (the distilled student)."
    )
    variants: list[VariantKind] = Field(
        default_factory=list,
        description="Variants of this model (e.g. [onnx-int8]); [] = its torch row only.",
    )

    @field_validator("path")
    @classmethod
    def _saved_model(cls, value: str, info: ValidationInfo) -> str:
        return cast(str, check_saved_model(value, info, "extra_models[].path"))


class RecoveryConfig(StrictModel):
    """The short recovery fine-tune of a pruned model: the train job, starting from the pruned weights."""

    config: str = Field(
        description="The train job's config (a scale such as local, or a YAML path) whose data, loss and loop "
        "fine-tune the pruned model; model.name_or_path is set to the pruned model directory.",
    )
    overrides: list[str] = Field(
        default_factory=list,
        description="key=value overrides of that config, e.g. train.epochs=1 (a short recovery).",
    )


class PruneConfig(StrictModel):
    """Structured pruning of the FFN neurons of every encoder layer, ranked by importance, then recovery."""

    name: str = Field("pruned", pattern=r"^[A-Za-z0-9_\-]{1,40}$", description="Its rows' name.")
    ffn_keep: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of each layer's FFN (intermediate) neurons kept; the same width in every layer, so "
        "the pruned encoder is a plain Hugging Face config (intermediate_size) and loads the HF way.",
    )
    importance: Literal["taylor", "magnitude"] = Field(
        "taylor",
        description="taylor: |activation x gradient| of the loss summed over `batches` labelled pairs "
        "(first-order Taylor estimate of the loss change when the neuron is removed); magnitude: L2 norm of "
        "the neuron's input and output weights (no data).",
    )
    data: SampleConfig = Field(
        default_factory=SampleConfig,
        description="Labelled pairs the taylor importance is measured on (the task's training pairs).",
    )
    batch_size: int = Field(16, ge=1, description="Pairs per importance batch.")
    recovery: RecoveryConfig | None = Field(
        None, description="Recovery fine-tune through the train job (None = the pruned weights as they are)."
    )
    variants: list[VariantKind] = Field(
        default_factory=lambda: list[VariantKind](["onnx-int8"]),
        description="Variants of the pruned model (a chain: prune -> int8).",
    )


class CompressConfig(JobConfig):
    """Compress a trained cross-encoder or bi-encoder into ONNX fp32 / int8 variants and benchmark them."""

    model: SourceModelConfig = Field(description="The model to compress.")
    variants: list[VariantKind] = Field(
        default_factory=lambda: list[VariantKind](["onnx", "onnx-int8"]),
        min_length=1,
        description="Variants to write under <output_dir>/variants/<kind> (onnx, onnx-int8, torch-int8).",
    )
    export: ExportConfig = Field(default_factory=ExportConfig, description="ONNX export.")
    sample: SampleConfig = Field(default_factory=SampleConfig, description="Comparison sample.")
    bench: BenchConfig = Field(default_factory=BenchConfig, description="Latency benchmark.")
    quality: QualityConfig | None = Field(
        None, description="Quality on a shared protocol + the promotion gate (None = score agreement only)."
    )
    extra_models: list[ExtraModelConfig] = Field(
        default_factory=list,
        description="More trained models compressed beside it and compared with the same reference "
        "(e.g. the distilled student: the chain distil -> int8).",
    )
    prune: PruneConfig | None = Field(
        None, description="Structured pruning (+ recovery) of model (None = off)."
    )

    @field_validator("variants")
    @classmethod
    def _unique(cls, value: list[VariantKind]) -> list[VariantKind]:
        if len(set(value)) != len(value):
            raise ValueError(
                f"variants {value} lists a kind twice; list each of onnx, onnx-int8, torch-int8 once"
            )
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> CompressConfig:
        names = ["torch", *(m.name for m in self.extra_models), *([self.prune.name] if self.prune else [])]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(
                f"extra_models[].name / prune.name {dup} used twice (or 'torch', the source model's row); "
                "give each model a unique name"
            )
        return self
