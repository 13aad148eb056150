"""Config of the compress job: which saved model, which variants, the comparison sample, the benchmark."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from recsys.config import JobConfig, StrictModel
from recsys.config.types import InputPath

VariantKind = Literal["onnx", "onnx-int8", "torch-int8"]


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
        if value is None or (info.context or {}).get("check_paths", True) is False:
            return value
        if not os.path.isdir(value):
            raise ValueError(
                f"model.path {value!r} does not exist (cwd {os.getcwd()}); train it first "
                "(recsys run train --config configs/train/local.yaml writes runs/train/local/model) "
                "or point model.path at a saved model directory"
            )
        if not os.path.isfile(os.path.join(value, "recsys_model.json")):
            raise ValueError(
                f"model.path {value!r} has no recsys_model.json: not a saved recsys model; point it at the "
                "`model` folder a train job wrote (runs/train/<scale>/model)"
            )
        return value


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

    @model_validator(mode="after")
    def _throughput_batch_timed(self) -> BenchConfig:
        if self.throughput_batch not in self.batch_sizes:
            raise ValueError(
                f"bench.throughput_batch={self.throughput_batch} is not in bench.batch_sizes={self.batch_sizes}; "
                "add it to batch_sizes or pick one of them"
            )
        return self


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

    @field_validator("variants")
    @classmethod
    def _unique(cls, value: list[VariantKind]) -> list[VariantKind]:
        if len(set(value)) != len(value):
            raise ValueError(
                f"variants {value} lists a kind twice; list each of onnx, onnx-int8, torch-int8 once"
            )
        return value
