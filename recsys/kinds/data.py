"""Training data as Ray Datasets, shared by the model kinds: read canonical tables, slice splits,
tokenize in the pipeline (the kinds' ``prepare`` compose these; the loop uses ``trim_batch``).

Every Ray Data function here takes plain values (paths, ints, dicts), never config objects.
Tokenized text columns are padded to ``max_length`` in the pipeline; the loop trims each batch to
its longest row (``trim_batch``), so compute follows the real lengths.

Tables (docs/DATA.md): **pairs** ``left, right, label`` (+ ``split``; or ``event_type`` instead of
``label``, mapped to graded relevance); **sequences** ``user_id, items`` (+ user-feature columns) or
**events** ``user_id, item_id, timestamp`` (grouped into sequences here); **items** ``item_id, title``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.config.base import InputConfig
from recsys.data.adapters import read_input, tables_of
from recsys.data.io import head
from recsys.data.shuffle import by_key_tasks
from recsys.kinds.base import KindData
from recsys.losses.graded import relevance_labels

if TYPE_CHECKING:
    from ray.data import Dataset

TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


# -- reading ---------------------------------------------------------------------------------------
def read_table(inp: InputConfig, table: str) -> Dataset:
    """Canonical ``table`` of ``inp`` as a Ray Dataset (through the data adapters / presets)."""
    if inp.preset is None and table not in ("pairs", "sequences", "events", "items"):
        raise ValueError(f"unsupported table {table!r}")
    if inp.preset is None and "table" not in inp.model_fields_set:
        inp = inp.model_copy(update={"table": table})
    return read_input(inp, table if inp.preset else inp.table)


def _partitions(ds: Dataset) -> int:
    """Shuffle partitions for a group-by: Ray's default (200) is far too many for training tables."""
    import ray  # lazy: Ray costs ~1 s; job listing imports this module

    return int(min(64, max(2, 2 * int(ray.cluster_resources().get("CPU", 2)))))


def _keep_split(batch: pd.DataFrame, split: str | None) -> pd.DataFrame:
    if split is None or "split" not in batch.columns:
        return batch
    return batch[batch["split"] == split]


PAIR_SCHEMA = pa.schema([("left", pa.large_string()), ("right", pa.large_string()), ("label", pa.float32())])


def _pair_labels(batch: pd.DataFrame, gains: dict[str, float] | None, split: str | None = None) -> pa.Table:
    """One split's rows -> ``left, right, label`` (float); graded relevance from ``event_type`` when there
    is no label. Always PAIR_SCHEMA, also when the split filter empties a block: Ray Data skips a UDF on
    an empty block and passes it on without columns, and a later hash shuffle (hard-negative mining's
    groupby) cannot concatenate that with typed blocks ("Schema at index 1 was different")."""
    batch = _keep_split(batch, split)
    if batch.empty:
        return PAIR_SCHEMA.empty_table()
    if "label" not in batch.columns or batch["label"].isna().all():
        if "event_type" not in batch.columns:
            raise ValueError("pairs table needs a 'label' column (or 'event_type' for graded relevance)")
        label = relevance_labels(batch["event_type"].tolist(), gains, scale=True)
    else:
        if batch["label"].isna().any():
            raise ValueError(
                f"pairs table has {int(batch['label'].isna().sum())} rows without label; clean or drop them"
            )
        label = batch["label"].astype("float32").to_numpy()
    return pa.table(
        {
            "left": batch["left"].fillna("").astype(str).tolist(),
            "right": batch["right"].fillna("").astype(str).tolist(),
            "label": label,
        },
        schema=PAIR_SCHEMA,
    )


def load_pairs(
    inp: InputConfig, split: str | None, max_rows: int | None, gains: dict[str, float] | None
) -> Dataset:
    ds = read_table(inp, "pairs").map_batches(
        _pair_labels, batch_format="pandas", fn_kwargs={"gains": gains, "split": split}
    )
    return head(ds, max_rows) if max_rows else ds


