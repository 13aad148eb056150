"""A live catalog: an index version (the *base*, immutable, as the index job wrote it) plus the item changes
applied since, searchable without a rebuild.

Row model: base rows ``0..N-1`` never change. Every upsert appends a new row ``N, N+1, ...`` (a new item, or
the new state of a known one) and retires the item's previous row; a delete retires it. Retired rows and,
with ``out_of_stock: filter``, rows with ``stock <= 0`` are *hidden*: no search, filter or recommendation
returns them. Row ids only grow, so a request that read row ids from one snapshot can use them with a newer
one; the next index job compacts (``recsys.retrieval.changes.fold``).

- Dense: the base faiss index (any kind) stays as built; live rows go into a ``faiss.IndexIDMap2`` over a flat
  inner-product index, ``add_with_ids`` (id = row) on upsert and ``remove_ids`` when the row is retired (HNSW
  cannot remove, and a flat index without ids renumbers: hence base rows are hidden, not removed). A query
  searches both and merges by inner product: the same cosine of the same encoder, so the scores compare.
- Lexical: bm25s has no incremental add (its score matrix bakes in idf and the average length). Once the
  catalog changes, lexical search moves to token postings kept here: the base rows' (tokenized once, from the
  base texts, with the bm25s tokenizer) plus the live rows' (appended). A query scores the visible rows with
  the bm25s formula and **the statistics of the visible catalog** (N, df, average length, maintained as rows
  come and go): the score a rebuild on the same catalog computes, so live and rebuilt rankings agree; equal
  scores (to 1e-5) break by row, in both. Cost: numpy over the query tokens' postings, per query.
- Autocomplete: titles of live rows are added (weight ``title_weight * log1p(1 + popularity)``, as the index
  job weighs them), retired titles subtract their weight; a phrase at weight 0 disappears.
- Item features (title, category, brand, price, stock, popularity) are the live rows of ``items``.

:meth:`LiveCatalog.apply` returns a new :class:`~recsys.retrieval.artifacts.IndexArtifacts` snapshot; readers
holding the previous one keep a consistent view (the shared append-only structures are read under a lock).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from recsys.retrieval.autocomplete import Autocomplete, normalize
from recsys.retrieval.changes import ITEM_FIELDS, ItemChange

if TYPE_CHECKING:
    from recsys.retrieval.artifacts import IndexArtifacts

StockPolicy = Literal["filter", "demote", "show"]
TEXT_FIELDS = ("title", "brand", "category", "description")


def _tokens(texts: list[str]) -> list[list[str]]:
    import bm25s  # lazy: bm25s only for BM25 indexes

    return list(bm25s.tokenize(texts, stopwords="en", show_progress=False, return_ids=False))


def _join(rec: dict[str, Any], fields: Sequence[str]) -> str:
    """The indexed text of one record, as ``recsys.retrieval.build.item_text`` joins it."""
    parts = []
    for f in fields:
        v = rec.get(f)
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) or v == "":
            continue
        parts.append(str(v))
    return " | ".join(parts)


def embed_text(rec: dict[str, Any]) -> str:
    """The text an item is embedded from (the index job embeds ``title | brand | category``)."""
    return _join(rec, ("title", "brand", "category"))


class RowMatrix:
    """Item vectors by row: the base ``[N, D]`` (an mmap) and the live rows appended after it."""

    def __init__(self, base: np.ndarray, live: np.ndarray, n_live: int):
        self.base, self.live, self.n_live = base, live, n_live
        self.n_base = len(base)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_base + self.n_live, int(self.base.shape[1]))

    def __len__(self) -> int:
        return self.n_base + self.n_live

    def __getitem__(self, idx: Any) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            i = int(idx)
            return np.asarray(self.base[i] if i < self.n_base else self.live[i - self.n_base])
        rows = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx, dtype=np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        in_base = rows < self.n_base
        if in_base.any():
            out[in_base] = self.base[rows[in_base]]
        if (~in_base).any():
            out[~in_base] = self.live[rows[~in_base] - self.n_base]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)


class _DeltaAnn:
    """The live rows' faiss index (ids = rows), shared by every snapshot; mutated and searched under a lock."""

    def __init__(self, dim: int):
        import faiss  # lazy: faiss loads its native library

        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.lock = threading.Lock()

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        with self.lock:
            self.index.add_with_ids(np.ascontiguousarray(vectors, np.float32), rows.astype(np.int64))

    def remove(self, rows: list[int]) -> None:
        import faiss

        if rows:
            with self.lock:
                self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(rows, dtype=np.int64)))

    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        with self.lock:
            k = max(1, min(k, self.index.ntotal))
            if allowed is None:
                return self.index.search(q, k)
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed.astype(np.int64)))  # type: ignore[call-arg]  # swig kwargs
            return self.index.search(q, k, params=params)


