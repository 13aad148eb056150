"""The evaluate job's library side: config -> data -> protocol -> scorers -> results.

``prepare(cfg)`` builds the train data and the validation / test EvalSets of the protocol;
``build_scorer(spec, ...)`` fits a baseline (tuning its ``tune`` grid on validation) or loads a
trained model; ``evaluate_all`` scores everything on test and compares models with paired tests.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys.baselines import TrainData, build_baseline
from recsys.evaluation import protocols as P
from recsys.evaluation.config import EvaluateConfig, ModelSpec
from recsys.evaluation.evaluators import RankingEvaluator, RankingResult

log = logging.getLogger("recsys.evaluate")


@dataclass
class Prepared:
    train: TrainData
    valid: P.EvalSet
    test: P.EvalSet
    counts: dict[str, int] = field(default_factory=dict)


def _subsample(es: P.EvalSet, n: int | None, seed: int) -> P.EvalSet:
    if n is None or len(es) <= n:
        return es
    idx = np.sort(np.random.default_rng(seed).choice(len(es), n, replace=False))
    return es.subset(idx)


def _items_frame(cfg: EvaluateConfig) -> pd.DataFrame | None:
    from recsys.evaluation.data import load_table

    if cfg.data.items is None:
        return None
    items = load_table(cfg.data.items, "items")
    items = items.assign(item_id=items["item_id"].astype(str)).drop_duplicates("item_id")
    return items


def _apply_candidates(cfg: EvaluateConfig, es: P.EvalSet, cands: dict[str, list[str]] | None, seed: int) -> P.EvalSet:
    pc = cfg.protocol
    if pc.users == "with_candidates":
        es = es.subset([i for i, q in enumerate(es.query_ids) if str(q) in cands])
    if pc.candidates == "sampled":
        return P.sample_negatives(es, pc.n_negatives, seed=seed, exclude_history=pc.exclude_history)
    if pc.candidates == "file":
        return P.with_candidates(es, cands)
    if not pc.exclude_history:
        es.exclude = None
    return es


def prepare_recommendation(cfg: EvaluateConfig) -> Prepared:
    from recsys.evaluation.data import load_candidates, load_sequences

    pc = cfg.protocol
    seqs = load_sequences(cfg.data.events)
    items = _items_frame(cfg)
    seen = {i for s in seqs["items"] for i in s}
    catalog = np.array(sorted(seen | (set(items["item_id"]) if items is not None else set())), dtype=object)
    if pc.split == "leave_one_out":
        split = P.leave_one_out(seqs, min_length=pc.min_length, catalog=catalog, name=pc.split)
    else:
        from recsys.evaluation.data import load_table

        split = P.time_split(load_table(cfg.data.events, "events"), test_start=pc.test_start, valid_start=pc.valid_start)
        split.test.catalog = split.valid.catalog = catalog
    cands = load_candidates(cfg.data.candidates, pc.candidate_source) if cfg.data.candidates is not None else None
    test = _subsample(_apply_candidates(cfg, split.test, cands, cfg.seed), pc.max_queries, cfg.seed)
    valid = split.valid
    if pc.candidates == "file":  # validation has no shipped lists: tune on sampled candidates instead
        valid = P.sample_negatives(valid, min(pc.n_negatives, 100), seed=cfg.seed + 1, exclude_history=pc.exclude_history)
    elif len(valid):
        valid = _apply_candidates(cfg.model_copy(update={"protocol": pc.model_copy(update={"users": "all"})}), valid, cands,
                                  cfg.seed + 1)
    valid = _subsample(valid, pc.max_valid_queries, cfg.seed)
    train = TrainData(sequences=split.train, catalog=catalog, items=items)
    counts = {"users": len(seqs), "items": len(catalog), "interactions": int(sum(len(s) for s in seqs["items"])),
              "test_queries": len(test), "valid_queries": len(valid)}
    return Prepared(train=train, valid=valid, test=test, counts=counts)


def _pairs(cfg: EvaluateConfig) -> pd.DataFrame:
    from recsys.evaluation.data import load_table

    df = load_table(cfg.data.pairs, "pairs")
    need = {"left", "right", "label"} - set(df.columns)
    if need:
        raise ValueError(f"data.pairs lacks {sorted(need)}; expected the canonical pairs table (docs/DATA.md)")
    if "split" not in df.columns:
        raise ValueError("data.pairs has no split column (train/valid/test); use the product-matching preset or add one")
    for side in ("left", "right"):
        if f"{side}_id" not in df.columns:
            df[f"{side}_id"] = df[side].astype(str)
    df["label"] = df["label"].astype(int)
    return df


def prepare_retrieval(cfg: EvaluateConfig) -> Prepared:
    """Each left offer with a positive pair -> its matching right products, among all right products."""
    df = _pairs(cfg)
    right = df.drop_duplicates("right_id")
    catalog = right["right_id"].astype(str).to_numpy(dtype=object)
    items = pd.DataFrame({"item_id": catalog, "title": right["right"].fillna("").astype(str).to_numpy()})

    def split(name: str) -> P.EvalSet:
        pos = df[(df["split"] == name) & (df["label"] == 1)]
        g = pos.groupby("left_id", sort=True)
        qids = list(g.groups)
        texts = [str(g.get_group(q)["left"].iloc[0]) for q in qids]
        targets = [sorted(set(g.get_group(q)["right_id"].astype(str))) for q in qids]
        return P.EvalSet(name=f"retrieval/{name}", query_ids=np.array(qids, dtype=object), histories=[[] for _ in qids],
                         targets=targets, catalog=catalog, texts=texts)

    test, valid = split("test"), split("valid")
    if cfg.protocol.candidates == "sampled":
        test = P.sample_negatives(test, cfg.protocol.n_negatives, seed=cfg.seed)
        valid = P.sample_negatives(valid, cfg.protocol.n_negatives, seed=cfg.seed + 1)
    train_seqs = pd.DataFrame({"user_id": pd.Series([], dtype=object), "items": pd.Series([], dtype=object)})
    return Prepared(
        train=TrainData(sequences=train_seqs, catalog=catalog, items=items),
        valid=_subsample(valid, cfg.protocol.max_valid_queries, cfg.seed),
        test=_subsample(test, cfg.protocol.max_queries, cfg.seed),
        counts={"right_products": len(catalog), "test_queries": len(test), "valid_queries": len(valid)},
    )


def prepare(cfg: EvaluateConfig) -> Prepared:
    return prepare_retrieval(cfg) if cfg.protocol.task == "retrieval" else prepare_recommendation(cfg)


def make_evaluator(cfg: EvaluateConfig, es: P.EvalSet, keep_topk: int = 0) -> RankingEvaluator:
    ev = cfg.evaluator
    return RankingEvaluator(
        es, cfg.metrics, cfg.primary_metric, batch_size=ev.batch_size, block_size=ev.block_size, ties=ev.ties,
        num_workers=ev.num_workers, keep_topk=keep_topk,
    )


def load_model_scorer(spec: ModelSpec, train: TrainData):
    from recsys.evaluation.model_scorers import scorer_for_model
    from recsys.models import load_model

    texts = None
    if train.items is not None and "title" in train.items.columns:
        texts = dict(zip(train.items["item_id"].astype(str), train.items["title"].fillna("").astype(str)))
    return scorer_for_model(load_model(spec.path), item_texts=texts, catalog=train.catalog, **spec.params)


def build_scorer(spec: ModelSpec, train: TrainData, valid_eval: RankingEvaluator | None, seed: int) -> tuple[Any, dict]:
    """Fit a baseline (grid over ``spec.tune`` on validation) or load a trained model."""
    if spec.kind == "model":
        return load_model_scorer(spec, train), {"path": spec.path}
    if not spec.tune:
        return build_baseline(spec.kind, spec.params, seed=seed).fit(train), {"params": spec.params}
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
        log.info("tune %s %s: valid %s = %.4f", spec.name, dict(zip(keys, values)), valid_eval.primary_metric, value)
        if best is None or value > best[0]:
            best = (value, params, scorer)
    return best[2], {"params": best[1], "tuning": trials, "valid_" + valid_eval.primary_metric: best[0]}


def beyond_accuracy(result: RankingResult, train: TrainData, vectors: tuple[np.ndarray, np.ndarray] | None) -> dict[str, float]:
    """Coverage / novelty / popularity bias (/ diversity) of a result's top-k lists."""
    from recsys.evaluation import beyond

    if result.topk is None:
        return {}
    k = result.topk.shape[1]
    counts: dict[str, float] = {}
    for items in train.sequences["items"]:
        for i in set(items):
            counts[i] = counts.get(i, 0.0) + 1.0
    out = {f"coverage@{k}": beyond.catalog_coverage(result.topk, len(train.catalog))}
    if counts:
        out[f"novelty@{k}"] = float(np.mean(beyond.novelty(result.topk, counts, len(train.sequences))))
        out[f"popularity_bias@{k}"] = float(np.mean(beyond.popularity_bias(result.topk, counts)))
    if vectors is not None:
        out[f"diversity@{k}"] = float(np.nanmean(beyond.intra_list_diversity(result.topk, vectors)))
    return out
