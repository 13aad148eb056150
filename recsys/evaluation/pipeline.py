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


def _apply_candidates(cfg: EvaluateConfig, es: P.EvalSet, cands: dict[str, list[str]] | None, seed: int,
                      max_queries: int | None) -> P.EvalSet:
    """Restrict users, subsample (seeded), then attach the protocol's candidates."""
    pc = cfg.protocol
    if pc.users == "with_candidates":
        es = es.subset([i for i, q in enumerate(es.query_ids) if str(q) in cands])
    es = _subsample(es, max_queries, cfg.seed)
    if pc.candidates == "sampled":
        return P.sample_negatives(es, pc.n_negatives, seed=seed, exclude_history=pc.exclude_history)
    if pc.candidates == "file":
        return P.with_candidates(es, cands)
    if not pc.exclude_history:
        es.exclude = None
    return es


def _add_user_segments(cfg: EvaluateConfig, es: P.EvalSet, max_values: int = 50) -> None:
    """Per-query segment columns from the users table (country, ...); ids and timestamps skipped."""
    from recsys.evaluation.data import load_table

    users = load_table(cfg.data.users, "users")
    users = users.assign(user_id=users["user_id"].astype(str)).drop_duplicates("user_id").set_index("user_id")
    for col in users.columns:
        if col.endswith("_id") or col.endswith("_ts") or users[col].nunique() > max_values:
            continue  # not a segment (ids, timestamps, free text)
        es.segments[col] = users[col].reindex(es.query_ids.astype(str)).astype(object).fillna("unknown").to_numpy()


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
    test = _apply_candidates(cfg, split.test, cands, cfg.seed, pc.max_queries)
    valid = split.valid
    if pc.candidates == "file":  # validation has no shipped lists: tune on sampled candidates instead
        valid = P.sample_negatives(_subsample(valid, pc.max_valid_queries, cfg.seed), min(pc.n_negatives, 100),
                                   seed=cfg.seed + 1, exclude_history=pc.exclude_history)
    elif len(valid):
        valid = _apply_candidates(cfg.model_copy(update={"protocol": pc.model_copy(update={"users": "all"})}), valid, cands,
                                  cfg.seed + 1, pc.max_valid_queries)
    if cfg.data.users is not None:
        _add_user_segments(cfg, test)
    train = TrainData(sequences=split.train, catalog=catalog, items=items)
    counts = {"users": len(seqs), "items": len(catalog), "interactions": int(sum(len(s) for s in seqs["items"])),
              "test_queries": len(test), "valid_queries": len(valid),
              "skipped_input_rows": int(seqs.attrs.get("skipped_rows", 0))}
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
        train=TrainData(sequences=train_seqs, catalog=catalog, items=items, pairs=df[df["split"] == "train"]),
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
    if spec.kind == "pair_features":
        return _pair_feature_scorer(spec, train, seed), {"params": spec.params, "train_pairs": len(train.pairs)}
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
        log.info("tune %s %s: valid %s = %.4f", spec.name, dict(zip(keys, values)), valid_eval.primary_metric, value)
        if best is None or value > best[0]:
            best = (value, params, scorer)
    return best[2], {"params": best[1], "tuning": trials, "valid_" + valid_eval.primary_metric: best[0],
                     **_fit_info(best[2])}


def _pair_feature_scorer(spec: ModelSpec, train: TrainData, seed: int):
    """The pair-feature matcher, fit on the set's labelled train pairs, ranking item texts by query text
    (through the cross-encoder adapter; features are cheap enough for a full catalog of a few thousand)."""
    from recsys.baselines.pair_features import PairsInterface
    from recsys.evaluation.model_scorers import CrossEncoderScorer

    pairs = train.pairs if train.pairs is not None else pd.DataFrame(columns=["left", "right", "label"])
    matcher = fit_pair_matcher(spec, seed, (pairs["left"].fillna("").astype(str).tolist(),
                                            pairs["right"].fillna("").astype(str).tolist(), pairs["label"].to_numpy()))
    texts = dict(zip(train.items["item_id"].astype(str), train.items["title"].fillna("").astype(str)))
    return CrossEncoderScorer(PairsInterface(matcher), texts, max_cells=10_000_000)


