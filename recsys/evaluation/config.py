"""Config of the evaluate job (``recsys run evaluate``): data, protocol, models, ensembles, report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from recsys.config import InputConfig, JobConfig, StrictModel
from recsys.config.types import InputPath
from recsys.evaluation.metrics import parse_metric

ModelKind = Literal["popularity", "itemknn", "als", "bpr", "bm25", "zeroshot", "pair_features", "model"]


class EvalDataConfig(StrictModel):
    """Tables read by the evaluation (canonical schemas, docs/DATA.md)."""

    events: InputConfig | None = Field(
        None,
        description="Events (user_id, item_id, timestamp) or a sequences table (user_id, items); recommendation tasks.",
    )
    items: InputConfig | None = Field(
        None, description="Items (item_id + text such as title): text baselines and models."
    )
    candidates: InputConfig | None = Field(
        None,
        description="Candidate lists (user_id, items[, source]) shipped with a data set; protocol.candidates=file.",
    )
    users: InputConfig | None = Field(
        None,
        description="Users (user_id + columns such as country): each non-id column becomes a per-query segment.",
    )
    pairs: InputConfig | None = Field(
        None,
        description="Labelled pairs (left, right, label, left_id, right_id, split); matching / retrieval tasks.",
    )


class ProtocolConfig(StrictModel):
    """What is ranked, for whom, against what."""

    task: Literal["recommendation", "retrieval", "matching", "search"] = Field(
        "recommendation",
        description="recommendation: next item from a history; retrieval: each left offer of data.pairs -> its "
        "matching right product among all right products; matching: pair classification F1; search: the served "
        "/search pipeline of a serve config, end to end over its full index (the `search` section).",
    )
    split: Literal["leave_one_out", "time_split"] = Field(
        "leave_one_out", description="How recommendation targets are held out."
    )
    min_length: int = Field(3, ge=3, description="leave_one_out: users with fewer items only train.")
    test_start: str | None = Field(None, description="time_split: first test timestamp (ISO 8601).")
    valid_start: str | None = Field(
        None, description="time_split: first validation timestamp (<= test_start)."
    )
    candidates: Literal["sampled", "full", "file"] = Field(
        "sampled",
        description="sampled: targets + n_negatives random items; full: the whole catalog; file: data.candidates.",
    )
    n_negatives: int = Field(
        100, ge=1, description="sampled: random negatives per query (19 for LLMRank's 20 candidates)."
    )
    exclude_history: bool = Field(
        True, description="Never sample / rank items the user already interacted with."
    )
    candidate_source: str | None = Field(
        None, description="file: which candidate file (Games-6k: pop, bpr, sasrec)."
    )
    users: Literal["all", "with_candidates"] = Field(
        "all",
        description="with_candidates: evaluate only users that have a list in data.candidates (Games-6k's 6,000).",
    )
    max_queries: int | None = Field(
        None, ge=1, description="Evaluate at most this many queries (a seeded random subset)."
    )
    max_valid_queries: int | None = Field(
        5000,
        ge=1,
        description="Validation queries used for tuning / fusion weights (seeded subset; null = all).",
    )
    kfold: int = Field(
        0, ge=0, description="> 1: also run k-fold cross-validation over users for the baselines."
    )

    @model_validator(mode="after")
    def _check(self) -> ProtocolConfig:
        if self.split == "time_split" and not self.test_start and self.task == "recommendation":
            raise ValueError("protocol.split=time_split needs protocol.test_start (e.g. '2011-10-01')")
        if self.kfold == 1:
            raise ValueError("protocol.kfold must be 0 (off) or >= 2")
        return self


class SearchVariant(StrictModel):
    """One ablation row of the search protocol: the evaluated arm with some serve sections overridden."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_]{1,32}$", description="Row label (letters, digits, _).")
    retrieval: dict[str, Any] | None = Field(
        None, description="Keys of the serve config's retrieval section (e.g. {ann_weight: 0})."
    )
    rerank: dict[str, Any] | None = Field(None, description="Keys of the rerank section.")
    personalize: dict[str, Any] | None = Field(None, description="Keys of the personalize section.")
    query: dict[str, Any] | None = Field(
        None, description="Keys of the query-understanding section (spelling, units, synonyms)."
    )
    rank: dict[str, Any] | None = Field(
        None, description="Keys of the second-phase ranker section (kind: lambdarank, model: <dir>)."
    )