def pairs_data(cfg: Any, rows: Any, tokenize: Any, grouped: bool) -> KindData:
    """Train / valid pairs of ``cfg.data`` -> ``rows(train, valid)`` (the kind's row shaping) -> tokenized
    by ``tokenize`` in the pipeline. ``grouped``: rows come in query lists that must stay in order."""
    d = cfg.data
    train = load_pairs(d.train, d.train_split, d.max_train_rows, d.relevance_gains)
    valid = load_pairs(d.valid or d.train, d.valid_split, d.max_valid_rows, d.relevance_gains)
    train, valid = rows(train, valid)
    if not grouped:  # rows are shuffled again per epoch in the loop (train.shuffle_buffer)
        train = train.randomize_block_order(seed=cfg.seed)
    kw = {"tokenizer_path": cfg.model.name_or_path, "max_length": cfg.model.max_length}
    train = train.map_batches(tokenize, batch_format="pandas", fn_kwargs=kw)
    valid = valid.map_batches(
        tokenize, batch_format="pandas", fn_kwargs=kw
    ).materialize()  # read once, every eval reuses it
    train = train.materialize() if d.cache else train
    return KindData(
        {"train": train, "valid": valid}, {"train_rows": train.count(), "valid_rows": valid.count()}
    )


# -- tokenization ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _tokenizer(name_or_path: str) -> Any:  # a Hugging Face tokenizer
    from recsys.models.base import load_tokenizer  # lazy: recsys.models.base imports torch (Ray Data workers)

    return load_tokenizer(name_or_path)


def _tok(
    texts: list[str], tokenizer_path: str, max_length: int, prefix: str, pair: list[str] | None = None
) -> dict[str, np.ndarray]:
    tok = _tokenizer(tokenizer_path)
    enc = tok(
        texts,
        pair,
        padding="max_length",
        truncation=True if pair is None else "longest_first",
        max_length=max_length,
        return_tensors="np",
    )
    return {f"{prefix}{k}": enc[k].astype(np.int64) for k in TEXT_KEYS if k in enc}


def tokenize_bi(batch: pd.DataFrame, tokenizer_path: str, max_length: int) -> dict[str, np.ndarray]:
    """``left`` (query) / ``right`` (positive) [/ ``negative``] -> ``q_*``, ``p_*`` [, ``n_*``] token arrays."""
    out = _tok(batch["left"].tolist(), tokenizer_path, max_length, "q_")
    out.update(_tok(batch["right"].tolist(), tokenizer_path, max_length, "p_"))
    if "negative" in batch.columns:
        out.update(_tok(batch["negative"].tolist(), tokenizer_path, max_length, "n_"))
    out["label"] = batch["label"].to_numpy(np.float32)
    return out


def tokenize_cross(batch: pd.DataFrame, tokenizer_path: str, max_length: int) -> dict[str, np.ndarray]:
    """``left``, ``right``, ``label`` [, ``teacher_score``] -> ``input_ids``, ``attention_mask``[,
    ``token_type_ids``], ``label`` [, ``teacher_score``]."""
    out = _tok(batch["left"].tolist(), tokenizer_path, max_length, "", batch["right"].tolist())
    out["label"] = batch["label"].to_numpy(np.float32)
    if "teacher_score" in batch.columns:  # distillation targets (``with_teacher_scores``)
        out["teacher_score"] = batch["teacher_score"].to_numpy(np.float32)
    return out


# -- distillation ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _teacher(path: str) -> Any:  # a CrossEncoder, loaded once per Ray Data worker process
    from recsys.models.distil import load_teacher  # lazy: torch + transformers

    return load_teacher(path)


def score_with_teacher(batch: pd.DataFrame, teacher_path: str, batch_size: int) -> pd.DataFrame:
    """``left``, ``right``, ... -> the same rows plus ``teacher_score`` (float32, the teacher's logit)."""
    from recsys.models.distil import teacher_scores  # lazy: torch

    scores = teacher_scores(
        _teacher(teacher_path),
        batch["left"].astype(str).tolist(),
        batch["right"].astype(str).tolist(),
        batch_size,
    )
    return batch.assign(teacher_score=scores)


