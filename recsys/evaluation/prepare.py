"""A protocol's data, from the evaluate config: the train part every scorer fits on and the
validation / test EvalSets it is ranked on, plus the evaluators of those sets.

``prepare(cfg) -> Prepared`` reads ``cfg.data`` (tables written by the features job, or a preset)
and applies ``cfg.protocol``:

- task ``recommendation``: ``data.events`` (events or a sequences table: user_id, items) split
  leave-one-out or by time; candidates sampled, shipped (``data.candidates``) or the full catalog;
  ``data.users`` columns become per-query segments.
- task ``retrieval``: ``data.pairs`` (left, right, label, split): each left offer with a positive
  pair -> its matching right products, among all right products.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys.config import InputConfig
from recsys.evaluation import protocols as P
from recsys.evaluation.config import EvaluateConfig, ProtocolConfig
from recsys.evaluation.data import load_candidates, load_pairs, load_sequences, load_table
from recsys.evaluation.evaluators import RankingEvaluator
from recsys.evaluation.train_data import TrainData


@dataclass
class Prepared:
    train: TrainData
    valid: P.EvalSet
    test: P.EvalSet
    counts: dict[str, int] = field(default_factory=dict)


def subsample(es: P.EvalSet, n: int | None, seed: int) -> P.EvalSet:
    """At most ``n`` queries of ``es``, a seeded random subset in the original order."""
    if n is None or len(es) <= n:
        return es
    idx = np.sort(np.random.default_rng(seed).choice(len(es), n, replace=False))
    return es.subset(idx)


def _items_frame(items_cfg: InputConfig | None) -> pd.DataFrame | None:
    if items_cfg is None:
        return None
    items = load_table(items_cfg, "items")
    return items.assign(item_id=items["item_id"].astype(str)).drop_duplicates("item_id")


def _apply_candidates(
    pc: ProtocolConfig,
    es: P.EvalSet,
    cands: dict[str, list[str]] | None,
    seed: int,
    max_queries: int | None,
    subsample_seed: int,
) -> P.EvalSet:
    """Restrict users, subsample (seeded), then attach the protocol's candidates."""
    if pc.users == "with_candidates":
        if cands is None:
            raise ValueError("protocol.users=with_candidates needs data.candidates")
        es = es.subset([i for i, q in enumerate(es.query_ids) if str(q) in cands])
    es = subsample(es, max_queries, subsample_seed)
    if pc.candidates == "sampled":
        return P.sample_negatives(es, pc.n_negatives, seed=seed, exclude_history=pc.exclude_history)
    if pc.candidates == "file":
        if cands is None:
            raise ValueError("protocol.candidates=file needs data.candidates")
        return P.with_candidates(es, cands)
    if not pc.exclude_history:
        es.exclude = None
    return es


def _add_user_segments(users_cfg: InputConfig, es: P.EvalSet, max_values: int = 50) -> None:
    """Per-query segment columns from the users table (country, ...); ids and timestamps skipped."""
    users = load_table(users_cfg, "users")
    users = users.assign(user_id=users["user_id"].astype(str)).drop_duplicates("user_id").set_index("user_id")
    for col in users.columns:
        if col.endswith("_id") or col.endswith("_ts") or users[col].nunique() > max_values:
            continue  # not a segment (ids, timestamps, free text)
        es.segments[col] = (
            users[col].reindex(es.query_ids.astype(str)).astype(object).fillna("unknown").to_numpy()
        )