def _fit_info(scorer: Any) -> dict:
    """What a baseline reports about its own fit (early stopping: the epoch kept), if it reports anything."""
    return {"fit": scorer.info()} if callable(getattr(scorer, "info", None)) else {}


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


# ----------------------------------------------------------------------------- the job's stages
def _ensemble(spec, scorers: dict[str, Any], cfg: EvaluateConfig, prep: Prepared, valid_eval) -> tuple[Any, dict]:
    from recsys import ensemble as E

    members = [scorers[m] for m in spec.members]
    if spec.method == "rrf":
        return E.RRFScorer(members, k=spec.rrf_k), {"method": "rrf", "k": spec.rrf_k}
    if spec.method == "rerank" and spec.rerank_weight is not None:
        return E.RerankScorer(*members, top_n=spec.top_n, weight=spec.rerank_weight), \
            {"method": "rerank", "top_n": spec.top_n, "rerank_weight": spec.rerank_weight}
    if valid_eval is None:
        raise ValueError(f"ensemble {spec.name!r} ({spec.method}) is fit on validation queries; the protocol has none")
    if spec.method == "rerank":
        w, best = E.fit_rerank_weight(*members, spec.top_n, lambda s: valid_eval(s)[valid_eval.primary_metric])
        return E.RerankScorer(*members, top_n=spec.top_n, weight=w), \
            {"method": "rerank", "top_n": spec.top_n, "rerank_weight": w, "valid_" + valid_eval.primary_metric: best}
    if spec.method == "weighted":
        cached = [E.CachedScorer(m) for m in members]
        w, best = E.fit_weights(cached, lambda s: valid_eval(s)[valid_eval.primary_metric])
        return E.WeightedScorer(members, w), {"method": "weighted", "weights": dict(zip(spec.members, w)),
                                            "valid_" + valid_eval.primary_metric: best}
    valid = prep.valid if prep.valid.candidates is not None else P.sample_negatives(prep.valid, 50, seed=cfg.seed + 2)
    learned = E.LearnedFusionScorer(members).fit(valid.head(2000))
    return learned, {"method": "learned", "coefficients": learned.coefficients}


def _significance(per_query: dict[str, np.ndarray], reference: str, metric: str, n_resamples: int, seed: int) -> list[dict]:
    from recsys.evaluation.stats import compare

    out = []
    for name, values in per_query.items():
        if name == reference:
            continue
        c = compare(values, per_query[reference], n_resamples=n_resamples, seed=seed)
        out.append({"model": name, "vs": reference, "metric": metric, **c})
    return out