def bm25_mined_pairs(lefts: list[str], rights: list[str], k: int) -> pd.DataFrame:
    """Unlabelled pairs mined by the retriever: each distinct query (``lefts``) with its top-``k`` BM25
    matches (score > 0) among the distinct ``rights`` (the catalog), minus the given pairs -> ``left, right,
    label`` (label 0: the teacher's score is their target). Same BM25 (bm25s, English stopwords) as the index."""
    import bm25s  # lazy: bm25s only for mining

    catalog, queries = sorted(set(rights)), sorted(set(lefts))
    given = set(zip(lefts, rights, strict=True))
    out_l, out_r = [], []
    if catalog and queries and k > 0:
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(catalog, stopwords="en", show_progress=False), show_progress=False)
        tokens = bm25s.tokenize(queries, stopwords="en", show_progress=False, return_ids=False)
        for q, toks in zip(queries, tokens, strict=True):
            toks = [t for t in toks if t in retriever.vocab_dict]
            if not toks:
                continue
            rows, scores = retriever.retrieve(
                [toks], k=min(k, len(catalog)), show_progress=False, n_threads=0
            )
            for j, sc in zip(rows[0], scores[0], strict=True):
                if sc > 0 and (q, catalog[int(j)]) not in given:
                    out_l.append(q)
                    out_r.append(catalog[int(j)])
    return pd.DataFrame({"left": out_l, "right": out_r, "label": np.zeros(len(out_l), dtype=np.float32)})


def with_mined_pairs(ds: Dataset, k: int) -> Dataset:
    """Training pairs plus the BM25-mined unlabelled pairs of their queries (``bm25_mined_pairs``; mined
    in the driver over the pairs' distinct texts)."""
    import ray.data  # lazy: Ray costs ~1 s

    df = ds.select_columns(["left", "right"]).to_pandas()
    mined = bm25_mined_pairs(df["left"].astype(str).tolist(), df["right"].astype(str).tolist(), k)
    if mined.empty:
        return ds
    return ds.union(
        ray.data.from_arrow(pa.Table.from_pandas(mined, schema=PAIR_SCHEMA, preserve_index=False))
    )


def with_teacher_scores(ds: Dataset, teacher_path: str, batch_size: int) -> Dataset:
    """Pairs -> pairs with a ``teacher_score`` column, scored offline by the saved cross-encoder
    ``teacher_path`` (a Ray Data map over blocks of ``4 * batch_size`` rows, the model loaded once per worker)."""
    return ds.map_batches(
        score_with_teacher,
        batch_format="pandas",
        batch_size=4 * batch_size,
        fn_kwargs={"teacher_path": teacher_path, "batch_size": batch_size},
    )


def _positives(batch: pd.DataFrame) -> pd.DataFrame:
    return batch[batch["label"] > 0]


def _mine_negatives(group: pd.DataFrame, seed: int) -> pd.DataFrame:
    """One query's rows -> its positives, each with one label-0 right text of the same query as hard negative."""
    if group.empty or "label" not in group.columns:
        return pd.DataFrame(
            {
                "left": pd.Series(dtype=str),
                "right": pd.Series(dtype=str),
                "label": pd.Series(dtype="float32"),
                "negative": pd.Series(dtype=str),
            }
        )
    pos, neg = group[group["label"] > 0], group[group["label"] <= 0]
    if pos.empty or neg.empty:
        return pos.iloc[0:0].assign(negative=pd.Series(dtype=str))
    rng = np.random.default_rng(seed + len(group))
    return pos.assign(negative=neg["right"].to_numpy()[rng.integers(0, len(neg), len(pos))])


def bi_encoder_rows(ds: Dataset, hard_negatives: bool, seed: int) -> Dataset:
    """Pairs -> (query, positive[, negative]) rows for in-batch-negative training."""
    if hard_negatives:
        return ds.groupby("left", num_partitions=_partitions(ds)).map_groups(
            _mine_negatives, batch_format="pandas", fn_kwargs={"seed": seed}
        )
    return ds.map_batches(_positives, batch_format="pandas")