class LiveAnn:
    """A snapshot's dense index: the base index with hidden rows skipped + the live rows (exact)."""

    def __init__(
        self, base: Any, base_vectors: np.ndarray, delta: _DeltaAnn, hidden: np.ndarray, n_rows: int
    ):
        self.base, self.base_vectors, self.delta = base, base_vectors, delta
        self.hidden, self.n_rows, self.n_base = hidden, n_rows, base.ntotal

    @property
    def ntotal(self) -> int:
        return self.n_rows

    def live_search(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores [Q, k], rows [Q, k]; -1 = none) over visible rows (within ``allowed``)."""
        from recsys.retrieval.ann import search as base_search
        from recsys.retrieval.ann import tie_order

        q = np.ascontiguousarray(q, dtype=np.float32)
        base_hidden = np.flatnonzero(self.hidden[: self.n_base])
        if allowed is None and base_hidden.size == 0:
            bs, br = base_search(self.base, q, k)
        elif allowed is None and base_hidden.size <= 4 * k:  # few hidden: over-fetch and drop them
            bs, br = base_search(self.base, q, k + base_hidden.size)
            bs, br = _drop(bs, br, self.hidden, k)
        else:
            keep = np.arange(self.n_base) if allowed is None else allowed[allowed < self.n_base]
            keep = keep[~self.hidden[keep]]
            if keep.size == 0:
                bs, br = np.full((len(q), 0), -np.inf, np.float32), np.full((len(q), 0), -1, np.int64)
            else:
                bs, br = base_search(self.base, q, k, keep, vectors=self.base_vectors)
        live = np.arange(self.n_base, self.n_rows) if allowed is None else allowed[allowed >= self.n_base]
        live = live[~self.hidden[live]]
        if live.size:
            ds, dr = self.delta.search(q, k, live)
            bs, br = np.concatenate([bs, ds], axis=1), np.concatenate([br, dr], axis=1)
        bs = np.where(br >= 0, bs, -np.inf).astype(np.float32)
        scores, rows = tie_order(bs, np.where(br >= 0, br, -1))
        scores, rows = scores[:, :k], rows[:, :k]
        return scores, np.where(np.isfinite(scores), rows, -1)


def _drop(scores: np.ndarray, rows: np.ndarray, hidden: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    bad = (rows < 0) | hidden[np.clip(rows, 0, None)]
    scores = np.where(bad, -np.inf, scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(np.where(bad, -1, rows), order, 1)


class _Postings:
    """Token -> (rows, term frequencies) of every row ever indexed (base rows from the base texts, live rows
    appended), and each row's length; append-only and shared by every snapshot (under a lock)."""

    def __init__(self, base_texts: list[str], k1: float, b: float):
        self.k1, self.b = k1, b
        self.lock = threading.Lock()
        self.live: dict[str, list[tuple[int, int]]] = {}
        docs = _tokens(base_texts) if base_texts else []
        self.length = np.zeros(max(64, 2 * len(docs)), np.float64)
        acc: dict[str, tuple[list[int], list[int]]] = {}
        for row, doc in enumerate(docs):
            self.length[row] = len(doc)
            for t, tf in Counter(doc).items():
                rs, tfs = acc.setdefault(t, ([], []))
                rs.append(row)
                tfs.append(tf)
        self.base = {t: (np.asarray(r, np.int64), np.asarray(f, np.float64)) for t, (r, f) in acc.items()}

    def add(self, rows: list[int], texts: list[str]) -> None:
        toks = _tokens(texts) if texts else []
        with self.lock:
            need = max(rows) + 1 if rows else 0
            if need > len(self.length):  # a new array: snapshots holding the old one read rows it has
                grown = np.zeros(max(need, 2 * len(self.length)), np.float64)
                grown[: len(self.length)] = self.length
                self.length = grown
            for row, doc in zip(rows, toks):
                self.length[row] = len(doc)
                for t, tf in Counter(doc).items():
                    self.live.setdefault(t, []).append((row, tf))

    def postings(self, t: str) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            live = list(self.live.get(t, ()))
        base = self.base.get(t, (np.empty(0, np.int64), np.empty(0, np.float64)))
        if not live:
            return base
        lr = np.fromiter((r for r, _ in live), np.int64, len(live))
        lf = np.fromiter((f for _, f in live), np.float64, len(live))
        return np.concatenate([base[0], lr]), np.concatenate([base[1], lf])


