"""Adapters: ``InputConfig`` -> Ray Dataset of a canonical table (docs/DATA.md).

    from recsys.data.adapters import read_input
    events = read_input(cfg.input)                    # canonical events, typed
    items = read_input(cfg.input, "items")            # a preset's other tables
    raw = open_source(cfg.input, "events")            # raw string columns + spec (clean, inventory)

Generic readers: csv / tsv / text (delimited) / jsonl / excel are read loss-free by our parsers
inside Ray tasks (one file per task; BOM, quoted newlines, ragged rows, bad bytes handled), parquet
by ``ray.data.read_parquet``; local paths, globs and s3:// / gs:// URIs go through pyarrow.fs.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from recsys.config.base import InputConfig
from recsys.data import presets as P
from recsys.data.convert import missing_required, to_canonical
from recsys.data.io import expand_paths, infer_format
from recsys.data.readers import (
    DEFAULT_DELIMITER,
    SNIFF_BYTES,
    add_ordinal_timestamps,
    decode,
    detect_encoding,
    explode_item_list,
    needs_dialect,
    parse_files,
    resolve_dialect,
)
from recsys.data.schema import table_schema
from recsys.data.shuffle import by_key, cluster_cpus, first_per_key

if TYPE_CHECKING:
    from ray.data import Dataset

log = logging.getLogger(__name__)

SPEC_FIELDS = (
    "format",
    "columns",
    "delimiter",
    "delimiter_regex",
    "fixed_width",
    "comment",
    "header",
    "column_names",
    "encoding",
    "sheet",
    "null_values",
    "formats",
    "timestamp",
    "timestamp_format",
    "timestamp_unit",
    "timezone",
    "event_map",
    "defaults",
    "keep_extra",
    "anonymous_key",
    "max_fields",
    "item_list",
    "ordinal_timestamps",
)
SPLITTERS = ("delimiter", "delimiter_regex", "fixed_width")


class DataError(ValueError):
    """Input rows that do not convert (``on_error='raise'``); the message names the column and the fix."""


@dataclass
class Source:
    """Where one canonical table comes from: files, filesystem, plain reader/convert options."""

    table: str
    files: list[str]
    filesystem: Any
    fmt: str
    spec: dict[str, Any]  # plain values only: passed into Ray tasks
    post: str | None = None
    distinct: str | None = None
    aggregate: dict[str, str] | None = None

    def count_rows(self) -> int:
        """Rows of the source, counted independently of the job's processing (Parquet: from the footers)."""
        if self.fmt == "parquet":
            return int(pads.dataset(self.files, filesystem=self.filesystem, format="parquet").count_rows())
        return int(self.read_raw().count())

    def read_raw(self) -> Dataset:
        """Ray Dataset of raw string columns (+ source_file, source_row, _error, _raw) before conversion."""
        import ray  # lazy: Ray costs seconds of import; readers and converters here also run without it

        if self.fmt == "parquet":
            with _read_unit_bytes(_parquet_read_unit(self.files, self.filesystem)):
                ds = ray.data.read_parquet(self.files, filesystem=self.filesystem)
            if self.spec.get("item_list"):  # one event per item, in the read tasks (counts see events)
                ds = ds.map_batches(_explode_parquet, batch_format="pyarrow", fn_kwargs={"opts": self.spec})
            return ds
        ds = ray.data.read_binary_files(self.files, include_paths=True, filesystem=self.filesystem)
        return ds.map_batches(
            _parse,
            batch_format="pyarrow",
            batch_size=1,
            fn_kwargs={"fmt": self.fmt, "opts": self.spec, "post": self.post},
        )


