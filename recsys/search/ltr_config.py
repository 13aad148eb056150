"""Config of the train_ranker job (``recsys run train_ranker``): LambdaMART + mined synonyms from judged queries."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from recsys.config import JobConfig, StrictModel
from recsys.config.types import InputPath


class SynonymsConfig(StrictModel):
    """Mining of one-way query expansions from the judged TRAIN pairs (``synonyms.json``, for query.synonyms_path)."""

    enabled: bool = Field(True, description="Write synonyms.json beside the model.")
    relevant_min: float = Field(
        2.67, description="A (query, product) pair is mined when judged at or above this."
    )
    min_support: int = Field(3, ge=1, description="Relevant titles that must show the expansion.")
    min_share: float = Field(
        0.5, gt=0, le=1, description="Share of the word's mismatched relevant titles that must show it."
    )
    max_per_word: int = Field(2, ge=1, le=10, description="Expansions kept per query word.")


class TrainRankerConfig(JobConfig):
    """Train the second-phase LambdaMART ranker on judged train queries (features from the served retriever)."""

    serve_config: InputPath = Field(
        ..., description="The serve config whose arm's retriever makes the candidates."
    )
    arm: str | None = Field(None, description="Its arm (default: the first).")
    judgments: InputPath = Field(..., description="CSV / Parquet of judged (query, item_id, relevance) rows.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Source column -> query / item_id / relevance (as in evaluate's search).",
    )
    split_fractions: tuple[float, float, float] = Field(
        (0.7, 0.1, 0.2), description="train / valid / test shares: the SAME as the evaluate config's."
    )
    split_salt: str = Field("recsys-judged", min_length=1, description="The evaluate config's split salt.")
    relevance_range: tuple[float, float] | None = Field(
        None, description="[min, max] valid relevance; rows outside are skipped and counted."
    )
    candidates: int = Field(
        100,
        ge=10,
        le=2000,
        description="RRF candidates per query (the ranker sees every "
        "dense + BM25 candidate, at least this many).",
    )
    max_train_queries: int | None = Field(
        None, ge=1, description="A seeded subset of the train queries (time)."
    )
    max_valid_queries: int | None = Field(None, ge=1, description="A seeded subset of the valid queries.")
    rounds: int = Field(300, ge=1, le=5000, description="Boosting rounds (early stopping on valid NDCG@10).")
    synonyms: SynonymsConfig = Field(default_factory=SynonymsConfig, description="Synonym mining.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="LightGBM parameters over the defaults (learning_rate, num_leaves, ...).",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainRankerConfig:
        if any(f < 0 for f in self.split_fractions) or self.split_fractions[0] <= 0:
            raise ValueError(
                "split_fractions: three shares >= 0 with a positive train share, e.g. [0.7, 0.1, 0.2]"
            )
        if self.params.get("objective", "lambdarank") != "lambdarank":
            raise ValueError("params.objective: this job trains LambdaMART (lambdarank) only; drop the key")
        return self