def prepare_recommendation(cfg: EvaluateConfig) -> Prepared:
    pc = cfg.protocol
    if cfg.data.events is None:
        raise ValueError("protocol.task=recommendation needs data.events (events or sequences table)")
    seqs = load_sequences(cfg.data.events)
    items = _items_frame(cfg.data.items)
    seen = {i for s in seqs["items"] for i in s}
    catalog = np.array(sorted(seen | (set(items["item_id"]) if items is not None else set())), dtype=object)
    if pc.split == "leave_one_out":
        split = P.leave_one_out(seqs, min_length=pc.min_length, catalog=catalog, name=pc.split)
    else:
        split = P.time_split(
            load_table(cfg.data.events, "events"), test_start=pc.test_start, valid_start=pc.valid_start
        )
        split.test.catalog = split.valid.catalog = catalog
    cands = (
        load_candidates(cfg.data.candidates, pc.candidate_source) if cfg.data.candidates is not None else None
    )
    test = _apply_candidates(pc, split.test, cands, cfg.seed, pc.max_queries, cfg.seed)
    valid = split.valid
    if pc.candidates == "file":  # validation has no shipped lists: tune on sampled candidates instead
        valid = P.sample_negatives(
            subsample(valid, pc.max_valid_queries, cfg.seed),
            min(pc.n_negatives, 100),
            seed=cfg.seed + 1,
            exclude_history=pc.exclude_history,
        )
    elif len(valid):
        valid = _apply_candidates(
            pc.model_copy(update={"users": "all"}), valid, cands, cfg.seed + 1, pc.max_valid_queries, cfg.seed
        )
    if cfg.data.users is not None:
        _add_user_segments(cfg.data.users, test)
    train = TrainData(sequences=split.train, catalog=catalog, items=items)
    counts = {
        "users": len(seqs),
        "items": len(catalog),
        "interactions": int(sum(len(s) for s in seqs["items"])),
        "test_queries": len(test),
        "valid_queries": len(valid),
        "skipped_input_rows": int(seqs.attrs.get("skipped_rows", 0)),
    }
    return Prepared(train=train, valid=valid, test=test, counts=counts)


def prepare_retrieval(cfg: EvaluateConfig) -> Prepared:
    """Each left offer with a positive pair -> its matching right products, among all right products."""
    if cfg.data.pairs is None:
        raise ValueError(
            "protocol.task=retrieval needs data.pairs (a labelled pairs table with a split column)"
        )
    df = load_pairs(cfg.data.pairs)
    right = df.drop_duplicates("right_id")
    catalog = right["right_id"].astype(str).to_numpy(dtype=object)
    items = pd.DataFrame({"item_id": catalog, "title": right["right"].fillna("").astype(str).to_numpy()})

    def split(name: str) -> P.EvalSet:
        pos = df[(df["split"] == name) & (df["label"] == 1)]
        g = pos.groupby("left_id", sort=True)
        qids = list(g.groups)
        texts = [str(g.get_group(q)["left"].iloc[0]) for q in qids]
        targets = [sorted(set(g.get_group(q)["right_id"].astype(str))) for q in qids]
        return P.EvalSet(
            name=f"retrieval/{name}",
            query_ids=np.array(qids, dtype=object),
            histories=[[] for _ in qids],
            targets=targets,
            catalog=catalog,
            texts=texts,
        )

    test, valid = split("test"), split("valid")
    if cfg.protocol.candidates == "sampled":
        test = P.sample_negatives(test, cfg.protocol.n_negatives, seed=cfg.seed)
        valid = P.sample_negatives(valid, cfg.protocol.n_negatives, seed=cfg.seed + 1)
    train_seqs = pd.DataFrame({"user_id": pd.Series([], dtype=object), "items": pd.Series([], dtype=object)})
    return Prepared(
        train=TrainData(sequences=train_seqs, catalog=catalog, items=items, pairs=df[df["split"] == "train"]),
        valid=subsample(valid, cfg.protocol.max_valid_queries, cfg.seed),
        test=subsample(test, cfg.protocol.max_queries, cfg.seed),
        counts={"right_products": len(catalog), "test_queries": len(test), "valid_queries": len(valid)},
    )


def prepare(cfg: EvaluateConfig) -> Prepared:
    """The ranking protocols' data (task recommendation or retrieval; matching reads pairs itself)."""
    return prepare_retrieval(cfg) if cfg.protocol.task == "retrieval" else prepare_recommendation(cfg)


def make_evaluator(cfg: EvaluateConfig, es: P.EvalSet, keep_topk: int = 0) -> RankingEvaluator:
    """The RankingEvaluator of ``es`` with the config's metrics and scoring settings."""
    ev = cfg.evaluator
    return RankingEvaluator(
        es,
        cfg.metrics,
        cfg.primary_metric,
        batch_size=ev.batch_size,
        block_size=ev.block_size,
        ties=ev.ties,
        num_workers=ev.num_workers,
        keep_topk=keep_topk,
    )
