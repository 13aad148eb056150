"""Typed, frozen settings of the search stages: what crosses from the app builder to the Serve
deployments (and to the in-process pipeline of the benchmark and the ``search`` evaluate protocol).
No defaults here: the serve config's pydantic models (``recsys.serving.config``) are the one place
defaults live, and their ``settings()`` builders make these."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuerySettings:
    """Query understanding before retrieval (``recsys.search.query``); all off = the query as typed."""

    spelling: bool  # SymSpell over the index's title vocabulary (known words never change)
    units: bool  # sizes in the catalog's convention: 0.5 inch / 1/2" -> 1/2 in.
    synonyms: bool  # append the mined one-way expansions of synonyms_path
    max_edit_distance: int
    min_word_length: int  # shorter words are never corrected
    synonyms_path: str | None  # JSON {word: [expansion, ...]} (recsys.search.synonyms)

    @property
    def enabled(self) -> bool:
        return self.spelling or self.units or (self.synonyms and self.synonyms_path is not None)


@dataclass(frozen=True)
class RankSettings:
    """The retriever's second phase: ``blend`` = RRF order (the pipeline's hand-set blend follows);
    ``lambdarank`` = every dense + BM25 candidate re-ordered by a trained LightGBM model (``model``)."""

    kind: str  # blend | lambdarank
    model: str | None  # a directory written by the train_ranker job


@dataclass(frozen=True)
class RetrievalSettings:
    """Hybrid retrieval: dense ANN top-N and BM25 top-N, fused by weighted RRF."""

    ann_top_n: int
    bm25_top_n: int
    ann_weight: float
    bm25_weight: float
    rrf_k: float
    nprobe: int | None
    ef_search: int | None
    encoder: str | None  # query encoder; None = the index manifest's model
    encoder_backend: (
        str  # auto | torch | onnx | onnx-int8 | torch-int8 (recsys.compress.variants.resolve_backend)
    )
    max_length: int
    query_cache: int  # query embeddings kept per retriever replica (LRU); 0 = off
    query: QuerySettings | None = None  # query understanding; None = the query as typed
    rank: RankSettings | None = None  # second phase; None = blend


@dataclass(frozen=True)
class RulesSettings:
    """Merchandising rules (``recsys.search.rules``): the file, re-read when it changes."""

    path: str  # YAML / JSON rules file
    poll_s: float  # the file's mtime is checked at most this often (on the request path)


@dataclass(frozen=True)
class ResponseCacheSettings:
    """The pipeline's whole-response cache (per arm and ingress replica)."""

    entries: int  # 0 = off
    ttl_s: float  # 0 = no expiry (entries are keyed by the index version anyway)


@dataclass(frozen=True)
class RerankSettings:
    """The reranker's model and how its scores blend into relevance."""

    model: (
        str | None
    )  # a CrossEncoder directory or a compressed variant of one; None = the bi-encoder's cosine
    max_length: int
    top_n: int  # candidates reranked per request
    weight: float  # share of the reranker score in relevance (rest: the fused retrieval score)
    backend: str  # auto | torch | onnx | onnx-int8 | torch-int8 (recsys.compress.variants.resolve_backend)
    precision: str  # torch on a GPU: auto (fp16) | fp32 | fp16 | bf16; CPU and ONNX Runtime: fp32 weights
    pad_to_multiple_of: int  # sequence lengths padded up to a multiple (static-shape buckets); 0 = off
    torch_compile: bool  # torch.compile the cross-encoder (GPU path; shapes bounded by pad_to_multiple_of)


@dataclass(frozen=True)
class PersonalizeWeights:
    """Weights of the final score: relevance blended with the user's features."""

    relevance: float
    category_affinity: float
    price_band: float
    recent_items: float
    country_popularity: float
    popularity: float


@dataclass(frozen=True)
class PersonalizeSettings:
    weights: PersonalizeWeights
    sequential_model: str | None  # SequentialRecommender directory for recent-item scores; None = embeddings
