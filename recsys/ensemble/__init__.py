"""Model integration: fusion scorers (RRF, weighted, learned, two-stage re-ranking) and list post-processing."""

from recsys.ensemble.fusion import (
    CachedScorer,
    LearnedFusionScorer,
    RerankScorer,
    RRFScorer,
    WeightedScorer,
    fit_rerank_weight,
    fit_weights,
)
from recsys.ensemble.postprocess import dedupe, filter_seen, mmr, paginate

__all__ = [
    "CachedScorer",
    "LearnedFusionScorer",
    "RRFScorer",
    "RerankScorer",
    "WeightedScorer",
    "dedupe",
    "filter_seen",
    "fit_rerank_weight",
    "fit_weights",
    "mmr",
    "paginate",
]