def _item_vectors(scorers: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    for s in scorers.values():
        vec, index = getattr(s, "item_vectors", None), getattr(s, "_index", None)
        if vec is not None and index is not None:
            return index.item_ids, vec
    return None


def _kfold(cfg: EvaluateConfig, prep: Prepared) -> dict[str, Any]:
    from recsys.evaluation.kfold import cross_validate

    out = {}
    seqs = prep.train.sequences  # train parts only: the test items are never seen by k-fold

    def make_es(held: pd.DataFrame) -> P.EvalSet:
        es = P.leave_one_out(held, min_length=3, catalog=prep.train.catalog).test
        return P.sample_negatives(es, cfg.protocol.n_negatives, seed=cfg.seed) if cfg.protocol.candidates != "full" else es

    for spec in cfg.models:
        if spec.kind == "model":
            continue
        out[spec.name] = cross_validate(
            seqs, cfg.protocol.kfold,
            fit=lambda tr, s=spec: build_baseline(s.kind, s.params, seed=cfg.seed).fit(
                TrainData(tr, prep.train.catalog, prep.train.items)),
            evaluate=lambda scorer, es: make_evaluator(cfg, es)(scorer),
            make_eval_set=make_es, seed=cfg.seed,
        )
    return out


def run_ranking(cfg: EvaluateConfig, ctx) -> dict[str, Any]:
    from recsys.evaluation.report import segment_table, write_html, write_results_json

    with ctx.timer("prepare"):
        prep = prepare(cfg)
    valid_eval = make_evaluator(cfg, prep.valid) if len(prep.valid) else None
    test_eval = make_evaluator(cfg, prep.test, keep_topk=cfg.beyond_k)
    primary = test_eval.primary_metric
    scorers, info, results = {}, {}, {}
    for spec in cfg.models:
        with ctx.timer(f"fit:{spec.name}"):
            scorers[spec.name], info[spec.name] = build_scorer(spec, prep.train, valid_eval, cfg.seed)
        if not spec.standalone:
            continue  # an ensemble member only (a re-ranker)
        with ctx.timer(f"evaluate:{spec.name}"):
            results[spec.name] = test_eval.evaluate(scorers[spec.name])
        ctx.log.info("%s: %s", spec.name, {k: round(v, 4) for k, v in results[spec.name].means().items()})
    for ens in cfg.ensembles:
        with ctx.timer(f"fit:{ens.name}"):
            scorers[ens.name], info[ens.name] = _ensemble(ens, scorers, cfg, prep, valid_eval)
        with ctx.timer(f"evaluate:{ens.name}"):
            results[ens.name] = test_eval.evaluate(scorers[ens.name])
        ctx.log.info("%s: %s", ens.name, {k: round(v, 4) for k, v in results[ens.name].means().items()})

    vectors = _item_vectors(scorers) if cfg.beyond_k else None
    leaderboard = []
    for name, res in results.items():
        row = {"model": name, **res.to_dict(ci=cfg.bootstrap > 0, n_resamples=max(cfg.bootstrap, 1), seed=cfg.seed)}
        row.update(beyond_accuracy(res, prep.train, vectors) if cfg.beyond_k else {})
        row.pop("primary_metric")
        row["info"] = info[name]
        if name in cfg.published:
            row["published"] = cfg.published[name]
        leaderboard.append(row)
    leaderboard.sort(key=lambda r: -r[primary])
    reference = cfg.reference or leaderboard[0]["model"]
    per_query = pd.concat([r.per_query.assign(model=n) for n, r in results.items()], ignore_index=True)
    with ctx.timer("significance"):
        sig = _significance({n: r.per_query[primary].to_numpy() for n, r in results.items()}, reference, primary,
                            cfg.significance_resamples, cfg.seed)
    kfold = {}
    if cfg.protocol.kfold > 1 and cfg.protocol.task == "recommendation":
        with ctx.timer("kfold"):
            kfold = _kfold(cfg, prep)
    per_query.to_parquet(ctx.path("per_query.parquet"), index=False)
    summary = {"task": cfg.protocol.task, "protocol": prep.test.protocol,
               "split": cfg.protocol.split if cfg.protocol.task == "recommendation" else "pairs file splits",
               "eval_set": prep.test.name, "primary_metric": primary, "reference": reference,
               "ties": cfg.evaluator.ties, **prep.counts}
    seg_tables = [segment_table(per_query, primary, seg) for seg in prep.test.segments]
    segments = pd.concat([t.set_index("model") for t in seg_tables if len(t)], axis=1).reset_index() \
        if any(len(t) for t in seg_tables) else None
    write_html(ctx.path("report.html"), f"recsys evaluate: {prep.test.name}", summary, leaderboard, sig, segments, primary)
    payload = {"summary": summary, "leaderboard": leaderboard, "significance": sig, "kfold": kfold}
    if cfg.results_json:
        write_results_json(cfg.results_json, {**payload, "config": cfg.model_dump(mode="json")})
    return {
        "counts": prep.counts, "primary_metric": primary,
        "metrics": {r["model"]: {k: v for k, v in r.items() if isinstance(v, float)} for r in leaderboard},
        **payload,
        "artifacts": {"per_query": str(ctx.output_dir / "per_query.parquet"), "html": str(ctx.output_dir / "report.html")},
    }


# ----------------------------------------------------------------------------- matching (pair F1)
def fit_pair_matcher(spec: ModelSpec, seed: int, train: tuple[list[str], list[str], np.ndarray] | None):
    """kind pair_features: the pair-feature matcher fit on the labelled train pairs (lefts, rights, labels)."""
    from recsys.baselines.pair_features import PairFeatureMatcher

    if train is None or len(train[2]) == 0:
        raise ValueError(f"model {spec.name!r}: pair_features is fit on the train pairs; data.pairs has no rows "
                         "with split 'train'")
    try:
        matcher = PairFeatureMatcher(**{"seed": seed, **spec.params})
    except TypeError as exc:
        raise ValueError(f"model {spec.name!r}: bad params {sorted(spec.params)}: {exc}") from None
    return matcher.fit(*train)


def pair_scorer(spec: ModelSpec, seed: int, train: tuple[list[str], list[str], np.ndarray] | None = None):
    """(lefts, rights) -> scores for a matching model: a trained cross-/bi-encoder, zero-shot cosine, or the
    pair-feature matcher (fit here on the train pairs)."""
    if spec.kind == "pair_features":
        return fit_pair_matcher(spec, seed, train).score
    if spec.kind == "model":
        from recsys.models import load_model

        model = load_model(spec.path)
        kind = getattr(model, "model_type", "")
        if kind == "cross_encoder":
            return lambda lefts, rights: model.score(list(zip(lefts, rights)), batch_size=spec.params.get("batch_size", 64))
        if kind != "bi_encoder":
            raise ValueError(f"model {spec.name!r}: matching needs a cross_encoder or bi_encoder, got {kind!r}")
        encoder = model
    elif spec.kind == "zeroshot":
        from recsys.models import BiEncoder

        encoder = BiEncoder.from_encoder(spec.params.get("model", "all-MiniLM-L6-v2"), max_length=spec.params.get("max_length", 128))
    else:
        raise ValueError(f"model {spec.name!r}: matching supports kind model (cross/bi-encoder), zeroshot or "
                         f"pair_features, not {spec.kind!r}")

    def cosine(lefts, rights):
        a = encoder.encode(list(lefts), tower="query")
        b = encoder.encode(list(rights), tower="item")
        return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)

    return cosine