class SearchProtocolConfig(StrictModel):
    """protocol.task search: every judged query through the SearchPipeline that Serve builds from a serve
    config (in-process, as the fused topology builds it), ranked over the arm's full index. Judged queries:
    ``judgments`` (Parquet / CSV: query, item_id, relevance [, query_id, user_id, country]) or ``queries``
    (TSV: query_id, query [, user_id]) + ``qrels`` (TREC: query_id 0 item_id relevance)."""

    serve_config: InputPath = Field(
        ..., description="A serve config (configs/serve/*.yaml); its first application."
    )
    arm: str | None = Field(
        None, description="Arm whose pipeline is evaluated (default: the first, the control)."
    )
    artifacts: str | None = Field(
        None,
        description="Serve this index directory instead of the arm's (e.g. a new index before deploying it).",
    )
    version: str | None = Field(None, description="Index version instead of the arm's.")
    judgments: InputPath | None = Field(
        None, description="Parquet / CSV with query, item_id, relevance columns."
    )
    queries: InputPath | None = Field(None, description="TSV: query_id <tab> query text [<tab> user_id].")
    qrels: InputPath | None = Field(
        None, description="TREC qrels: query_id 0 item_id relevance (relevance <= 0: not relevant)."
    )
    depth: int = Field(
        100, ge=1, le=1000, description="Items ranked per query (the request's k); >= the largest metric k."
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="judgments: source column -> query / item_id / relevance (Home Depot: "
        "{search_term: query, product_uid: item_id}).",
    )
    split: Literal["train", "valid", "test", "all"] = Field(
        "all",
        description="judgments: which queries to score; the bucket is a hash of the normalised query "
        "(all: the whole file, e.g. a shop's own judgment list given by override).",
    )
    split_fractions: tuple[float, float, float] = Field(
        (0.7, 0.1, 0.2), description="judgments: train / valid / test shares of the queries."
    )
    split_salt: str = Field("recsys-judged", min_length=1, description="Salt of the query-split hash.")
    relevance_range: tuple[float, float] | None = Field(
        None,
        description="judgments: [min, max] valid relevance (Home Depot: [1, 3]); rows outside are skipped "
        "and counted; null = no check.",
    )
    relevant_min: float | None = Field(
        None,
        description="Relevance at or above which an item counts as relevant for recall / MRR / hit rate "
        "(Home Depot: 2.67); null = relevance > 0. Queries without a relevant item are skipped (counted).",
    )
    gain_offset: float = Field(
        0.0,
        description="Graded NDCG gain = relevance - gain_offset (Home Depot: 1, so 'irrelevant' = 0); "
        "unjudged items gain 0.",
    )
    max_query_chars: int = Field(
        200, ge=1, description="judgments: longer queries are skipped (counted), not sent."
    )
    variants: list[SearchVariant] = Field(
        default_factory=list,
        description="Ablation rows: each is the arm with these sections overridden (merged over the "
        "arm's / app's); empty = the arm as configured.",
    )
    reference: str | None = Field(
        None, description="Variant every other is paired-tested against (default: the first)."
    )
    worst_queries: int = Field(
        20, ge=0, description="Queries on the worst-queries page (the last variant's lowest NDCG)."
    )

    @model_validator(mode="after")
    def _variants(self) -> SearchProtocolConfig:
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"search.variants: names must be unique; duplicated {dup}")
        if self.reference is not None and self.reference not in names:
            raise ValueError(f"search.reference {self.reference!r} is not a variant name ({names})")
        if self.split != "all" and self.judgments is None:
            raise ValueError("search.split needs judgments (a CSV / Parquet); TREC qrels are scored whole")
        if any(f < 0 for f in self.split_fractions) or sum(self.split_fractions) <= 0:
            raise ValueError(
                "search.split_fractions: three shares >= 0 with a positive sum, e.g. [0.7, 0.1, 0.2]"
            )
        return self

    @model_validator(mode="after")
    def _source(self) -> SearchProtocolConfig:
        if (self.judgments is None) == (self.queries is None and self.qrels is None):
            raise ValueError("search: give judgments (Parquet/CSV) or queries + qrels (TSV + TREC), not both")
        if self.judgments is None and (self.queries is None or self.qrels is None):
            raise ValueError("search: queries (TSV) and qrels (TREC) go together")
        return self


