"""On-disk layout of the data jobs' outputs (docs/DATA.md), for the stages that read them.

from recsys.data.layout import FEATURES, table_path, read_table
seqs = read_table("runs/features/local", FEATURES.loo_train)       # Ray Dataset
items = read_table("runs/features/local", "items").to_pandas()     # small tables: pandas
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING

import pyarrow.dataset as pads
import pyarrow.fs as pafs

from recsys.data.io import filesystem, join

if TYPE_CHECKING:
    import pandas as pd
    from ray.data import Dataset

CLEAN = SimpleNamespace(
    events="events",
    items="items",
    users="users",
    pairs="pairs",
    candidates="candidates",
    quarantine="quarantine",
    duplicates="duplicates",
)
FEATURES = SimpleNamespace(
    items="items",
    sequences="sequences",
    loo_train="splits/loo/train",
    loo_valid="splits/loo/valid",
    loo_test="splits/loo/test",
    time_train="splits/time/train",
    time_valid="splits/time/valid",
    time_test="splits/time/test",
    time_valid_targets="splits/time/valid_targets",
    time_test_targets="splits/time/test_targets",
    pairs="pairs",
    candidates="candidates",
    queries="query_features",
    user_features="user_features",
    item_features="item_features",
    text_features="text_features",
    manifest="feature_manifest.json",
    selection="feature_selection.json",
)


def table_path(root: str, name: str) -> str:
    """Directory of table ``name`` (a FEATURES/CLEAN value) under a job's output dir (path or URI)."""
    return join(str(root), name)


def exists(root: str, name: str) -> bool:
    fs, inner = filesystem(table_path(root, name))
    return bool(fs.get_file_info(inner).type != pafs.FileType.NotFound)


def read_table(root: str, name: str, columns: list[str] | None = None) -> Dataset:
    """A table of a clean/features output dir as a Ray Dataset (Parquet, any number of files)."""
    import ray  # lazy: Ray costs seconds of import; the path helpers here are used without it

    path = table_path(root, name)
    if not exists(root, name):
        raise FileNotFoundError(f"{path} does not exist; run the job that writes it (see docs/DATA.md)")
    return ray.data.read_parquet(path, columns=columns)


def read_pandas(root: str, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A small table (items, candidates, a split) straight into pandas, without Ray."""
    fs, inner = filesystem(table_path(root, name))
    df: pd.DataFrame = (
        pads.dataset(inner, filesystem=fs, format="parquet").to_table(columns=columns).to_pandas()
    )
    return df
