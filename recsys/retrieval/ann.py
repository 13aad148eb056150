"""faiss indexes over L2-normalised embeddings (inner product = cosine): exact, IVF or HNSW,
with recall@k of the approximate index measured against exact search."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import faiss

AnnKind = Literal["exact", "ivf", "hnsw"]


def build_index(
    emb: np.ndarray,
    kind: AnnKind,
    *,
    nlist: int = 256,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_construction: int = 80,
    ef_search: int = 64,
    seed: int = 0,
) -> faiss.Index:
    """``emb`` [N, D] float32, rows L2-normalised -> a trained, filled faiss index (inner product)."""
    import faiss  # lazy: faiss loads its native library; only index build/search needs it

    emb = np.ascontiguousarray(emb, dtype=np.float32)  # [N, D]
    n, dim = emb.shape
    index: faiss.Index  # each branch narrows it to its own index class
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = max(1, min(nlist, n // 39 or 1))  # faiss wants >= 39 training points per list
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(emb)
        index.nprobe = min(nprobe, nlist)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    else:
        raise ValueError(f"unknown ANN kind {kind!r}; use exact, ivf or hnsw")
    index.add(emb)
    return index


def tie_order(scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's hits by score (rounded to 1e-5: duplicate items and the float noise of batched encoding
    compare equal) then by row: a deterministic order that a rebuilt and a live index share."""
    if rows.size == 0:
        return scores, rows
    last = np.where(rows < 0, np.iinfo(np.int64).max, rows)  # no hit (-1) sorts last
    order = np.stack([np.lexsort((r, -np.round(s, 5))) for s, r in zip(scores, last)])
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)


EXACT_FILTER_MAX = 50_000  # filtered sets up to this size are scanned exactly (a few ms, full recall)


def search(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
    vectors: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores [Q, k], rows [Q, k]; -1 = none) of ``queries`` [Q, D], restricted to the row
    ids in ``allowed`` (filters applied inside the search, before truncation). With the index's
    ``vectors`` [N, D], a small filtered set is scanned exactly: graph / cluster search under a
    selective filter can return fewer than k hits."""
    import faiss  # lazy: faiss loads its native library; only index build/search needs it

    if hasattr(index, "live_search"):  # a live catalog's index (recsys.retrieval.delta.LiveAnn)
        return index.live_search(queries, k, None if allowed is None else np.asarray(allowed, np.int64))  # type: ignore[no-any-return]
    queries = np.ascontiguousarray(queries, dtype=np.float32)  # [Q, D]
    k = max(1, min(k, index.ntotal))
    if allowed is None:
        return tie_order(*index.search(queries, k))
    if vectors is not None and len(allowed) <= EXACT_FILTER_MAX:
        return _exact_subset(queries, np.asarray(vectors), np.asarray(allowed, dtype=np.int64), k)
    sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
    params: faiss.SearchParameters
    if isinstance(index, faiss.IndexIVF):
        params = faiss.SearchParametersIVF(sel=sel, nprobe=index.nprobe)  # type: ignore[call-arg]  # faiss stubs: swig constructors take fields as kwargs
    elif isinstance(index, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(index.hnsw.efSearch, k))  # type: ignore[attr-defined]  # faiss stubs omit it
    else:
        params = faiss.SearchParameters(sel=sel)  # type: ignore[call-arg]  # faiss stubs: swig constructors take fields as kwargs
    scores, rows = index.search(queries, k, params=params)
    if vectors is not None and (rows < 0).any():  # too few hits under the filter: scan it exactly
        return _exact_subset(queries, np.asarray(vectors), np.asarray(allowed, dtype=np.int64), k)
    return tie_order(scores, rows)


def _exact_subset(
    queries: np.ndarray, vectors: np.ndarray, allowed: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    sims = queries @ vectors[allowed].T  # [Q, A]
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # [Q, <=k]
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    rows = np.full((len(queries), k), -1, dtype=np.int64)
    scores[:, : top.shape[1]] = np.take_along_axis(sims, top, axis=1)
    rows[:, : top.shape[1]] = allowed[top]
    return tie_order(scores, rows)


def recall_at_k(index: faiss.Index, emb: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    """Mean overlap of the index's top-k with exact top-k (brute force over ``emb`` [N, D])."""
    exact = np.argsort(-(queries @ emb.T), axis=1)[:, :k]  # [Q, k]
    _, approx = search(index, queries, k)  # [Q, k]
    hits = [len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact)]
    return float(np.mean(hits) / k)


def save_index(index: faiss.Index, path: str) -> None:
    import faiss  # lazy: faiss loads its native library; only index build/search needs it

    faiss.write_index(index, path)


def load_index(path: str, *, nprobe: int | None = None, ef_search: int | None = None) -> faiss.Index:
    import faiss  # lazy: faiss loads its native library; only index build/search needs it

    index = faiss.read_index(path)
    if nprobe is not None and isinstance(index, faiss.IndexIVF):
        index.nprobe = nprobe
    if ef_search is not None and isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = ef_search
    return index
