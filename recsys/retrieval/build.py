"""Build one index version: embed the catalog on a Ray Data actor pool, build the faiss / bm25s /
autocomplete indexes and the feature lookups, and write them with a manifest (see artifacts.py)."""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from recsys.retrieval.ann import save_index
from recsys.retrieval.artifacts import MANIFEST, IndexArtifacts, publish
from recsys.retrieval.encoder import EmbedBatch

if TYPE_CHECKING:
    import faiss

    from recsys.retrieval.autocomplete import Autocomplete
    from recsys.retrieval.lexical import BM25Index


def item_text(items: pd.DataFrame, fields: list[str]) -> list[str]:
    """Join the non-empty ``fields`` of each item with ' | ' (the text that is embedded / indexed)."""
    cols = [items[f].astype("string").fillna("") for f in fields if f in items.columns]
    if not cols:
        return cast(list[str], items["title"].astype(str).tolist())
    out = []
    for parts in zip(*cols):
        out.append(" | ".join(p for p in parts if p))
    return out


def embed_catalog(
    texts: list[str],
    model_path: str,
    max_length: int,
    batch_size: int,
    concurrency: int,
    num_cpus: float,
    num_gpus: float,
    backend: str = "auto",
) -> np.ndarray:
    """float32 [N, D] embeddings of ``texts`` computed by an actor pool (rows in input order)."""
    import ray  # lazy: Ray only for the embedding actor pool

    df = pd.DataFrame({"row": np.arange(len(texts), dtype=np.int64), "text": texts})
    # Blocks made on the driver (no repartition task: the pool may hold every CPU of a small cluster).
    blocks = max(1, min(len(texts) // max(batch_size, 1), 4 * concurrency))
    bounds = np.linspace(0, len(df), blocks + 1).astype(int)
    ds = ray.data.from_pandas([df.iloc[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo])
    out = ds.map_batches(
        EmbedBatch,
        fn_constructor_kwargs={
            "model_path": model_path,
            "max_length": max_length,
            "device": "cuda" if num_gpus > 0 else "cpu",
            "batch_size": batch_size,
            "backend": backend,
        },
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=concurrency,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )
    emb: np.ndarray | None = None
    for batch in out.iter_batches(batch_format="numpy", batch_size=4096):
        if emb is None:
            emb = np.zeros((len(texts), batch["embedding"].shape[1]), dtype=np.float32)
        emb[batch["row"]] = batch["embedding"]  # [b, D]
    if emb is None:
        raise ValueError("the catalog is empty: nothing to embed; check items.path")
    return emb


def snapshot(path: str | None) -> dict[str, Any] | None:
    """What the data looked like: files, bytes, newest mtime and a fingerprint of (name, size, mtime)."""
    if path is None:
        return None
    files = (
        sorted(glob.glob(path, recursive=True))
        if any(c in path for c in "*?[")
        else (sorted(str(p) for p in Path(path).rglob("*") if p.is_file()) if os.path.isdir(path) else [path])
    )
    stats = [(f, os.path.getsize(f), os.path.getmtime(f)) for f in files if os.path.isfile(f)]
    h = hashlib.sha256(
        json.dumps([(os.path.basename(f), s, int(m)) for f, s, m in stats]).encode()
    ).hexdigest()
    newest = max((m for _, _, m in stats), default=None)
    return {
        "path": path,
        "files": len(stats),
        "bytes": sum(s for _, s, _ in stats),
        "fingerprint": h[:16],
        "newest_mtime": dt.datetime.fromtimestamp(newest, dt.timezone.utc).isoformat() if newest else None,
    }


def write_version(
    root: Path,
    version: str,
    *,
    items: pd.DataFrame,
    embeddings: np.ndarray,
    ann: faiss.Index,
    bm25: BM25Index,
    autocomplete: Autocomplete,
    users: pd.DataFrame,
    popular: pd.DataFrame,
    manifest: dict[str, Any],
) -> Path:
    """Write every file into ``root/.<version>.tmp`` then publish it as ``root/<version>``."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{version}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    items.to_parquet(tmp / "items.parquet", index=False)
    np.save(tmp / "embeddings.npy", embeddings)
    save_index(ann, str(tmp / "ann.faiss"))
    bm25.save(tmp / "bm25")
    autocomplete.save(tmp / "autocomplete.parquet")
    users.to_parquet(tmp / "users.parquet", index=False)
    popular.to_parquet(tmp / "popular.parquet", index=False)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return publish(tmp, root, version)


def scratch_artifacts(
    items: pd.DataFrame, embeddings: np.ndarray, fields: list[str], path: Path, manifest: dict[str, Any]
) -> IndexArtifacts:
    """An index version of ``items`` built from scratch in process, no Ray (exact ANN over ``embeddings``
    [N, D], BM25 over ``fields``, autocomplete over titles by ``popularity``; no user features): the
    reference that the live catalog's incremental index (``delta.py``) is compared with."""
    from recsys.retrieval.ann import build_index
    from recsys.retrieval.autocomplete import Autocomplete
    from recsys.retrieval.lexical import BM25Index

    ids = items["item_id"].tolist()
    return IndexArtifacts(
        path=path,
        manifest={**manifest, "bm25": {"fields": fields}},
        items=items,
        embeddings=embeddings,
        ann=build_index(embeddings, "exact"),
        bm25=BM25Index.build(item_text(items, fields)),
        autocomplete=Autocomplete.from_sources(
            items["title"].tolist(), items["popularity"].fillna(0).to_numpy()
        ),
        users={},
        popular={("global", "*"): ids},
        row_of={iid: i for i, iid in enumerate(ids)},
    )


def default_version() -> str:
    return "v" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