class ModelSpec(StrictModel):
    """One model or baseline in the comparison."""

    name: str = Field(..., min_length=1, description="Name in the leaderboard.")
    kind: ModelKind = Field(
        ...,
        description="A baseline kind, or 'model' = a trained recsys model directory; "
        "pair_features (string-similarity and product-code features, boosted trees fit on the "
        "train pairs) is for protocol.task: matching or retrieval.",
    )
    path: str | None = Field(
        None,
        description="kind=model: directory written by the train job (recsys_model.json), or a compressed variant "
        "of one written by the compress job (variant.json; see backend).",
    )
    backend: Literal["auto", "torch", "onnx", "onnx-int8", "torch-int8"] = Field(
        "auto",
        description="kind=model: how path runs: auto = what the directory holds; torch | onnx | onnx-int8 | "
        "torch-int8 must match it (onnx kinds: a cross-encoder or bi-encoder variant, "
        "runs/compress/<scale>/variants/<kind>; torch-int8 on a train-job directory quantizes it at load).",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Baseline constructor arguments.")
    tune: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Grid of params chosen on the validation split (primary metric); never on test.",
    )
    standalone: bool = Field(
        True,
        description="false: build it for ensembles only, not ranked on its own (a cross-encoder re-ranker, too slow "
        "to score the whole catalog).",
    )

    @model_validator(mode="after")
    def _path(self) -> ModelSpec:
        if self.kind == "model" and not self.path:
            raise ValueError(f"model {self.name!r}: kind=model needs path: <dir written by recsys run train>")
        if self.kind != "model" and self.path:
            raise ValueError(f"model {self.name!r}: path is only for kind=model; baselines take params")
        if self.kind != "model" and self.backend != "auto":
            raise ValueError(f"model {self.name!r}: backend is only for kind=model; drop it")
        return self


class EnsembleSpec(StrictModel):
    """A fusion of models listed in ``models``; weights / learned fusion fit on validation."""

    name: str = Field(..., min_length=1, description="Name in the leaderboard.")
    members: list[str] = Field(
        ...,
        min_length=2,
        description="Names of models (or ensembles listed above this one) to fuse; rerank: "
        "[first stage, re-ranker].",
    )
    method: Literal["rrf", "weighted", "learned", "rerank"] = Field(
        "rrf",
        description="rrf: reciprocal rank fusion; weighted: z-normalised scores, weights fit on validation; "
        "learned: logistic regression over member scores (+ history length), fit on validation; rerank: the second "
        "member (a cross-encoder) re-scores the first member's top_n cells per query.",
    )
    rrf_k: float = Field(60.0, gt=0, description="rrf: the k in 1 / (k + rank).")
    top_n: int = Field(20, ge=1, le=1000, description="rerank: cells per query the re-ranker scores.")
    rerank_weight: float | None = Field(
        None,
        ge=0,
        le=1,
        description="rerank: share of the re-ranker's z-score in the top cells' order (rest: the first "
        "stage's); null = chosen on validation from 0, 0.25, 0.5, 0.75, 1.",
    )
    folds: int = Field(
        5,
        ge=2,
        le=20,
        description="learned, task matching: cross-fitting folds on validation (the "
        "F1 threshold is chosen on out-of-fold scores).",
    )

    @model_validator(mode="after")
    def _rerank(self) -> EnsembleSpec:
        if self.method == "rerank" and len(self.members) != 2:
            raise ValueError(
                f"ensemble {self.name!r}: method rerank takes members [first stage, re-ranker], "
                f"got {len(self.members)}"
            )
        return self


class EvaluatorSettings(StrictModel):
    """How scoring runs."""

    batch_size: int = Field(512, ge=1, description="Queries per scorer call (sampled / file protocols).")
    block_size: int = Field(
        2**23, ge=1, description="Full ranking: most scores held at once (queries x items)."
    )
    num_workers: int = Field(1, ge=1, description="Parallel Ray scoring tasks (query shards).")
    ties: Literal["pessimistic", "optimistic"] = Field(
        "pessimistic", description="How score ties are ranked."
    )


