"""Beyond-accuracy metrics of top-k lists: coverage, diversity, novelty, popularity bias.

Input: ``topk`` (Q, K) object array of recommended item ids (None = empty slot), plus the catalog,
item popularity (training interaction counts) and, for diversity, item embeddings.
``beyond_accuracy`` computes all of them for one model's top-k lists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # annotation only: scorer modules import this one, and TrainData pulls in scipy.sparse
    from recsys.evaluation.train_data import TrainData


def catalog_coverage(topk: np.ndarray, catalog_size: int) -> float:
    """Share of the catalog that appears in at least one top-k list."""
    items = {i for i in topk.reshape(-1).tolist() if i is not None}
    return len(items) / max(catalog_size, 1)


def novelty(topk: np.ndarray, popularity: dict[str, float], n_users: int) -> np.ndarray:
    """Per query: mean self-information -log2(p(item)) of the recommended items, p = users who
    interacted with the item / all users (unknown items count as seen once)."""
    out = np.zeros(len(topk))
    for q, row in enumerate(topk):
        items = [i for i in row.tolist() if i is not None]
        if items:
            p = np.array([max(popularity.get(i, 1.0), 1.0) / max(n_users, 1) for i in items])
            out[q] = float(np.mean(-np.log2(np.clip(p, 1e-12, 1.0))))
    return out


def popularity_bias(topk: np.ndarray, popularity: dict[str, float]) -> np.ndarray:
    """Per query: average recommendation popularity (ARP) = mean training count of the items."""
    out = np.zeros(len(topk))
    for q, row in enumerate(topk):
        items = [i for i in row.tolist() if i is not None]
        if items:
            out[q] = float(np.mean([popularity.get(i, 0.0) for i in items]))
    return out


def intra_list_diversity(
    topk: np.ndarray, embeddings: dict[str, np.ndarray] | tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Per query: mean pairwise cosine distance between the recommended items' embeddings.

    embeddings: (item_ids (N,), vectors (N, D)); items without a vector are skipped.
    """
    ids, vecs = embeddings
    index = pd.Index(np.asarray(ids, dtype=object))
    v = np.asarray(vecs, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # (N, D)
    out = np.full(len(topk), np.nan)
    rows = index.get_indexer(np.asarray(topk, dtype=object).reshape(-1)).reshape(topk.shape)
    for q in range(len(topk)):
        r = rows[q][rows[q] >= 0]
        if len(r) >= 2:
            e = v[r]  # (k, D)
            sim = e @ e.T  # (k, k)
            k = len(r)
            out[q] = float((1.0 - sim)[~np.eye(k, dtype=bool)].mean())
    return out


def beyond_accuracy(
    topk: np.ndarray | None, train: TrainData, vectors: tuple[np.ndarray, np.ndarray] | None
) -> dict[str, float]:
    """Coverage / novelty / popularity bias (/ diversity, given item vectors) of (Q, K) top-k lists;
    popularity = users per item in ``train.sequences``."""
    if topk is None:
        return {}
    k = topk.shape[1]
    counts: dict[str, float] = {}
    for items in train.sequences["items"]:
        for i in set(items):
            counts[i] = counts.get(i, 0.0) + 1.0
    out = {f"coverage@{k}": catalog_coverage(topk, len(train.catalog))}
    if counts:
        out[f"novelty@{k}"] = float(np.mean(novelty(topk, counts, len(train.sequences))))
        out[f"popularity_bias@{k}"] = float(np.mean(popularity_bias(topk, counts)))
    if vectors is not None:
        out[f"diversity@{k}"] = float(np.nanmean(intra_list_diversity(topk, vectors)))
    return out
