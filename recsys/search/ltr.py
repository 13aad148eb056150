"""The learned second-phase ranker: LightGBM LambdaMART (``objective: lambdarank``) over
:func:`~recsys.search.features.candidate_features`.

- :func:`collect` turns judged queries into a LambdaMART training set by asking a
  :class:`~recsys.search.stages.RetrieverCore` for its candidates and their features (the method Serve
  ranks with), labelled with the judged grade (unjudged = 0);
- :func:`train_lambdarank` fits the model on the train groups with early stopping on the valid groups;
- :class:`LambdaRanker` is what the retriever loads (``rank.kind: lambdarank``, ``rank.model: <dir>``).

A model directory holds ``model.txt`` (LightGBM's text format) and ``ranker.json`` (feature names,
label mapping, training metrics); a model trained on other features is refused at load.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from recsys.search.features import FEATURES

MODEL_FILE, META_FILE = "model.txt", "ranker.json"


class _Candidates(Protocol):
    def candidates(
        self, query: str, filters: dict[str, Any], n: int, *, features: bool = False
    ) -> tuple[list[dict[str, Any]], np.ndarray | None]: ...

    def rewrite(self, query: str, exact: bool = False) -> Any: ...


@dataclass(frozen=True)
class RankingSet:
    """Rows grouped by query (``groups``: rows per query, in order), integer labels."""

    features: np.ndarray  # float32 [R, F]
    labels: np.ndarray  # int32 [R]
    groups: np.ndarray  # int64 [Q]
    query_ids: list[str]


def grade_label(relevance: float) -> int:
    """Judged 1..3 -> 0..4 (half-grade steps: 2.33 -> 3, 2.67 -> 3, 3 -> 4); unjudged -> 0."""
    return int(np.clip(np.round((relevance - 1.0) * 2.0), 0, 4))


def collect(
    retriever: _Candidates,
    queries: Sequence[tuple[str, str, dict[str, float]]],
    n: int,
    label: Callable[[float], int] = grade_label,
) -> RankingSet:
    """``queries``: (query id, text, {item_id: judged relevance}). Each query is rewritten exactly as
    Serve rewrites it, then its candidates and features come from ``retriever.candidates``."""
    feats, labels, groups, ids = [], [], [], []
    for qid, text, judged in queries:
        rw = retriever.rewrite(text)
        cands, f = retriever.candidates(rw.query, {}, n, features=True)
        if not cands or f is None:
            continue
        feats.append(f)
        labels.append(np.array([label(judged[c["item_id"]]) if c["item_id"] in judged else 0 for c in cands]))
        groups.append(len(cands))
        ids.append(qid)
    return RankingSet(
        features=np.concatenate(feats) if feats else np.zeros((0, len(FEATURES)), np.float32),
        labels=np.concatenate(labels).astype(np.int32) if labels else np.zeros(0, np.int32),
        groups=np.asarray(groups, dtype=np.int64),
        query_ids=ids,
    )


def train_lambdarank(
    train: RankingSet, valid: RankingSet | None, params: dict[str, Any], rounds: int, seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """``(booster, info)``: LambdaMART fit on ``train`` (early stopping on ``valid``'s NDCG@10)."""
    import lightgbm as lgb  # lazy: only ranker training and lambdarank arms need it

    p = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 20,
        "verbosity": -1,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        **params,
    }
    dtrain = lgb.Dataset(train.features, train.labels, group=train.groups, feature_name=list(FEATURES))
    sets, names = [dtrain], ["train"]
    if valid is not None and len(valid.groups):
        sets.append(lgb.Dataset(valid.features, valid.labels, group=valid.groups, reference=dtrain))
        names.append("valid")
    evals: dict[str, Any] = {}
    callbacks = [lgb.record_evaluation(evals)]
    if len(sets) > 1:
        callbacks.append(lgb.early_stopping(30, verbose=False))
    booster = lgb.train(
        p, dtrain, num_boost_round=rounds, valid_sets=sets, valid_names=names, callbacks=callbacks
    )
    info = {
        "params": p,
        "best_iteration": int(booster.best_iteration or rounds),
        "valid_ndcg@10": float(evals["valid"]["ndcg@10"][booster.best_iteration - 1])
        if "valid" in evals and booster.best_iteration
        else None,
        "train_rows": int(len(train.labels)),
        "train_queries": int(len(train.groups)),
        "importance_gain": dict(
            zip(FEATURES, [float(x) for x in booster.feature_importance(importance_type="gain")])
        ),
    }
    return booster, info


def fit_to_text(
    train: RankingSet, valid: RankingSet | None, params: dict[str, Any], rounds: int, seed: int = 0
) -> tuple[str, dict[str, Any]]:
    """:func:`train_lambdarank` returning the model in LightGBM's text format (what a Ray task ships back)."""
    booster, info = train_lambdarank(train, valid, params, rounds, seed)
    return booster.model_to_string(num_iteration=info["best_iteration"]), info


def save_ranker(model_text: str, out_dir: str | Path, info: dict[str, Any]) -> Path:
    """``model.txt`` + ``ranker.json`` (features, label mapping, training info) under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_FILE).write_text(model_text, encoding="utf-8")
    meta = {"kind": "lambdarank", "features": list(FEATURES), "labels": "round((relevance - 1) * 2)", **info}
    (out / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
    return out


class LambdaRanker:
    """A trained LambdaMART model; ``predict(features [C, F]) -> scores [C]`` (higher = better)."""

    def __init__(self, booster: Any):
        self.booster = booster

    @classmethod
    def load(cls, path: str | Path | None) -> LambdaRanker:
        if path is None:
            raise ValueError(
                "rank.kind lambdarank needs rank.model: a directory written by `recsys run train_ranker`"
            )
        root = Path(path)
        if not (root / MODEL_FILE).is_file() or not (root / META_FILE).is_file():
            raise FileNotFoundError(
                f"rank.model {str(root)!r} has no {MODEL_FILE} / {META_FILE}; train one with "
                "`recsys run train_ranker --config configs/train_ranker/<name>.yaml`"
            )
        meta = json.loads((root / META_FILE).read_text(encoding="utf-8"))
        if tuple(meta.get("features", ())) != FEATURES:
            raise ValueError(
                f"rank.model {str(root)!r} was trained on features {meta.get('features')}, this code computes "
                f"{list(FEATURES)}; retrain it with `recsys run train_ranker`"
            )
        import lightgbm as lgb  # lazy: see train_lambdarank

        return cls(lgb.Booster(model_file=str(root / MODEL_FILE)))

    def predict(self, features: np.ndarray) -> np.ndarray:
        if len(features) == 0:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(self.booster.predict(features, num_threads=1), dtype=np.float64)
