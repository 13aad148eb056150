"""Model integration: fusion scorers (RRF, weighted, learned) and list post-processing."""

from recsys.ensemble.fusion import CachedScorer, LearnedFusionScorer, RRFScorer, WeightedScorer, fit_weights
from recsys.ensemble.postprocess import dedupe, filter_seen, mmr, paginate

__all__ = ["CachedScorer", "LearnedFusionScorer", "RRFScorer", "WeightedScorer", "dedupe", "filter_seen",
           "fit_weights", "mmr", "paginate"]
