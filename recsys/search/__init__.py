"""The one search pipeline (retrieve -> fuse -> rerank -> personalize) and its typed settings."""

from recsys.search.pipeline import InProcess, SearchPipeline, SearchRejected, SearchRequest, SearchResult
from recsys.search.settings import PersonalizeSettings, PersonalizeWeights, RerankSettings, RetrievalSettings

__all__ = [
    "InProcess",
    "PersonalizeSettings",
    "PersonalizeWeights",
    "RerankSettings",
    "RetrievalSettings",
    "SearchPipeline",
    "SearchRejected",
    "SearchRequest",
    "SearchResult",
]
