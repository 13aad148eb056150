"""Config of the index job (``recsys run index``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recsys.config import InputConfig, JobConfig, ModelConfig, StrictModel


class EmbedConfig(StrictModel):
    """Catalog embedding with a Ray Data actor pool."""

    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(max_length=64),
        description="Bi-encoder: a trained BiEncoder directory (runs/train/.../model) or a pretrained HF encoder.",
    )
    batch_size: int = Field(128, ge=1, le=8192, description="Titles per map_batches call.")
    concurrency: int = Field(1, ge=1, description="Actors in the embedding pool.")
    num_cpus: float = Field(1.0, gt=0, description="CPUs per embedding actor.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per embedding actor (0 = CPU).")
    backend: Literal["auto", "torch", "onnx", "onnx-int8", "torch-int8"] = Field(
        "auto",
        description="How model.name_or_path runs: auto = what the directory holds (a trained BiEncoder: torch; a "
        "compressed variant from `recsys run compress`: its kind); onnx / onnx-int8 / torch-int8 need that variant "
        "(runs/compress/<scale>/variants/<kind>). Queries at serve time use the backend recorded in the manifest.",
    )

    @model_validator(mode="after")
    def _backend(self) -> EmbedConfig:
        from pathlib import Path

        from recsys.compress.variants import VariantError, check_model_backend

        try:
            check_model_backend(Path(self.model.name_or_path), self.backend, "bi_encoder")
        except VariantError as e:
            raise ValueError(f"embed.model.name_or_path / embed.backend: {e}") from None
        return self


class AnnConfig(StrictModel):
    """faiss index over the item embeddings (inner product on normalised vectors = cosine)."""

    kind: Literal["auto", "exact", "ivf", "hnsw"] = Field(
        "auto", description="exact (flat), ivf, hnsw; auto = exact up to exact_max_items, else hnsw."
    )
    exact_max_items: int = Field(50_000, ge=1, description="auto uses exact search up to this many items.")
    nlist: int = Field(256, ge=1, description="IVF: number of clusters (capped at items/39).")
    nprobe: int = Field(16, ge=1, description="IVF: clusters visited per query.")
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW: links per node.")
    ef_construction: int = Field(80, ge=8, description="HNSW: build-time candidate list.")
    ef_search: int = Field(64, ge=8, description="HNSW: query-time candidate list.")
    recall_k: int = Field(10, ge=1, description="k of the recall@k vs exact search recorded in the manifest.")
    recall_queries: int = Field(500, ge=1, description="Held-in items used as queries for the recall check.")


class Bm25Config(StrictModel):
    """bm25s lexical index over item text."""

    fields: list[str] = Field(
        ["title", "brand", "category", "description"],
        min_length=1,
        description="Item columns concatenated into the indexed text (missing ones skipped).",
    )
    k1: float = Field(1.5, gt=0, description="BM25 term-frequency saturation.")
    b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation.")


class AutocompleteConfig(StrictModel):
    """Phrases (past queries and item titles) weighted by frequency and conversion."""

    include_titles: bool = Field(True, description="Complete to item titles (weighted by popularity).")
    title_weight: float = Field(1.0, ge=0, description="Multiplier of title weights vs query weights.")
    conversion_weight: float = Field(2.0, ge=0, description="Boost of a query by its conversion rate.")


class FeaturesConfig(StrictModel):
    """Per-user and per-item lookups that the personalizer and recommender read."""

    recent_items: int = Field(20, ge=1, le=1000, description="Most recent items kept per user.")
    popular_items: int = Field(
        200, ge=1, description="Items kept per popularity list (global / country / category)."
    )
    event_weights: dict[str, float] = Field(
        {"view": 1.0, "click": 2.0, "fav": 3.0, "cart": 4.0, "buy": 8.0},
        description="Popularity weight of each event type (others count 1).",
    )
    purchase_events: list[str] = Field(["buy"], description="Event types that mark an item as purchased.")


class ChangeLogConfig(StrictModel):
    """Where the live catalog's change log is (the online store): an external Redis / Valkey, or an embedded
    server's data dir that the job opens itself (only when no app runs on that dir)."""

    url: str | None = Field(None, description="redis://host:port/db of the online store (no password here).")
    url_env: str | None = Field(None, description="Env var holding the URL (may carry a password).")
    dir: str | None = Field(
        None, description="An embedded store's data dir, opened by the job (tests, demos)."
    )
    key_prefix: str = Field(
        "rs", description="The online store's key_prefix (serve config online.key_prefix)."
    )

    @model_validator(mode="after")
    def _one(self) -> ChangeLogConfig:
        given = [n for n in ("url", "url_env", "dir") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(f"a change log needs exactly one of url, url_env, dir (got {given or 'none'})")
        return self


class ChangesConfig(StrictModel):
    """Catalog changes folded into this build (the live catalog's upserts / deletes: docs/ONLINE.md)."""

    path: str | None = Field(
        None, description="A Parquet / CSV of changes (op, item_id, title, ...), applied first."
    )
    log: ChangeLogConfig | None = Field(
        None,
        description="The change log (every change, in order); the manifest records its head as catalog_seq.",
    )


class IndexJobConfig(JobConfig):
    """Config of the index job."""

    items: InputConfig = Field(
        ..., description="The item catalog (item_id, title [, category, brand, price, description])."
    )
    history: InputConfig | None = Field(
        None, description="Events or sequences: popularity, user lookups, queries."
    )
    users: InputConfig | None = Field(None, description="Users table (user_id, country, ...).")
    max_items: int | None = Field(None, ge=1, description="Keep only the first N catalog rows (tiny runs).")
    version: str | None = Field(None, description="Artifact version name; default v<UTC timestamp>.")
    embed: EmbedConfig = Field(default_factory=EmbedConfig, description="Catalog embedding.")
    ann: AnnConfig = Field(default_factory=AnnConfig, description="ANN index.")
    bm25: Bm25Config = Field(default_factory=Bm25Config, description="Lexical index.")
    autocomplete: AutocompleteConfig = Field(
        default_factory=AutocompleteConfig, description="Autocomplete index."
    )
    features: FeaturesConfig = Field(default_factory=FeaturesConfig, description="User / item lookups.")
    changes: ChangesConfig | None = Field(
        None, description="Live-catalog changes folded into this version (so batch and online agree)."
    )

    @model_validator(mode="after")
    def _version(self) -> IndexJobConfig:
        if self.version is not None and (
            not self.version or "/" in self.version or self.version in (".", "..", "latest")
        ):
            raise ValueError("version must be a plain directory name other than 'latest' (e.g. v3)")
        return self