class EvaluateConfig(JobConfig):
    """Evaluate models and baselines on a protocol: metrics with CIs, paired tests, per-user Parquet, HTML."""

    data: EvalDataConfig = Field(..., description="Input tables.")
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig, description="Evaluation protocol.")
    metrics: list[str] = Field(
        default_factory=lambda: ["ndcg@10", "hit_rate@10", "mrr"],
        min_length=1,
        description="Ranking metrics (ndcg@k, hit_rate@k, recall@k, precision@k, mrr, map@k, auc); "
        "matching reports F1 etc.",
    )
    primary_metric: str | None = Field(None, description="Metric to select on (default: the first).")
    models: list[ModelSpec] = Field(
        default_factory=list, description="Models / baselines to compare (none for protocol.task search)."
    )
    search: SearchProtocolConfig | None = Field(
        None, description="protocol.task search: the serve config and judged queries."
    )
    ensembles: list[EnsembleSpec] = Field(default_factory=list, description="Fusions of listed models.")
    reference: str | None = Field(
        None, description="Paired significance of every model vs this one (default: the best)."
    )
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples for 95% CIs (0 = off).")
    significance_resamples: int = Field(
        10000, ge=100, description="Resamples of the permutation / bootstrap tests."
    )
    beyond_k: int = Field(
        10, ge=0, description="k of coverage / novelty / popularity-bias / diversity (0 = off)."
    )
    evaluator: EvaluatorSettings = Field(default_factory=EvaluatorSettings, description="Scoring settings.")
    results_json: str | None = Field(
        None,
        description="The leaderboard always goes to output_dir/results.json; also copy it here only when asked "
        "(results_json=docs/results/<name>.json refreshes a tracked result).",
    )
    published: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Published numbers to show beside ours: model name -> {metric: value}.",
    )

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        for m in v:
            parse_metric(m)  # raises with the list of valid names
        return v

    @model_validator(mode="after")
    def _check(self) -> EvaluateConfig:
        if (self.protocol.task == "search") != (self.search is not None):
            raise ValueError(
                "protocol.task search and the search section go together (serve_config + judged queries)"
            )
        if self.protocol.task != "search" and not self.models:
            raise ValueError("models: list at least one model or baseline to evaluate")
        names = [m.name for m in self.models] + [e.name for e in self.ensembles]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"model / ensemble names must be unique; duplicated: {dup}")
        known = {m.name for m in self.models}
        for e in self.ensembles:  # members: models, or ensembles listed above this one
            bad = [m for m in e.members if m not in known]
            if bad:
                raise ValueError(
                    f"ensemble {e.name!r}: members {bad} are not models or ensembles listed above it "
                    f"({sorted(known)})"
                )
            known.add(e.name)
        hidden = {m.name for m in self.models if not m.standalone}
        if self.reference in hidden:
            raise ValueError(
                f"reference {self.reference!r} has standalone: false (not ranked); pick a ranked model"
            )
        unused = hidden - {n for e in self.ensembles for n in e.members}
        if unused:
            raise ValueError(
                f"models {sorted(unused)} have standalone: false but no ensemble uses them; "
                "add them to an ensemble's members or drop standalone"
            )
        if self.reference and self.reference not in names:
            raise ValueError(f"reference {self.reference!r} is not a model or ensemble name ({names})")
        if (
            self.primary_metric
            and self.primary_metric not in self.metrics
            and self.protocol.task != "matching"
        ):
            raise ValueError(f"primary_metric {self.primary_metric!r} must be one of metrics {self.metrics}")
        task = self.protocol.task
        pair_only = [m.name for m in self.models if m.kind == "pair_features"]
        if pair_only and task not in ("matching", "retrieval"):
            raise ValueError(
                f"models {pair_only}: kind pair_features scores offer pairs by their texts; use it with "
                f"protocol.task: matching or retrieval (this config has {task})"
            )
        not_learned = [e.name for e in self.ensembles if e.method != "learned"]
        if task == "matching" and not_learned:
            raise ValueError(
                f"ensembles {not_learned}: matching fuses pair scores with method: learned (logistic "
                "regression fit on validation); rrf / weighted / rerank are for ranking protocols"
            )
        if task == "recommendation" and self.data.events is None:
            raise ValueError("protocol.task=recommendation needs data.events (events or sequences table)")
        if task in ("retrieval", "matching") and self.data.pairs is None:
            raise ValueError(
                f"protocol.task={task} needs data.pairs (a labelled pairs table with a split column)"
            )
        if self.protocol.candidates == "file" and self.data.candidates is None:
            raise ValueError("protocol.candidates=file needs data.candidates")
        if self.protocol.users == "with_candidates" and self.data.candidates is None:
            raise ValueError("protocol.users=with_candidates needs data.candidates")
        return self


__all__ = ["EvaluateConfig", "InputPath"]
