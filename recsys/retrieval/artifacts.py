"""The versioned artifact directory that the index job writes and the Serve app loads.

Layout under the index job's ``output_dir``::

    <output_dir>/
      latest                  # text file: name of the newest complete version
      <version>/
        manifest.json         # model path + sha256, data snapshot, counts, build time, metrics
        items.parquet         # catalog rows (row i = ANN / BM25 row i) + popularity
        embeddings.npy        # float32 [N, D], L2-normalised
        ann.faiss             # faiss index (exact / ivf / hnsw)
        bm25/                 # bm25s index
        autocomplete.parquet  # phrase, weight
        users.parquet         # user lookup (recent / purchased items, country, affinity, price)
        popular.parquet       # popularity lists: global, per country, per category

A version directory is written under a temporary name and renamed when complete, then ``latest``
is replaced atomically, so a server never sees half an index.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from recsys.retrieval.ann import load_index
from recsys.retrieval.autocomplete import Autocomplete
from recsys.retrieval.lexical import BM25Index

LATEST = "latest"
MANIFEST = "manifest.json"
FILTER_FIELDS = ("category", "brand", "price_min", "price_max")


class ArtifactError(FileNotFoundError):
    """An artifact root / version that does not exist or is incomplete."""


def resolve_version(root: str | Path, version: str = LATEST) -> Path:
    """``root/<version>``; ``latest`` follows the pointer file. Raises ArtifactError naming the fix."""
    root = Path(root)
    if version == LATEST:
        pointer = root / LATEST
        if not pointer.is_file():
            raise ArtifactError(
                f"no index at {str(root)!r} (missing {LATEST!r}); run `recsys run index` with "
                f"output_dir={root} first, or point artifacts at an index output directory"
            )
        version = pointer.read_text(encoding="utf-8").strip()
    path = root / version
    if not (path / MANIFEST).is_file():
        have = sorted(p.name for p in root.iterdir() if (p / MANIFEST).is_file()) if root.is_dir() else []
        raise ArtifactError(
            f"index version {version!r} not found under {str(root)!r}; available: {have or 'none'}"
        )
    return path


def read_manifest(root: str | Path, version: str = LATEST) -> dict[str, Any]:
    """The manifest of index ``version`` under ``root`` (``latest``: the newest published)."""
    return cast(
        dict[str, Any], json.loads((resolve_version(root, version) / MANIFEST).read_text(encoding="utf-8"))
    )


def publish(tmp_dir: Path, root: Path, version: str) -> Path:
    """Move a finished build into place and point ``latest`` at it (atomic renames)."""
    final = root / version
    if final.exists():
        raise FileExistsError(
            f"index version {version!r} already exists under {root}; choose another version"
        )
    os.replace(tmp_dir, final)
    tmp_ptr = root / f".{LATEST}.tmp"
    tmp_ptr.write_text(version + "\n", encoding="utf-8")
    os.replace(tmp_ptr, root / LATEST)
    return final


@dataclass
class IndexArtifacts:
    """Everything one serving arm reads from one index version (loaded once per replica)."""

    path: Path
    manifest: dict[str, Any]
    items: pd.DataFrame
    embeddings: np.ndarray  # [N, D]; a live catalog's snapshot: a RowMatrix (indexable the same way)
    ann: Any
    bm25: Any
    autocomplete: Any
    users: dict[str, dict[str, Any]]
    popular: dict[tuple[str, str], list[str]]
    row_of: dict[str, int] = field(default_factory=dict)
    # the live catalog (recsys.retrieval.delta): rows never returned (deleted, replaced, out of stock), the
    # score subtracted from demoted rows, and the change-log position applied (None / 0: the version as built)
    hidden: np.ndarray | None = None
    demoted: np.ndarray | None = None
    catalog_seq: int = 0

    @property
    def version(self) -> str:
        return cast(str, self.manifest["version"])

    @classmethod
    def load(
        cls,
        root: str | Path,
        version: str = LATEST,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> IndexArtifacts:
        path = resolve_version(root, version)
        manifest = read_manifest(path.parent, path.name)
        items = pd.read_parquet(path / "items.parquet")
        users_df = pd.read_parquet(path / "users.parquet")
        users = {}
        for rec in users_df.to_dict("records"):
            rec["recent_items"] = list(rec["recent_items"])
            rec["purchased"] = set(rec["purchased"])
            rec["category_affinity"] = json.loads(rec["category_affinity"] or "{}")
            users[rec["user_id"]] = rec
        pop = pd.read_parquet(path / "popular.parquet")
        popular = {(t, s): list(i) for t, s, i in zip(pop["segment_type"], pop["segment"], pop["items"])}
        return cls(
            path=path,
            manifest=manifest,
            items=items,
            embeddings=np.load(path / "embeddings.npy", mmap_mode="r"),
            ann=load_index(str(path / "ann.faiss"), nprobe=nprobe, ef_search=ef_search),
            bm25=BM25Index.load(path / "bm25", len(items)),
            autocomplete=Autocomplete.load(path / "autocomplete.parquet"),
            users=users,
            popular=popular,
            row_of={iid: i for i, iid in enumerate(items["item_id"].tolist())},
        )

    # --- filters ----------------------------------------------------------------------------------
    def filter_columns(self) -> list[str]:
        """Filters this catalog supports (its items have the column)."""
        out = [f for f in ("category", "brand") if f in self.items.columns]
        return out + (["price_min", "price_max"] if "price" in self.items.columns else [])

    def allowed_rows(self, filters: dict[str, Any]) -> np.ndarray | None:
        """Row ids passing every filter (None = no filter). Unsupported filters raise KeyError(field)."""
        active = {k: v for k, v in filters.items() if v is not None}
        if not active:
            return None
        mask = np.ones(len(self.items), dtype=bool) if self.hidden is None else ~self.hidden
        for key, value in active.items():
            if key not in self.filter_columns():
                raise KeyError(key)
            if key in ("category", "brand"):
                values = {value} if isinstance(value, str) else set(value)
                col = self.items[key].astype("string").str.lower()
                mask &= col.isin({v.lower() for v in values}).fillna(False).to_numpy(dtype=bool)
            elif key == "price_min":
                mask &= (self.items["price"] >= value).fillna(False).to_numpy(dtype=bool)
            elif key == "price_max":
                mask &= (self.items["price"] <= value).fillna(False).to_numpy(dtype=bool)
        return np.flatnonzero(mask)

    def visible(self, row: int) -> bool:
        """Whether ``row`` may be returned (the live catalog hides deleted / replaced / out-of-stock rows)."""
        return self.hidden is None or not bool(self.hidden[row])

    def item_records(self, rows: list[int]) -> list[dict[str, Any]]:
        cols = [
            c
            for c in ("item_id", "title", "category", "brand", "price", "in_stock")
            if c in self.items.columns
        ]
        recs: list[dict[str, Any]] = self.items.iloc[rows][cols].to_dict("records")
        for r in recs:  # JSON-safe: NaN / NA -> None
            for k, v in list(r.items()):
                if v is pd.NA or (isinstance(v, float) and np.isnan(v)):
                    r[k] = None
        return recs

    def popular_for(self, country: str | None = None, category: str | None = None) -> list[str]:
        """Cold-start list: the country's, else the category's, else the global popularity list."""
        for key in (("country", country), ("category", category)):
            if key[1] is not None and key in self.popular:
                return self.popular[key]
        return self.popular[("global", "*")]
