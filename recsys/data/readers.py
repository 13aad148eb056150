"""Loss-free raw readers: every source record becomes one row of string columns, or one malformed row.

They run inside Ray Data tasks (``read_binary_files`` -> ``map_batches``), one file per task, so the
driver never holds data. Each output row carries ``source_file`` and ``source_row`` (index of the
record in its file); a record that cannot be parsed (wrong field count, broken JSON, bytes that do
not decode) keeps its text in ``_raw`` with the cause in ``_error`` instead of being dropped.
"""

from __future__ import annotations

import csv as pycsv
import datetime as dt
import io
import json
import math
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

META = ("source_file", "source_row", "_error", "_raw")
BOM = b"\xef\xbb\xbf"


def _decode(data: bytes, encoding: str) -> tuple[str, bool]:
    """Text of a file and whether some bytes did not decode (they become U+FFFD, the rows are flagged)."""
    if data.startswith(BOM):
        data = data[len(BOM) :]
    try:
        return data.decode(encoding), False
    except UnicodeDecodeError:
        return data.decode(encoding, errors="replace"), True


def _with_meta(table: pa.Table, path: str, rows: list[int] | None = None) -> pa.Table:
    n = table.num_rows
    table = table.append_column("source_file", pa.array([path] * n, pa.string()))
    table = table.append_column("source_row", pa.array(rows if rows is not None else range(n), pa.int64()))
    table = table.append_column("_error", pa.nulls(n, pa.string()))
    return table.append_column("_raw", pa.nulls(n, pa.string()))


def _malformed(names: list[str], path: str, bad: list[tuple[int, str, str]]) -> pa.Table:
    cols: dict[str, Any] = {c: pa.nulls(len(bad), pa.string()) for c in names}
    cols["source_file"] = pa.array([path] * len(bad), pa.string())
    cols["source_row"] = pa.array([b[0] for b in bad], pa.int64())
    cols["_error"] = pa.array([b[1] for b in bad], pa.string())
    cols["_raw"] = pa.array([b[2] for b in bad], pa.string())
    return pa.table(cols)


def _flag_encoding(table: pa.Table, names: list[str]) -> pa.Table:
    """Rows holding U+FFFD (from undecodable bytes) get ``_error = invalid_encoding``."""
    bad = None
    for name in names:
        hit = pc.fill_null(pc.match_substring(table[name], "\ufffd"), False)
        bad = hit if bad is None else pc.or_(bad, hit)
    if bad is None or not pc.any(bad).as_py():
        return table
    err = pc.if_else(bad, pa.scalar("invalid_encoding"), table["_error"])
    return table.set_column(table.schema.get_field_index("_error"), "_error", err)


def parse_delimited(data: bytes, path: str, opts: dict[str, Any]) -> pa.Table:
    """A CSV/TSV/space-delimited file -> string columns (quoted newlines, BOM, ragged rows handled)."""
    text, lossy = _decode(data, opts.get("encoding", "utf-8"))
    delimiter = opts["delimiter"]
    names = opts.get("column_names")
    first_line = text.split("\n", 1)[0].rstrip("\r")
    if opts.get("header", True):
        header = next(pycsv.reader([first_line], delimiter=delimiter)) if first_line else []
        names = names or [h.strip() for h in header]
    if not names and first_line:  # header-less without names: col0, col1, ...
        names = [f"col{i}" for i in range(len(next(pycsv.reader([first_line], delimiter=delimiter))))]
    if not names:
        raise ValueError(f"{path}: no header line; set input.header=false and input.column_names=[...]")
    names = _unique(names)
    bad: list[tuple[int, str, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append(
            (
                row.number,
                f"malformed_row: expected {row.expected_columns} fields, got {row.actual_columns}",
                row.text,
            )
        )
        return "skip"

    quote = opts.get("quote_char", '"')
    table = pacsv.read_csv(
        io.BytesIO(text.encode("utf-8")),
        read_options=pacsv.ReadOptions(
            column_names=names,
            skip_rows=1 if opts.get("header", True) else 0,
            use_threads=False,
            block_size=max(1 << 20, len(data) + 1),
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter,
            quote_char=quote if quote else False,
            newlines_in_values=bool(quote),
            invalid_row_handler=on_invalid,
            ignore_empty_lines=True,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            strings_can_be_null=True,
            null_values=[""],
            quoted_strings_can_be_null=True,
        ),
    )
    table = _with_meta(table, path)
    if bad:
        table = pa.concat_tables([table, _malformed(names, path, bad).select(table.column_names)])
    return _flag_encoding(table, names) if lossy else table


def parse_jsonl(data: bytes, path: str, opts: dict[str, Any]) -> pa.Table:
    """One JSON object per line -> string columns (nested values as JSON text); broken lines kept."""
    text, lossy = _decode(data, opts.get("encoding", "utf-8"))
    records, rows, bad = [], [], []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            bad.append((i, f"malformed_row: {str(exc)[:80]}", line))
            continue
        records.append({k: _to_str(v) for k, v in obj.items()})
        rows.append(i)
    names = _unique(list(dict.fromkeys(k for r in records for k in r)))
    table = (
        pa.table({n: pa.array([r.get(n) for r in records], pa.string()) for n in names})
        if names
        else pa.table({})
    )
    table = _with_meta(table, path, rows)
    if bad:
        table = pa.concat_tables([table, _malformed(names, path, bad).select(table.column_names)])
    return _flag_encoding(table, names) if lossy else table


def parse_excel(data: bytes, path: str, opts: dict[str, Any]) -> pa.Table:
    """A sheet of an xlsx file -> string columns (datetimes as ISO 8601, integral floats without .0)."""
    sheet = opts.get("sheet")
    header = 0 if opts.get("header", True) else None
    df = pd.read_excel(
        io.BytesIO(data),
        sheet_name=0 if sheet is None else sheet,
        dtype=object,
        header=header,
        nrows=opts.get("nrows"),
    )
    names = opts.get("column_names") or [str(c).strip() for c in df.columns]
    names = _unique(names)
    cols = {
        n: pa.array([_to_str(v) for v in df.iloc[:, j].tolist()], pa.string()) for j, n in enumerate(names)
    }
    return _with_meta(pa.table(cols), path)


def _to_str(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    text = str(value)
    return None if text == "NaT" else text


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        n = n.lstrip("\ufeff") or "column"
        if n in seen:
            seen[n] += 1
            n = f"{n}_{seen[n]}"
        else:
            seen[n] = 0
        out.append(n)
    return out


PARSERS = {
    "csv": parse_delimited,
    "tsv": parse_delimited,
    "text": parse_delimited,
    "jsonl": parse_jsonl,
    "excel": parse_excel,
}


def parse_files(batch: pa.Table, fmt: str, opts: dict[str, Any]) -> pa.Table:
    """``map_batches`` body over ``read_binary_files(include_paths=True)`` rows."""
    parser = PARSERS[fmt]
    tables = [
        parser(data, path, opts) for data, path in zip(batch["bytes"].to_pylist(), batch["path"].to_pylist())
    ]
    return (
        pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({m: [] for m in META})
    )