def _f1_ci(scores: np.ndarray, labels: np.ndarray, t: float, n: int, seed: int) -> list[float]:
    pred = scores >= t
    y = labels.astype(bool)
    rng = np.random.default_rng(seed)
    f1s = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        tp = (pred[i] & y[i]).sum()
        denom = pred[i].sum() + y[i].sum()
        f1s.append(2 * tp / denom if denom else 0.0)
    return [float(np.quantile(f1s, 0.025)), float(np.quantile(f1s, 0.975))]


def run_matching(cfg: EvaluateConfig, ctx) -> dict[str, Any]:
    from recsys.evaluation.classification import PairClassificationEvaluator, per_pair_correct
    from recsys.evaluation.report import write_html, write_results_json

    df = _pairs(cfg)

    def part(name: str):
        d = df[df["split"] == name]
        if cfg.protocol.max_queries and name == "test":
            d = d.iloc[: cfg.protocol.max_queries]
        if cfg.protocol.max_valid_queries and name == "valid":
            d = d.iloc[: cfg.protocol.max_valid_queries]
        return d["left"].fillna("").astype(str).tolist(), d["right"].fillna("").astype(str).tolist(), d["label"].to_numpy()

    valid, test, train = part("valid"), part("test"), part("train")
    if len(test[2]) == 0 or len(valid[2]) == 0:
        raise ValueError("data.pairs needs rows with split 'valid' and 'test' (the threshold is chosen on valid)")
    ev = PairClassificationEvaluator(valid, test)
    rows, scores = [], {}  # scores: name -> (valid, test)
    for spec in cfg.models:
        with ctx.timer(f"evaluate:{spec.name}"):
            out = ev.evaluate(pair_scorer(spec, cfg.seed, train))
        scores[spec.name] = (out.pop("_valid_scores"), out.pop("_test_scores"))
        if spec.standalone:
            rows.append((spec.name, out))
    for ens in cfg.ensembles:
        with ctx.timer(f"evaluate:{ens.name}"):
            out = _stacked_matcher(ens, scores, valid[2], test[2], cfg.seed)
        scores[ens.name] = (out.pop("_valid_scores"), out.pop("_test_scores"))
        rows.append((ens.name, out))
    leaderboard, correct = [], {}
    for name, out in rows:
        test_scores = scores[name][1]
        correct[name] = per_pair_correct(test_scores, test[2], out["threshold"])
        if cfg.bootstrap:
            out["ci95"] = {"f1": _f1_ci(test_scores, test[2], out["threshold"], cfg.bootstrap, cfg.seed)}
        out.pop("primary_metric", None)
        row = {"model": name, **out}
        if name in cfg.published:
            row["published"] = cfg.published[name]
        leaderboard.append(row)
        ctx.log.info("%s: F1 %.4f (threshold %.4f chosen on valid)", name, out["f1"], out["threshold"])
    leaderboard.sort(key=lambda r: -r["f1"])
    reference = cfg.reference or leaderboard[0]["model"]
    sig = _significance(correct, reference, "accuracy", cfg.significance_resamples, cfg.seed)
    summary = {"task": "matching", "test_pairs": len(test[2]), "valid_pairs": len(valid[2]), "primary_metric": "f1",
               "threshold": "max F1 on valid, applied once to test", "reference": reference}
    write_html(ctx.path("report.html"), "recsys evaluate: pair matching", summary, leaderboard, sig, None, "f1")
    payload = {"summary": summary, "leaderboard": leaderboard, "significance": sig}
    if cfg.results_json:
        write_results_json(cfg.results_json, {**payload, "config": cfg.model_dump(mode="json")})
    return {"counts": {"test_pairs": len(test[2]), "valid_pairs": len(valid[2])}, "primary_metric": "f1",
            "metrics": {r["model"]: {k: v for k, v in r.items() if isinstance(v, float)} for r in leaderboard},
            **payload, "artifacts": {"html": str(ctx.output_dir / "report.html")}}