def _list_group(group: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """One query's rows -> exactly ``size`` rows (sampled; repeated when short), or none if labels are all equal."""
    if group["label"].nunique() < 2:
        return group.iloc[0:0]
    rng = np.random.default_rng(seed + len(group))
    pick = rng.choice(len(group), size, replace=len(group) < size)
    return group.iloc[np.sort(pick)]


def listwise_groups(ds: Dataset, size: int, seed: int) -> Dataset:
    """Pairs -> consecutive lists of ``size`` rows per query (``left``) for the listwise loss."""
    return ds.groupby("left", num_partitions=_partitions(ds)).map_groups(
        _list_group, batch_format="pandas", fn_kwargs={"size": size, "seed": seed}
    )


# -- sequences -------------------------------------------------------------------------------------
def _group_events(block: pa.Table, feature_cols: list[str]) -> pa.Table:
    """Events of whole users (one hash partition) -> one row per user: ``user_id``, ``items`` in time order
    (ties broken by ``source_row``, then input order, as the evaluation orders them), and each feature
    column's last value. Vectorised (one sort and one ``group_by``): a pandas function per user group
    (``map_groups``) took 126 s for Games-6k's 440k events on 2 CPUs."""
    if not isinstance(block, pa.Table):  # a pandas block
        block = pa.Table.from_pandas(block, preserve_index=False)
    n = block.num_rows
    cols = {"user_id": _as_str(block, "user_id", n), "item_id": _as_str(block, "item_id", n)}
    for c in feature_cols:  # last value of the user's history; a column the events lack is null
        cols[c] = _as_str(block, c, n)
    order = [("user_id", "ascending")]
    for c in (
        "timestamp",
        "source_row",
    ):  # the evaluation's order (sequences_from_events): file order breaks ties
        if c in block.column_names:
            cols[f"_{c}"], order = block[c], order + [(f"_{c}", "ascending")]
    cols["_row"] = pa.array(np.arange(n, dtype=np.int64))  # shape: (events,)
    t = pa.table(cols)
    t = t.take(pc.sort_indices(t, sort_keys=order + [("_row", "ascending")]))
    # use_threads=False: "list" and "last" then follow the sorted row order
    g = t.group_by("user_id", use_threads=False).aggregate(
        [("item_id", "list")] + [(c, "last") for c in feature_cols]
    )
    return pa.table(
        {"user_id": g["user_id"], "items": g["item_id_list"], **{c: g[f"{c}_last"] for c in feature_cols}}
    )


def _as_str(block: pa.Table, col: str, n: int) -> pa.Array:
    if col not in block.column_names:
        return pa.nulls(n, pa.string())
    return pc.cast(block[col].combine_chunks(), pa.string())


def load_sequences(inp: InputConfig, feature_cols: list[str], max_rows: int | None) -> Dataset:
    """Sequences table, or events grouped per user (time-ordered) -> ``user_id, items`` (+ features)."""
    if feature_cols and not inp.keep_extra:  # user features are columns beyond the canonical schema
        inp = inp.model_copy(update={"keep_extra": True})
    tables = _tables_of(inp)
    if "sequences" in tables:
        ds = read_table(inp, "sequences")
    else:
        events = read_table(inp, "events")
        # one keyed exchange of plain tasks (every output block holds all events of its users), then
        # the vectorised grouping per block
        ds = by_key_tasks(
            events,
            "user_id",
            _group_events,
            partitions=_partitions(events),
            fn_kwargs={"feature_cols": feature_cols},
        )
        if max_rows:  # the users first in id order, on every run and cluster size: a resumed trial's
            # checkpoint then fits its model (seen: id_emb 3,055 vs 2,928 rows on a tune resume)
            ds = ds.sort("user_id")
    return head(ds, max_rows) if max_rows else ds


def _tables_of(inp: InputConfig) -> list[str]:
    return tables_of(inp)


@dataclass
class SequenceVocab:
    """Item ids (index = position + 1; 0 = padding) and user-feature values (0 = unknown)."""

    item_ids: list[str]
    user_features: dict[str, list[str]] = field(default_factory=dict)

    def item_index(self) -> dict[str, int]:
        return {item: i + 1 for i, item in enumerate(self.item_ids)}


def _collect_vocab(batch: pd.DataFrame, feature_cols: list[str]) -> pd.DataFrame:
    items = pd.Series([i for seq in batch["items"] for i in seq], dtype=str).unique()
    out = [pd.DataFrame({"col": "__item__", "value": items})]
    for c in feature_cols:
        if c not in batch.columns:
            raise ValueError(
                f"model.sequential.user_features names {c!r} but the sequences have no such column; "
                f"columns: {list(batch.columns)}"
            )
        out.append(pd.DataFrame({"col": c, "value": batch[c].dropna().astype(str).unique()}))
    return pd.concat(out)


def build_vocab(ds: Dataset, feature_cols: list[str], extra_items: list[str] | None = None) -> SequenceVocab:
    """Scan the sequences once (Ray Data) for item ids and user-feature values, sorted for determinism."""
    df = ds.map_batches(
        _collect_vocab, batch_format="pandas", fn_kwargs={"feature_cols": feature_cols}
    ).to_pandas()
    df = df.drop_duplicates()
    items = set(df.loc[df["col"] == "__item__", "value"]) | set(extra_items or [])
    feats = {c: sorted(df.loc[df["col"] == c, "value"]) for c in feature_cols}
    return SequenceVocab(sorted(items), feats)


def _pad_left(idx: list[int], length: int) -> np.ndarray:
    out = np.zeros(length, dtype=np.int64)
    if idx:
        out[-len(idx) :] = idx[-length:]
    return out


def encode_sequences(
    batch: pd.DataFrame,
    item_index: dict[str, int],
    feature_index: dict[str, dict[str, int]],
    max_len: int,
    holdout: int,
    mode: str,
) -> dict[str, np.ndarray]:
    """``items`` lists -> training windows ``items`` [B, max_len+1] (mode 'train': positions predict the
    next) or ``history`` [B, max_len] + ``target`` [B] (mode 'valid': the item at -holdout, or the
    last item when holdout == 0); ``user`` [B, F] feature indices. Users too short are skipped."""
    rows_items, rows_hist, rows_tgt, rows_user = [], [], [], []
    for r, seq in enumerate(batch["items"]):
        idx = [item_index.get(str(i), 0) for i in seq]
        idx = [i for i in idx if i]
        if mode == "train":
            idx = idx[: len(idx) - holdout] if holdout else idx
            if len(idx) < 2:
                continue
            rows_items.append(_pad_left(idx, max_len + 1))
        else:
            cut = holdout or 1
            if len(idx) < cut + 1:
                continue
            rows_hist.append(_pad_left(idx[: len(idx) - cut], max_len))
            rows_tgt.append(idx[len(idx) - cut])
        rows_user.append([feature_index[c].get(str(batch[c].iloc[r]), 0) for c in feature_index])
    n_feat = len(feature_index)
    user = np.asarray(rows_user, dtype=np.int64).reshape(-1, n_feat) if n_feat else None
    if mode == "train":
        out = {"items": np.stack(rows_items) if rows_items else np.zeros((0, max_len + 1), np.int64)}
    else:
        out = {
            "history": np.stack(rows_hist) if rows_hist else np.zeros((0, max_len), np.int64),
            "target": np.asarray(rows_tgt, dtype=np.int64),
        }
    if user is not None:
        out["user"] = user
    return out


def item_texts(items_ds: Dataset, item_ids: list[str]) -> list[str]:
    """Titles (else descriptions) of ``item_ids`` in order; '' for items without text."""
    df = items_ds.to_pandas()
    text = df["title"].fillna("") if "title" in df.columns else pd.Series([""] * len(df))
    if "description" in df.columns:
        text = text.where(text != "", df["description"].fillna(""))
    lookup = dict(zip(df["item_id"].astype(str), text.astype(str), strict=True))
    return [lookup.get(i, "") for i in item_ids]


# -- batches in the loop ---------------------------------------------------------------------------
def trim_batch(batch: dict[str, Any], prefixes: tuple[str, ...]) -> dict[str, Any]:
    """Cut each tokenized group (``q_``, ``p_``, ``n_`` or '') to its longest real row."""
    out = dict(batch)
    for pre in prefixes:
        mask = batch.get(f"{pre}attention_mask")
        if mask is None:
            continue
        longest = max(int(mask.sum(dim=1).max()), 1)
        for k in TEXT_KEYS:
            if f"{pre}{k}" in out:
                out[f"{pre}{k}"] = out[f"{pre}{k}"][:, :longest]
    return out


def text_inputs(batch: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The tokenized group ``prefix`` of a batch as encoder keyword arguments."""
    return {k: batch[f"{prefix}{k}"] for k in TEXT_KEYS if f"{prefix}{k}" in batch}