class LiveBM25:
    """A snapshot's lexical index: BM25 (the bm25s Lucene formula, ``idf * tf / (tf + k1 * (1 - b + b * dl /
    avgdl))``, ``idf = log(1 + (N - df + 0.5) / (df + 0.5))``) over the visible rows with the statistics of
    the visible rows (N, df, avgdl): what a rebuild on the same catalog computes, so scores agree with it."""

    def __init__(self, postings: _Postings, hidden: np.ndarray, n_rows: int):
        self.p, self.hidden, self.n_rows = postings, hidden, n_rows
        self.n_docs = n_rows
        self.length = postings.length  # this snapshot's rows are < n_rows: a later, grown array is not needed
        visible = ~hidden[:n_rows]
        self.n_visible = int(visible.sum())
        mean = float(self.length[:n_rows][visible].mean()) if self.n_visible else 1.0
        self.avgdl = max(mean, 1e-9)

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows [<=k], scores [<=k]) of the best matches with score > 0 among visible rows in ``allowed``."""
        k1, b, n = self.p.k1, self.p.b, self.n_visible
        all_rows, all_scores = [], []
        for t in dict.fromkeys(_tokens([query])[0]):  # unique, in order
            rows, tf = self.p.postings(t)
            keep = rows < self.n_rows
            rows, tf = rows[keep], tf[keep]
            keep = ~self.hidden[rows]
            rows, tf = rows[keep], tf[keep]
            if not rows.size:
                continue
            idf = math.log(1 + (n - rows.size + 0.5) / (rows.size + 0.5))
            norm = k1 * ((1 - b) + b * self.length[rows] / self.avgdl)
            all_rows.append(rows)
            all_scores.append(idf * tf / (norm + tf))
        if not all_rows:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        rows, scores = np.concatenate(all_rows), np.concatenate(all_scores)
        if allowed is not None:
            keep = np.isin(rows, allowed)
            rows, scores = rows[keep], scores[keep]
        uniq, inv = np.unique(rows, return_inverse=True)
        total = np.bincount(inv, weights=scores).astype(np.float32)
        order = np.lexsort((uniq, -np.round(total, 5)))[:k]  # ties by row, as BM25Index orders them
        keep = total[order] > 0
        return uniq[order][keep].astype(np.int64), total[order][keep]


class LiveAutocomplete:
    """The base autocomplete with phrase weights adjusted by live titles (added / retired)."""

    def __init__(self, base: Any, base_weight: dict[str, float], delta: dict[str, tuple[str, float]]):
        self.base, self.base_weight, self.delta = base, base_weight, delta
        extra = [(shown, w) for key, (shown, w) in delta.items() if key not in base_weight and w > 1e-9]
        self.extra = Autocomplete([s for s, _ in extra], np.array([w for _, w in extra])) if extra else None

    def suggest(self, q: str, k: int = 10) -> list[dict[str, Any]]:
        out = []
        touched = sum(1 for key in self.delta if key in self.base_weight)
        for s in self.base.suggest(q, k + touched) if self.base is not None else []:
            key = normalize(s["text"])
            if key in self.delta:
                old = self.base_weight[key]
                new = old + self.delta[key][1]
                if new <= 1e-9:
                    continue
                s = dict(s, score=round(float(s["score"]) * new / old, 6))
            out.append(s)
        if self.extra is not None:
            out += self.extra.suggest(q, k)
        out.sort(key=lambda s: -float(s["score"]))
        return out[:k]

    def __len__(self) -> int:
        return (len(self.base) if self.base is not None else 0) + (len(self.extra) if self.extra else 0)


@dataclasses.dataclass(frozen=True)
class LiveSettings:
    """How the live catalog serves: out-of-stock rows filtered, demoted (``demote`` subtracted from their
    personalized score) or shown; the indexed text fields and title weight (from the index's manifest)."""

    out_of_stock: StockPolicy = "filter"
    demote: float = 0.5
    bm25_fields: tuple[str, ...] = TEXT_FIELDS
    title_weight: float = 1.0
    include_titles: bool = True


class LiveCatalog:
    """The base index version + changes applied in log order (``seq``); :meth:`snapshot` is what stages use."""

    def __init__(self, base: IndexArtifacts, settings: LiveSettings | None = None, applied_seq: int = 0):
        self.s = settings or self.settings_for(base)
        self.base, self.applied_seq = base, applied_seq
        self.n_base = len(base.items)
        dim = int(base.embeddings.shape[1])
        self.vectors = np.zeros((max(64, self.n_base // 8), dim), np.float32)
        self.records: list[dict[str, Any]] = []  # live rows' records (row = n_base + i)
        self.row_of = dict(base.row_of)
        self.retired: set[int] = set()
        self.delta_ann = _DeltaAnn(dim)
        self.postings: _Postings | None = None  # built at the first change that needs it
        self.ac_delta: dict[str, tuple[str, float]] = {}
        self._ac_base: dict[str, float] | None = None
        self.counts = {"upserts": 0, "deletes": 0, "deletes_unknown": 0}
        self.lock = threading.Lock()
        self._snap = self._snapshot()

    @staticmethod
    def settings_for(base: IndexArtifacts) -> LiveSettings:
        """The defaults of an index version: its indexed text fields and title weight (manifest)."""
        man = base.manifest
        return LiveSettings(
            bm25_fields=tuple((man.get("bm25") or {}).get("fields") or TEXT_FIELDS),
            title_weight=float((man.get("autocomplete") or {}).get("title_weight", 1.0)),
            include_titles=bool((man.get("autocomplete") or {}).get("include_titles", True)),
        )

    # --- applying ---------------------------------------------------------------------------------
    def record_of(self, row: int) -> dict[str, Any]:
        if row < self.n_base:
            return dict(self.base.items.iloc[row].to_dict())
        return self.records[row - self.n_base]

    def text_of(self, item_id: str) -> str | None:
        """The embedded text (title | brand | category) of an item as served now (None: unknown)."""
        row = self.row_of.get(item_id)
        return None if row is None else embed_text(self.record_of(row))

    def _retire(self, row: int, acc: dict[str, list[Any]]) -> None:
        self.retired.add(row)
        if row >= self.n_base:
            acc["remove"].append(row)
        rec = self.record_of(row)
        self._title_weight(rec, -1.0)

    def _title_weight(self, rec: dict[str, Any], sign: float) -> None:
        if not self.s.include_titles or not rec.get("title"):
            return
        key = normalize(str(rec["title"]))
        if not key:
            return
        pop = rec.get("popularity")
        pop = 0.0 if pop is None or (isinstance(pop, float) and math.isnan(pop)) else float(pop)
        shown, w = self.ac_delta.get(key, (str(rec["title"]).strip(), 0.0))
        self.ac_delta[key] = (shown, w + sign * self.s.title_weight * math.log1p(1.0 + pop))

    def apply(self, changes: Sequence[ItemChange], vectors: Sequence[np.ndarray | None]) -> IndexArtifacts:
        """Apply changes (in order; ``vectors[i]``: the embedding of upsert ``i``'s text, L2-normalised) and
        return the new snapshot. Changes at or below the applied ``seq`` are skipped (a replayed log)."""
        with self.lock:
            acc: dict[str, list[Any]] = {"remove": [], "rows": [], "vecs": [], "texts": []}
            for c, v in zip(changes, vectors):
                if c.seq and c.seq <= self.applied_seq:
                    continue
                old = self.row_of.get(c.item_id)
                if c.op == "delete":
                    if old is None:
                        self.counts["deletes_unknown"] += 1
                    else:
                        self._retire(old, acc)
                        del self.row_of[c.item_id]
                        self.counts["deletes"] += 1
                else:
                    if v is None:
                        raise ValueError(f"upsert of {c.item_id!r} (seq {c.seq}) has no embedding")
                    rec = self.record_of(old) if old is not None else {}
                    if old is not None:
                        self._retire(old, acc)
                    rec = {**rec, **c.record()}
                    rec["popularity"] = float(rec.get("popularity") or 0.0)
                    row = self.n_base + len(self.records)
                    self.records.append(rec)
                    if row - self.n_base >= len(self.vectors):
                        self.vectors = np.concatenate([self.vectors, np.zeros_like(self.vectors)])
                    self.vectors[row - self.n_base] = np.asarray(v, np.float32)
                    self.row_of[c.item_id] = row
                    self._title_weight(rec, 1.0)
                    acc["rows"].append(row)
                    acc["vecs"].append(np.asarray(v, np.float32))
                    acc["texts"].append(_join(rec, self.s.bm25_fields))
                    self.counts["upserts"] += 1
                self.applied_seq = max(self.applied_seq, c.seq)
            if acc["rows"]:
                self.delta_ann.add(np.asarray(acc["rows"], np.int64), np.stack(acc["vecs"]))
                self._lexical().add(acc["rows"], acc["texts"])
            self.delta_ann.remove(acc["remove"])
            self._snap = self._snapshot()
            return self._snap

    def snapshot(self) -> IndexArtifacts:
        return self._snap

    def _lexical(self) -> _Postings:
        if self.postings is None:
            from recsys.retrieval.build import item_text

            r = getattr(self.base.bm25, "retriever", None)
            k1, b = (float(r.k1), float(r.b)) if r is not None else (1.5, 0.75)
            self.postings = _Postings(item_text(self.base.items, list(self.s.bm25_fields)), k1, b)
        return self.postings

    # --- the snapshot -----------------------------------------------------------------------------
    def _snapshot(self) -> IndexArtifacts:
        b, n_live = self.base, len(self.records)
        n = self.n_base + n_live
        items = b.items
        if n_live:
            live = pd.DataFrame(self.records, columns=list(dict.fromkeys([*b.items.columns, *ITEM_FIELDS])))
            items = pd.concat([b.items, live[[c for c in live.columns if c in b.items.columns or c in ITEM_FIELDS]]],
                              ignore_index=True)  # fmt: skip
            for col in ("category", "brand"):
                if col in items.columns:
                    items[col] = items[col].astype("string")
            for col in ("price", "stock", "popularity"):
                if col in items.columns:
                    items[col] = pd.to_numeric(items[col], errors="coerce")
        hidden = np.zeros(n, dtype=bool)
        if self.retired:
            hidden[np.fromiter(self.retired, np.int64, len(self.retired))] = True
        demoted = None
        if "stock" in items.columns:
            out = items["stock"].to_numpy(dtype=np.float64, na_value=np.nan) <= 0
            if self.s.out_of_stock == "filter":
                hidden |= out
            elif self.s.out_of_stock == "demote" and out.any():
                demoted = np.where(out, self.s.demote, 0.0)
        vectors = RowMatrix(b.embeddings, self.vectors, n_live)
        bm25 = b.bm25
        if (n_live or hidden[: self.n_base].any()) and b.bm25 is not None:
            bm25 = LiveBM25(self._lexical(), hidden, n)
        ac = b.autocomplete
        if self.ac_delta:
            if self._ac_base is None:
                ac_base = b.autocomplete
                pairs = zip(ac_base.phrases, ac_base.weights) if ac_base is not None else ()
                self._ac_base = {normalize(p): float(w) for p, w in pairs}
            ac = LiveAutocomplete(b.autocomplete, self._ac_base, dict(self.ac_delta))
        return dataclasses.replace(
            b,
            items=items,
            embeddings=vectors if n_live else b.embeddings,  # type: ignore[arg-type]  # RowMatrix: ndarray-like
            ann=LiveAnn(b.ann, b.embeddings, self.delta_ann, hidden, n)
            if (n_live or hidden.any())
            else b.ann,
            bm25=bm25,
            autocomplete=ac,
            row_of=dict(self.row_of),
            hidden=hidden if hidden.any() else None,
            demoted=demoted,
            catalog_seq=self.applied_seq,
        )
