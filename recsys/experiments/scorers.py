"""Scorers from the evaluate config's specs: baselines (tuned on validation), trained models,
the pair-feature matcher, and ensembles of them; plus the pair scorers of the matching protocol.

Ranking scorers implement ``recsys.evaluation.scorer.Scorer``; pair scorers are
``(lefts, rights) -> (N,) scores`` for ``PairClassificationEvaluator``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from recsys import ensemble as E
from recsys import kinds
from recsys.baselines import build_baseline
from recsys.baselines.pair_features import PairFeatureMatcher, PairsInterface
from recsys.evaluation import protocols as P
from recsys.evaluation.config import EnsembleSpec, EvaluateConfig, ModelSpec
from recsys.evaluation.evaluators import RankingEvaluator
from recsys.evaluation.model_scorers import CrossEncoderScorer, scorer_for_model
from recsys.evaluation.prepare import Prepared
from recsys.evaluation.train_data import TrainData

log = logging.getLogger("recsys.evaluate")

Pairs = tuple[list[str], list[str], np.ndarray]  # (lefts, rights, labels)
PairScorer = Callable[[Sequence[str], Sequence[str]], np.ndarray]  # (lefts, rights) -> (N,) scores


def check_model_paths(cfg: EvaluateConfig) -> None:
    """Every kind=model directory exists, checked before any baseline is fit (minutes), all named at once."""
    from recsys.compress.variants import VariantError, resolve_backend

    missing = [
        f"{m.name}: {m.path}"
        for m in cfg.models
        if m.kind == "model"
        and not any((Path(cast(str, m.path)) / f).is_file() for f in ("recsys_model.json", "variant.json"))
    ]
    if missing:
        raise FileNotFoundError(
            "trained models not found (no recsys_model.json, no variant.json): "
            + "; ".join(missing)
            + ". Train them first (the evaluate config's header names the train command), or fix models[].path"
        )
    for m in cfg.models:
        if m.kind == "model":
            try:
                resolve_backend(cast(str, m.path), m.backend)
            except VariantError as e:
                raise VariantError(f"models[name={m.name}].path / backend: {e}") from None


def load_spec_model(spec: ModelSpec) -> Any:
    """The model of a kind=model spec, by its backend: the torch model of a train-job directory, or a compressed
    variant (ONNX Runtime / torch.ao int8) with the same scoring API."""
    from recsys.compress.scorers import load_scorer  # lazy: torch + transformers (+ onnxruntime)
    from recsys.compress.variants import resolve_backend

    assert spec.path is not None  # ModelSpec._path: kind=model has a path
    kind = resolve_backend(spec.path, spec.backend)
    if kind == "torch":
        from recsys.models import load_model  # lazy: torch + transformers

        return load_model(spec.path)  # every model kind (sequential too), on the default device
    return load_scorer(spec.path, kind)


def load_model_scorer(spec: ModelSpec, train: TrainData) -> Any:
    """A trained model directory (or a compressed variant of one) as a ranking Scorer (item texts from
    ``train.items`` when it has titles)."""
    texts = None
    if train.items is not None and "title" in train.items.columns:
        texts = dict(zip(train.items["item_id"].astype(str), train.items["title"].fillna("").astype(str)))
    return scorer_for_model(load_spec_model(spec), item_texts=texts, catalog=train.catalog, **spec.params)


def build_scorer(
    spec: ModelSpec, train: TrainData, valid_eval: RankingEvaluator | None, seed: int
) -> tuple[Any, dict[str, Any]]:
    """Fit a baseline (grid over ``spec.tune`` on validation) or load a trained model; returns (scorer, info)."""
    if spec.kind == "model":
        return load_model_scorer(spec, train), {"path": spec.path}
    if spec.kind == "pair_features":
        scorer = _pair_feature_scorer(spec, train, seed)
        assert train.pairs is not None  # fit_pair_matcher raised on no train pairs
        return scorer, {"params": spec.params, "train_pairs": len(train.pairs)}
    if not spec.tune:
        scorer = build_baseline(spec.kind, spec.params, seed=seed).fit(train)
        return scorer, {"params": spec.params, **_fit_info(scorer)}
    if valid_eval is None or len(valid_eval.eval_set) == 0:
        raise ValueError(f"model {spec.name!r} has a tune grid but the protocol has no validation queries")
    keys = sorted(spec.tune)
    best, trials = None, []
    for values in itertools.product(*(spec.tune[k] for k in keys)):
        params = {**spec.params, **dict(zip(keys, values))}
        scorer = build_baseline(spec.kind, params, seed=seed).fit(train)
        res = valid_eval(scorer)
        value = res[res["primary_metric"]]
        trials.append({"params": dict(zip(keys, values)), valid_eval.primary_metric: value})
        log.info(
            "tune %s %s: valid %s = %.4f",
            spec.name,
            dict(zip(keys, values)),
            valid_eval.primary_metric,
            value,
        )
        if best is None or value > best[0]:
            best = (value, params, scorer)
    if best is None:
        raise ValueError(f"model {spec.name!r}: tune has an empty list of values")
    return best[2], {
        "params": best[1],
        "tuning": trials,
        "valid_" + valid_eval.primary_metric: best[0],
        **_fit_info(best[2]),
    }


def _pair_feature_scorer(spec: ModelSpec, train: TrainData, seed: int) -> CrossEncoderScorer:
    """The pair-feature matcher, fit on the set's labelled train pairs, ranking item texts by query text
    (through the cross-encoder adapter; features are cheap enough for a full catalog of a few thousand)."""
    pairs = train.pairs if train.pairs is not None else pd.DataFrame(columns=["left", "right", "label"])
    matcher = fit_pair_matcher(
        spec,
        seed,
        (
            pairs["left"].fillna("").astype(str).tolist(),
            pairs["right"].fillna("").astype(str).tolist(),
            pairs["label"].to_numpy(),
        ),
    )
    if train.items is None:
        raise ValueError(f"model {spec.name!r}: pair_features ranks item texts; the data has no items table")
    texts = dict(zip(train.items["item_id"].astype(str), train.items["title"].fillna("").astype(str)))
    return CrossEncoderScorer(PairsInterface(matcher), texts, max_cells=10_000_000)


def _fit_info(scorer: Any) -> dict[str, Any]:
    """What a baseline reports about its own fit (early stopping: the epoch kept), if it reports anything."""
    return {"fit": scorer.info()} if callable(getattr(scorer, "info", None)) else {}


def build_ensemble(
    spec: EnsembleSpec,
    scorers: dict[str, Any],
    cfg: EvaluateConfig,
    prep: Prepared,
    valid_eval: RankingEvaluator | None,
) -> tuple[Any, dict[str, Any]]:
    """A fusion of already built ``scorers`` (rrf, rerank, weighted, learned); weights fit on validation."""
    members = [scorers[m] for m in spec.members]
    if spec.method == "rrf":
        return E.RRFScorer(members, k=spec.rrf_k), {"method": "rrf", "k": spec.rrf_k}
    if spec.method == "rerank" and spec.rerank_weight is not None:
        return E.RerankScorer(members[0], members[1], top_n=spec.top_n, weight=spec.rerank_weight), {
            "method": "rerank",
            "top_n": spec.top_n,
            "rerank_weight": spec.rerank_weight,
        }
    if valid_eval is None:
        raise ValueError(
            f"ensemble {spec.name!r} ({spec.method}) is fit on validation queries; the protocol has none"
        )
    if spec.method == "rerank":
        w, best = E.fit_rerank_weight(
            members[0], members[1], spec.top_n, lambda s: valid_eval(s)[valid_eval.primary_metric]
        )
        return E.RerankScorer(members[0], members[1], top_n=spec.top_n, weight=w), {
            "method": "rerank",
            "top_n": spec.top_n,
            "rerank_weight": w,
            "valid_" + valid_eval.primary_metric: best,
        }
    if spec.method == "weighted":
        cached = [E.CachedScorer(m) for m in members]
        ws, best = E.fit_weights(cached, lambda s: valid_eval(s)[valid_eval.primary_metric])
        return E.WeightedScorer(members, ws), {
            "method": "weighted",
            "weights": dict(zip(spec.members, ws)),
            "valid_" + valid_eval.primary_metric: best,
        }
    valid = (
        prep.valid
        if prep.valid.candidates is not None
        else P.sample_negatives(prep.valid, 50, seed=cfg.seed + 2)
    )
    learned = E.LearnedFusionScorer(members).fit(valid.head(2000))
    return learned, {"method": "learned", "coefficients": learned.coefficients}


# ----------------------------------------------------------------------------- matching (pair scorers)
def fit_pair_matcher(spec: ModelSpec, seed: int, train: Pairs | None) -> PairFeatureMatcher:
    """kind pair_features: the pair-feature matcher fit on the labelled train pairs (lefts, rights, labels)."""
    if train is None or len(train[2]) == 0:
        raise ValueError(
            f"model {spec.name!r}: pair_features is fit on the train pairs; data.pairs has no rows "
            "with split 'train'"
        )
    try:
        matcher = PairFeatureMatcher(**{"seed": seed, **spec.params})
    except TypeError as exc:
        raise ValueError(f"model {spec.name!r}: bad params {sorted(spec.params)}: {exc}") from None
    return matcher.fit(*train)


def pair_scorer(spec: ModelSpec, seed: int, train: Pairs | None = None) -> PairScorer:
    """(lefts, rights) -> scores for a matching model: a trained cross-/bi-encoder, zero-shot cosine, or the
    pair-feature matcher (fit here on the train pairs)."""
    if spec.kind == "pair_features":
        return fit_pair_matcher(spec, seed, train).score
    if spec.kind == "model":
        model = load_spec_model(spec)
        mk = kinds.get(getattr(model, "model_type", ""), field=f"models[{spec.name}] (its model_type)")
        if mk.pair_scorer is None:
            raise ValueError(
                f"model {spec.name!r}: matching needs a kind with a pair scorer "
                f"({[k.name for k in kinds.kinds() if k.pair_scorer]}), got {mk.name!r}"
            )
        return cast(PairScorer, mk.pair_scorer(model, batch_size=spec.params.get("batch_size", 64)))
    if spec.kind == "zeroshot":
        from recsys.models import BiEncoder  # lazy: torch + transformers

        encoder = BiEncoder.from_encoder(
            spec.params.get("model", "all-MiniLM-L6-v2"), max_length=spec.params.get("max_length", 128)
        )
        cosine = kinds.get("bi_encoder").pair_scorer
        assert cosine is not None  # recsys.kinds.bi_encoder registers one
        return cast(PairScorer, cosine(encoder))  # cosine of the two towers
    raise ValueError(
        f"model {spec.name!r}: matching supports kind model (cross/bi-encoder), zeroshot or "
        f"pair_features, not {spec.kind!r}"
    )