def _parquet_read_unit(files: list[str], filesystem: Any) -> int:
    """Bytes of one Parquet read task: the input split over ~2 tasks per CPU, within [16, 128] MiB.

    Ray Data 2.60 bin-packs row groups into 128 MiB read tasks whatever the cluster: 200 MB of Parquet on
    2 CPUs became 3 tasks of very uneven length, so one CPU idled through the read.
    """
    fs = filesystem or pafs.LocalFileSystem()
    total = sum(i.size or 0 for i in fs.get_file_info(files))
    return int(min(128 * 2**20, max(16 * 2**20, total // (2 * cluster_cpus()))))


class _read_unit_bytes:
    """Ray reads the read-task size from the environment when it plans a read (driver side)."""

    VAR = "RAY_DATA_PARQUET_BIN_PACKING_BYTES"

    def __init__(self, n: int):
        self.n = n
        self.old: str | None = None

    def __enter__(self) -> None:
        self.old = os.environ.get(self.VAR)
        if self.old is None:  # an explicit setting wins
            os.environ[self.VAR] = str(self.n)

    def __exit__(self, *exc: object) -> None:
        if self.old is None:
            os.environ.pop(self.VAR, None)


def _parse(batch: pa.Table, fmt: str, opts: dict[str, Any], post: str | None) -> pa.Table:
    """One read task: parse, then (``item_list``) one row per item, then a preset's transform; all before
    conversion, so every count (clean's rows_in) sees events and each event keeps its line."""
    table = parse_files(batch, fmt, opts)
    if opts.get("item_list"):
        table = explode_item_list(table, opts)
    elif opts.get("ordinal_timestamps"):
        table = add_ordinal_timestamps(table, opts)
    return getattr(P, post)(table) if post else table


def _explode_parquet(batch: pa.Table, opts: dict[str, Any]) -> pa.Table:
    """``item_list`` of a Parquet file: a list column or a string of ids; META the reader lacks is null."""
    col = opts["item_list"]
    if col in batch.column_names and pa.types.is_list(batch[col].type):
        joined = pc.binary_join(batch[col].cast(pa.list_(pa.string())), " ")
        batch = batch.set_column(batch.schema.get_field_index(col), col, joined)
    for m, typ in (("source_file", pa.string()), ("source_row", pa.int64()), ("_error", pa.string())):
        if m not in batch.column_names:
            batch = batch.append_column(m, pa.nulls(batch.num_rows, typ))
    if "_raw" not in batch.column_names:
        batch = batch.append_column("_raw", pa.nulls(batch.num_rows, pa.string()))
    return explode_item_list(batch, opts)


def tables_of(cfg: InputConfig) -> list[str]:
    """Canonical tables this input provides (a preset's tables, or ``cfg.table``)."""
    return list(P.get_preset(cfg.preset).tables) if cfg.preset else [cfg.table]


def open_source(cfg: InputConfig, table: str | None = None) -> Source:
    """Resolve files and options of ``table`` (default: ``cfg.table``, or the preset's first table)."""
    spec: dict[str, Any] = {f: _plain(getattr(cfg, f)) for f in SPEC_FIELDS}
    spec["quote_char"] = '"'
    explicit = {f: _plain(getattr(cfg, f)) for f in cfg.model_fields_set if f in SPEC_FIELDS}
    source = None
    if cfg.preset:
        preset = P.get_preset(cfg.preset)
        table = table or next(iter(preset.tables))
        if table not in preset.tables:
            raise ValueError(
                f"preset {preset.name!r} has no {table!r} table; it provides {', '.join(preset.tables)}"
            )
        source = preset.tables[table]
        spec.update(source.options)
    table = table or cfg.table
    table_schema(table)
    if explicit.keys() & set(SPLITTERS):  # the job's splitter replaces the preset's
        spec.update(dict.fromkeys(SPLITTERS))
    spec.update(explicit)
    spec["table"] = table
    files, fs = expand_paths(cfg.path)
    if source is not None:
        files = _preset_files(files, cfg.path, source.files, str(cfg.preset), table)
    fmt = spec["format"] if spec["format"] != "auto" else infer_format(files)
    spec["format"] = fmt
    if fmt in DEFAULT_DELIMITER:
        spec["default_delimiter"] = DEFAULT_DELIMITER[fmt]
        spec = _sniff(files[0], fs, spec)
        if source is None:
            check_source_columns(files[0], fs, spec)
    return Source(
        table,
        files,
        fs,
        fmt,
        spec,
        source.post if source else None,
        source.distinct if source else None,
        dict(source.aggregate) if source else None,
    )


def check_source_columns(path: str, filesystem: Any, spec: dict[str, Any]) -> None:
    """The columns the mapping names (``columns``, ``timestamp`` parts, ``item_list``) exist in the first
    file as it is split: a wrong delimiter or header fails here, on the driver, naming the columns the
    file does have, instead of inside a Ray task."""
    named = set(spec.get("columns") or {})
    named |= {c for k, c in (spec.get("timestamp") or {}).items() if k != "format" and c}
    named |= {spec["item_list"]} if spec.get("item_list") else set()
    if not named:
        return
    fs = filesystem or pafs.LocalFileSystem()
    with fs.open_input_stream(path) as f:
        head = f.read(SNIFF_BYTES)
    head = head[: head.rfind(b"\n") + 1] or head  # whole lines only
    found = [
        c for c in parse_files(pa.table({"bytes": [head], "path": [path]}), spec["format"], spec).column_names
    ]
    found = [c for c in found if c not in ("source_file", "source_row", "_error", "_raw")]
    missing = sorted(named - set(found))
    if missing:
        split = next(
            (f"{k}={spec[k]!r}" for k in SPLITTERS if spec.get(k) is not None), "the sniffed delimiter"
        )
        raise ValueError(
            f"input: column(s) {missing} are not in {path} as it is split ({split}, header={spec.get('header')!r}): "
            f"it has {found[:12]}; check input.delimiter / input.header / input.column_names, or the names in "
            "input.columns / input.timestamp / input.item_list"
        )


def _plain(value: Any) -> Any:
    """Config values as plain Python (Source.spec travels into Ray tasks)."""
    return value.model_dump() if hasattr(value, "model_dump") else value


def _sniff(path: str, filesystem: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Decide a missing splitter / header='auto' / fixed_width='infer' once, from the first file's head,
    so that every file is read alike; what was decided is in ``spec['sniffed']`` and the log."""
    if not needs_dialect(spec) and spec.get("encoding") != "auto":
        return spec
    fs = filesystem or pafs.LocalFileSystem()
    with fs.open_input_stream(path) as f:
        head = f.read(SNIFF_BYTES)
    text, _ = decode(head, spec.get("encoding", "utf-8"))
    spec = resolve_dialect(text, spec)
    if spec.get("encoding") == "auto":  # decided per file; the first file's shown
        spec["sniffed"] = {**(spec.get("sniffed") or {}), "encoding": detect_encoding(head)}
    log.info("input %s: sniffed %s", path, spec.get("sniffed"))
    return spec


def _preset_files(files: list[str], path: str, globs: tuple[str, ...], preset: str, table: str) -> list[str]:
    picked = [f for f in files if any(fnmatch.fnmatch(os.path.basename(f), g) for g in globs)]
    if not picked:
        raise FileNotFoundError(
            f"preset {preset!r} reads its {table!r} table from {' / '.join(globs)} but input.path {path!r} has "
            "no such file; point input.path at the data set's folder"
        )
    return picked


def read_input(
    cfg: InputConfig,
    table: str | None = None,
    *,
    on_error: Literal["raise", "mark"] = "raise",
    keep_meta: bool = False,
) -> Dataset:
    """The canonical ``table`` of ``cfg`` as a Ray Dataset (typed as in docs/DATA.md).

    on_error='raise' fails on the first row that does not convert, naming the column, the source
    row and the fix (run the clean job to quarantine such rows); 'mark' keeps them with ``_error``.
    keep_meta keeps ``source_file``, ``_error`` and ``_raw`` next to the canonical columns.
    """
    src = open_source(cfg, table)
    ds = src.read_raw().map_batches(
        _convert,
        batch_format="pyarrow",
        fn_kwargs={"spec": src.spec, "on_error": on_error, "keep_meta": keep_meta},
    )
    if src.distinct:
        ds = by_key(ds, src.distinct, _distinct, fn_kwargs={"key": src.distinct, "how": src.aggregate or {}})
    return ds


def _distinct(table: pa.Table, key: str, how: dict[str, str]) -> pa.Table:
    table = table.filter(pc.is_valid(table[key]))
    return first_per_key(
        table.drop_columns([c for c in ("source_row",) if c in table.column_names]), key, how
    )


def _convert(batch: pa.Table, spec: dict[str, Any], on_error: str, keep_meta: bool) -> pa.Table:
    out = to_canonical(batch, spec)
    missing = missing_required(out, spec["table"])
    if missing and out.num_rows:
        raise DataError(
            f"{spec['table']} needs column(s) {missing} but the source has "
            f"{[c for c in batch.column_names if not c.startswith('_') and c not in ('source_file', 'source_row')]}; "
            f"map them with input.columns (e.g. input.columns.{{SOURCE}}={missing[0]}) or input.defaults"
        )
    if on_error == "raise":
        bad = pc.is_valid(out["_error"])
        if pc.any(bad).as_py():
            row = out.filter(bad).slice(0, 1).to_pylist()[0]
            n = pc.sum(bad).as_py()
            raise DataError(
                f"{n} row(s) of {row['source_file']} do not convert, first: source_row {row['source_row']}: "
                f"{row['_error']}; fix input.columns / formats / timestamp / timestamp_unit / null_values, or run "
                f"`recsys run clean` to quarantine bad rows"
            )
    if not keep_meta:
        out = out.drop_columns(["source_file", "_error", "_raw"])
    return out
