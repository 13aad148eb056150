"""Paths and filesystems: local paths, globs and ``s3://`` / ``gs://`` URIs through pyarrow.fs."""

from __future__ import annotations

import fnmatch
import glob
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.fs as pafs

from recsys.config.paths import is_uri

if TYPE_CHECKING:
    from ray.data import Dataset

GLOB_CHARS = "*?["


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of ``path`` and the path inside it (local paths are made absolute)."""
    if is_uri(path):
        return pafs.FileSystem.from_uri(path.split("*")[0].split("?")[0] if "://" in path else path)[
            0
        ], path.split("://", 1)[1]
    return pafs.LocalFileSystem(), os.path.abspath(path)


def expand_paths(path: str, suffixes: tuple[str, ...] = ()) -> tuple[list[str], pafs.FileSystem]:
    """Files behind a file, a directory (recursively; hidden and ``_``-prefixed files skipped) or a glob.

    Raises FileNotFoundError naming the path when nothing matches.
    """
    fs, inner = filesystem(path)
    if is_uri(path):
        files = _expand_remote(fs, inner)
    elif any(ch in path for ch in GLOB_CHARS):
        files = sorted(p for p in glob.glob(os.path.abspath(path), recursive=True) if os.path.isfile(p))
    elif os.path.isdir(inner):
        files = sorted(str(p) for p in Path(inner).rglob("*") if p.is_file() and not _hidden(p.name))
    else:
        files = [inner] if os.path.isfile(inner) else []
    if suffixes and any(not any(f.endswith(s) for s in suffixes) for f in files):
        files = [f for f in files if any(f.endswith(s) for s in suffixes)] or files
    if not files:
        raise FileNotFoundError(
            f"input.path {path!r} matches no file; give an existing file, directory, glob or URI"
        )
    return files, fs


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _expand_remote(fs: pafs.FileSystem, inner: str) -> list[str]:
    if not any(ch in inner for ch in GLOB_CHARS):
        info = fs.get_file_info(inner)
        if info.type == pafs.FileType.File:
            return [inner]
        if info.type == pafs.FileType.Directory:
            sel = pafs.FileSelector(inner, recursive=True)
            return sorted(
                i.path
                for i in fs.get_file_info(sel)
                if i.type == pafs.FileType.File and not _hidden(i.base_name)
            )
        return []
    base = inner[: min(inner.index(c) for c in GLOB_CHARS if c in inner)].rsplit("/", 1)[0]
    sel = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    return sorted(
        i.path
        for i in fs.get_file_info(sel)
        if i.type == pafs.FileType.File and fnmatch.fnmatch(i.path, inner)
    )


def infer_format(files: list[str]) -> str:
    """Reader from the first file's extension (``.csv.gz`` counts as csv)."""
    name = files[0].lower()
    for suffix in (".gz", ".bz2", ".zst", ".lz4"):
        name = name.removesuffix(suffix)
    ext = name.rsplit(".", 1)[-1] if "." in name.rsplit("/", 1)[-1] else ""
    formats = {
        "csv": "csv",
        "tsv": "tsv",
        "tab": "tsv",
        "jsonl": "jsonl",
        "json": "jsonl",
        "ndjson": "jsonl",
        "parquet": "parquet",
        "pq": "parquet",
        "xlsx": "excel",
        "xlsm": "excel",
        "xls": "excel",
        "txt": "text",
        "inter": "tsv",
        "item": "tsv",
        "user": "tsv",
    }
    if ext not in formats:
        raise ValueError(
            f"cannot tell the format of {files[0]!r} from its extension; set input.format "
            "(csv, tsv, jsonl, parquet, excel, text)"
        )
    return formats[ext]


def join(base: str, *parts: str) -> str:
    """Join path parts for local paths and URIs alike."""
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def clear_dirs(paths: list[str]) -> None:
    """Delete these output table folders if they exist. Ray's write_parquet appends files to a folder,
    so a job re-run into its fixed output_dir (the shipped configs chain that way) would otherwise
    double every table; only the job's own table folders are named, never output_dir itself."""
    for path in paths:
        fs, inner = filesystem(path)
        if fs.get_file_info(inner).type == pafs.FileType.Directory:
            fs.delete_dir(inner)


def head(ds: Dataset, n: int) -> Dataset:
    """The first ``n`` rows of Ray Dataset ``ds`` in its own order (files, then rows; a groupby's
    partitions in index order), the same rows on every run.

    ``Dataset.limit`` alone keeps whichever blocks finish first: a row cap (``max_train_rows``, the
    clean job's ``limit``) then picked different rows from run to run, so a resumed tune trial built
    a different item vocabulary than its checkpoint (size mismatch on restore). Order is preserved
    on ``ds``'s lineage (its DataContext, shared from the read onwards), only when a cap is used."""
    ds.context.execution_options.preserve_order = True
    return ds.limit(n)