def _stacked_matcher(ens, scores: dict[str, tuple[np.ndarray, np.ndarray]], valid_labels: np.ndarray,
                     test_labels: np.ndarray, seed: int) -> dict[str, Any]:
    """A learned fusion of matchers: logistic regression over member scores, fit on validation."""
    from recsys.ensemble.stacking import StackedMatcher
    from recsys.evaluation.classification import classification_metrics

    valid = np.column_stack([scores[m][0] for m in ens.members])  # (N valid, members)
    stack = StackedMatcher(folds=ens.folds, seed=seed).fit(valid, valid_labels)
    test_scores = stack.score(np.column_stack([scores[m][1] for m in ens.members]))
    out = classification_metrics(test_scores, test_labels, stack.threshold)
    out.update({"valid_f1": stack.valid_f1, "_test_scores": test_scores, "_valid_scores": stack.score(valid),
                "info": {"method": "learned", "folds": ens.folds,
                         "weights": dict(zip(ens.members, stack.coefficients)),
                         "threshold": "max F1 on out-of-fold validation scores"}})
    return out


def check_model_paths(cfg: EvaluateConfig) -> None:
    """Every kind=model directory exists, checked before any baseline is fit (minutes), all named at once."""
    from pathlib import Path

    missing = [f"{m.name}: {m.path}" for m in cfg.models
               if m.kind == "model" and not (Path(m.path) / "recsys_model.json").is_file()]
    if missing:
        raise FileNotFoundError(
            "trained models not found (no recsys_model.json): " + "; ".join(missing)
            + ". Train them first (the evaluate config's header names the train command), or fix models[].path")


def run(cfg: EvaluateConfig, ctx) -> dict[str, Any]:
    if cfg.protocol.task == "search":  # the served /search pipeline end to end
        from recsys.experiments.search import run as run_search

        return run_search(cfg, ctx)
    check_model_paths(cfg)
    return run_matching(cfg, ctx) if cfg.protocol.task == "matching" else run_ranking(cfg, ctx)
