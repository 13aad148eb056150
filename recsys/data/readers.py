"""Loss-free raw readers: every source record becomes one row of string columns, or one malformed row.

They run inside Ray Data tasks (``read_binary_files`` -> ``map_batches``), one file per task, so the
driver never holds data. Each output row carries ``source_file`` and ``source_row``; a record that
cannot be parsed (wrong field count, broken JSON, bytes that do not decode) keeps its text in ``_raw``
with the cause in ``_error`` instead of being dropped.

``source_row`` is the 0-based index of the record's (first) line counted from the line after the
header (from the first line of a header-less file): line number in the file = source_row + 1, plus
the header line and any comment / blank lines above it. Blank lines and ``comment`` lines are counted
in that index but yield no row; ``skipped_lines`` counts them for reports.

Delimited text (csv / tsv / text) is split by one of: a one-character ``delimiter`` (pyarrow.csv:
quotes, quoted newlines), ``delimiter='whitespace'`` (runs of spaces / tabs, ends stripped),
``delimiter_regex``, or ``fixed_width`` (widths, or 'infer' from the alignment of the first lines).
A missing splitter or ``header='auto'`` is decided by ``sniff_dialect`` from the first lines.
"""

from __future__ import annotations

import csv as pycsv
import datetime as dt
import io
import json
import math
import re
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

META = ("source_file", "source_row", "_error", "_raw")
BOM = b"\xef\xbb\xbf"
WHITESPACE = "whitespace"
DEFAULT_DELIMITER = {"csv": ",", "tsv": "\t", "text": " "}
SNIFF_LINES = 50  # lines of a file's head that sniff_dialect looks at
SNIFF_BYTES = 1 << 16
DELIMITER_CANDIDATES = (",", ";", "|", "\t", " ")
COMMENT_PREFIXES = ("#", "//")
_NUMBERISH = re.compile(
    r"^[+-]?(\d[\d.,]*|\.\d+)([eE][+-]?\d+)?$|^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|^\d{1,2}:\d\d"
)


# --------------------------------------------------------------------------- decoding
def detect_encoding(data: bytes) -> str:
    """Encoding of ``data`` by charset-normalizer (from its first 256 KiB); ASCII reads as UTF-8."""
    from charset_normalizer import from_bytes

    best = from_bytes(data[: 1 << 18]).best()
    name = best.encoding if best is not None else "utf_8"
    return "utf-8" if name in ("ascii", "utf_8") else name


def decode(data: bytes, encoding: str) -> tuple[str, bool]:
    """Text of a file and whether some bytes did not decode (they become U+FFFD, the rows are flagged)."""
    if data.startswith(BOM):
        data = data[len(BOM) :]
    if encoding == "auto":
        encoding = detect_encoding(data)
    try:
        return data.decode(encoding), False
    except UnicodeDecodeError:
        return data.decode(encoding, errors="replace"), True


# --------------------------------------------------------------------------- dialect: sniffing
def _numberish(value: str) -> bool:
    """A number, a date or a time of day (what a header line does not hold)."""
    return bool(_NUMBERISH.match(value.strip()))


def _fixed_starts(widths: list[int]) -> list[int]:
    return [int(s) for s in np.cumsum([0, *widths[:-1]])]


def _split_line(line: str, opts: dict[str, Any]) -> list[str]:
    """One line split as the reader would (sniffing and header detection only; no quoted newlines)."""
    if opts.get("fixed_width"):
        starts = _fixed_starts(list(opts["fixed_width"]))
        ends = [*starts[1:], None]
        return [line[a:b].strip() for a, b in zip(starts, ends)]
    cap = max(int(opts.get("max_fields") or 0) - 1, 0)  # re.split / str.split: 0 / -1 = no limit
    if opts.get("delimiter_regex"):
        return re.split(opts["delimiter_regex"], line, maxsplit=cap)
    delimiter = opts.get("delimiter") or ","
    if delimiter == WHITESPACE:
        return re.split(r"[ \t]+", line.strip(" \t"), maxsplit=cap) if line.strip(" \t") else []
    if cap:
        return line.split(delimiter, cap)
    quote = opts.get("quote_char", '"')
    limit = pycsv.field_size_limit(len(line) + 1)
    try:
        return next(
            pycsv.reader([line], delimiter=delimiter, quotechar=quote or None, quoting=_quoting(quote))
        )
    finally:
        pycsv.field_size_limit(limit)


def _quoting(quote: str | None) -> Literal[0, 3]:
    return pycsv.QUOTE_MINIMAL if quote else pycsv.QUOTE_NONE


def infer_widths(lines: list[str]) -> list[int]:
    """Fixed-width columns from alignment, as pandas' ``read_fwf(colspecs='infer')`` finds them: a column
    is a run of character positions that some line fills; a column runs until the next one starts (the
    last to the end of the line), so no character is ever dropped."""
    size = max((len(line) for line in lines), default=0)
    if not size:
        return []
    filled = np.zeros(size + 1, bool)
    for line in lines:
        filled[: len(line)] |= np.frombuffer(line.encode("utf-32-le"), np.uint32) > 32
    starts = [i for i in range(size) if filled[i] and (i == 0 or not filled[i - 1])]
    if not starts:
        return []
    starts[0] = 0
    return [b - a for a, b in zip(starts, [*starts[1:], size])]


def detect_header(rows: list[list[str]], null_values: tuple[str, ...] = ("", "NA", "N/A", "null")) -> bool:
    """Whether ``rows[0]`` is a header: none of its fields is a number / date while some column below
    mostly is; for all-text columns, ``csv.Sniffer.has_header``'s test (header lengths stand out)."""
    if not rows or not rows[0] or any(_numberish(v) for v in rows[0] if v.strip()):
        return False
    first, rest = rows[0], rows[1:]
    if not rest:  # a header-only file (no rows yet): distinct non-numeric names
        return len(set(first)) == len(first) and all(v.strip() for v in first)
    for j in range(len(first)):
        col = [r[j] for r in rest if len(r) > j and r[j].strip() not in null_values]
        if col and sum(map(_numberish, col)) >= 0.8 * len(col):
            return True
    buf = io.StringIO()
    pycsv.writer(buf, lineterminator="\n").writerows(rows)
    try:
        return bool(pycsv.Sniffer().has_header(buf.getvalue()))
    except pycsv.Error:
        return False


def _field_counts(lines: list[str], opts: dict[str, Any]) -> tuple[int, float]:
    """(most common field count, share of lines that have it)."""
    counts = []
    for line in lines:
        try:
            counts.append(len(_split_line(line, opts)))
        except pycsv.Error:
            counts.append(-1)
    if not counts:
        return 0, 0.0
    values, freq = np.unique(counts, return_counts=True)
    k = int(np.argmax(freq))
    return int(values[k]), float(freq[k] / len(counts))


def _sample_lines(text: str, comment: str | None) -> list[str]:
    """The first SNIFF_LINES non-blank, non-comment lines (a line cut by the sample's end dropped)."""
    text = text.lstrip("\ufeff")
    lines = text.split("\n")
    if len(lines) > 1 and not text.endswith("\n") and len(text) >= SNIFF_BYTES:
        lines = lines[:-1]
    out = []
    for line in lines:
        line = line.rstrip("\r")
        if line.strip() and not (comment and line.lstrip().startswith(comment)):
            out.append(line)
            if len(out) == SNIFF_LINES:
                break
    return out


def _filled(lines: list[str], widths: list[int]) -> float:
    """Share of (line, column) cells holding text: near 1 for a real fixed-width table, low for lines
    of varying length (sequences) whose alignment is accidental."""
    cells = [v for line in lines for v in _split_line(line, {"fixed_width": widths})]
    return sum(bool(v) for v in cells) / max(len(cells), 1)


def _decimal_commas(lines: list[str]) -> bool:
    """Every comma sits between digits inside a space-free token (1,5 / 1.234,50)."""
    return all(re.fullmatch(r"[\d.]*\d,\d+", tok) for line in lines for tok in line.split() if "," in tok)


def sniff_dialect(sample_text: str, default: str = ",", quote_char: str = '"') -> dict[str, Any]:
    """How to split a delimited file, decided from its first lines: ``{delimiter, fixed_width, header,
    comment, fields, consistency}``.

    delimiter: ``csv.Sniffer``'s choice among , ; | tab space when most lines then have the same number
    (> 1) of fields, else the most consistent candidate; space becomes 'whitespace' (runs of spaces /
    tabs) when that splits as consistently. Lines that split into no consistent count but are aligned
    in columns give ``fixed_width`` widths; nothing consistent -> ``default``. header: ``detect_header``.
    comment: '#' or '//' when some (not all) of the first lines start with it. consistency: share of
    the sampled lines that have ``fields`` fields (inventory reports it)."""
    raw = _sample_lines(sample_text, None)
    comment = next(
        (p for p in COMMENT_PREFIXES if 0 < sum(x.lstrip().startswith(p) for x in raw) < len(raw)), None
    )
    lines = _sample_lines(sample_text, comment)
    base = {"quote_char": quote_char}
    scores = {d: _field_counts(lines, {**base, "delimiter": d}) for d in (*DELIMITER_CANDIDATES, WHITESPACE)}
    order = [default, ",", "\t", ";", "|", WHITESPACE, " "]

    def pick(d: str) -> str:
        ws = scores[WHITESPACE]
        return WHITESPACE if d == " " and ws[0] > 1 and ws[1] >= scores[" "][1] else d

    choice: dict[str, Any] = {"delimiter": None, "fixed_width": None}
    try:
        sniffed = pycsv.Sniffer().sniff("\n".join(lines), delimiters="".join(DELIMITER_CANDIDATES)).delimiter
    except pycsv.Error:
        sniffed = None
    ws = scores[WHITESPACE]
    if sniffed == "," and ws[0] > scores[","][0] and ws[1] >= 0.9 and _decimal_commas(lines):
        choice["delimiter"] = WHITESPACE  # '11,77' in space-separated columns: decimal commas
    elif sniffed and scores[sniffed][0] > 1 and scores[sniffed][1] >= 0.9:
        choice["delimiter"] = pick(sniffed)
    else:
        best = max(
            (d for d in order if d in scores and scores[d][0] > 1),
            key=lambda d: (scores[d][1], -order.index(d)),
            default=None,
        )
        widths = infer_widths(lines)
        if best is not None and scores[best][1] >= 0.9:
            choice["delimiter"] = pick(best)
        elif len(widths) > 1 and _filled(lines, widths) >= 0.9:
            choice["fixed_width"] = widths
        elif best is not None and scores[best][1] >= 0.5:
            choice["delimiter"] = pick(best)
        else:
            choice["delimiter"] = default if default != " " else WHITESPACE
    split_opts = {**base, **choice}
    fields, consistency = _field_counts(lines, split_opts)
    rows = [_split_line(x, split_opts) for x in lines] if lines else []
    return {
        **choice,
        "header": detect_header(rows),
        "comment": comment,
        "fields": fields,
        "consistency": round(consistency, 3),
    }


def needs_dialect(opts: dict[str, Any]) -> bool:
    """Whether ``resolve_dialect`` has something to decide for these options."""
    split_given = any(opts.get(k) for k in ("delimiter", "delimiter_regex", "fixed_width"))
    return not split_given or opts.get("fixed_width") == "infer" or opts.get("header", True) == "auto"


def resolve_dialect(text: str, opts: dict[str, Any]) -> dict[str, Any]:
    """``opts`` with the splitter, ``fixed_width='infer'`` and ``header='auto'`` decided from ``text``'s
    head (``sniff_dialect``); what is given is kept. ``sniffed`` lists what was decided."""
    if not needs_dialect(opts):
        return opts
    opts = dict(opts)
    split_given = any(opts.get(k) for k in ("delimiter", "delimiter_regex", "fixed_width"))
    sniffed: dict[str, Any] = {}
    if not split_given:
        fmt_default = opts.get("default_delimiter") or DEFAULT_DELIMITER.get(opts.get("format", "csv"), ",")
        found = sniff_dialect(text[:SNIFF_BYTES], fmt_default, opts.get("quote_char", '"'))
        sniffed = {k: found[k] for k in ("delimiter", "fixed_width") if found[k]}
        if opts.get("comment") is None and found["comment"]:
            sniffed["comment"] = found["comment"]
        opts.update(sniffed)
    lines = _sample_lines(text[:SNIFF_BYTES], opts.get("comment"))
    if opts.get("fixed_width") == "infer":
        sniffed["fixed_width"] = opts["fixed_width"] = infer_widths(lines)
    if opts.get("header", True) == "auto":
        rows = [_split_line(x, opts) for x in lines]
        named = set(opts.get("columns") or {}) | set((opts.get("timestamp") or {}).values())
        mapped = bool(rows) and bool(named & {v.strip() for v in rows[0]})  # the config names its columns
        sniffed["header"] = opts["header"] = mapped or detect_header(rows)
    opts["sniffed"] = {**(opts.get("sniffed") or {}), **sniffed}
    return opts


# --------------------------------------------------------------------------- line layout
def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    return [x.rstrip("\r") for x in lines] if "\r" in text else lines


def _layout(lines: list[str], opts: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(blank mask, comment mask, index of the header line or None)."""
    arr = pa.array(lines, pa.string())
    blank = pc.equal(pc.utf8_trim_whitespace(arr), "").to_numpy(zero_copy_only=False)
    comment = opts.get("comment")
    if comment:
        is_comment = pc.starts_with(pc.utf8_ltrim_whitespace(arr), comment).to_numpy(zero_copy_only=False)
        is_comment &= ~blank
    else:
        is_comment = np.zeros(len(lines), bool)
    header = None
    if opts.get("header", True) is True:
        content = np.flatnonzero(~blank & ~is_comment)
        header = int(content[0]) if len(content) else None
    return blank, is_comment, header


def skipped_lines(data: bytes, opts: dict[str, Any]) -> dict[str, int]:
    """Lines of a delimited file that yield no row and are not data loss: ``{blank, comment, header}``
    (for the clean / inventory reports; a trailing newline is not a blank line)."""
    text, _ = decode(data, opts.get("encoding", "utf-8"))
    opts = resolve_dialect(text, opts)
    lines = _lines(text)
    if lines and lines[-1] == "":
        lines = lines[:-1]
    blank, comment, header = _layout(lines, opts)
    return {"blank": int(blank.sum()), "comment": int(comment.sum()), "header": int(header is not None)}


# --------------------------------------------------------------------------- tables
def _with_meta(table: pa.Table, path: str, rows: Any = None) -> pa.Table:
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


def _finish(
    good: pa.Table, rows: Any, names: list[str], path: str, bad: list[tuple[int, str, str]]
) -> pa.Table:
    table = _with_meta(good, path, rows)
    if bad:
        table = pa.concat_tables([table, _malformed(names, path, bad).select(table.column_names)])
    return table


def parse_delimited(data: bytes, path: str, opts: dict[str, Any]) -> pa.Table:
    """A csv / tsv / text file -> string columns, split as ``opts`` says (module docstring).

    opts: delimiter (one character or 'whitespace'; None = sniffed) | delimiter_regex | fixed_width
    (widths or 'infer'), comment, header (True / False / 'auto'), column_names, encoding ('auto' =
    charset-normalizer), quote_char ('' = no quoting; one-character delimiters only)."""
    text, lossy = decode(data, opts.get("encoding", "utf-8"))
    opts = resolve_dialect(text, opts)
    lines = _lines(text)
    blank, comment, header = _layout(lines, opts)
    origin = 0 if header is None else header + 1
    data_idx = np.flatnonzero(~blank & ~comment)
    data_idx = data_idx[data_idx >= origin]
    given = opts.get("column_names")
    names = list(given) if given else None
    if names is None and header is not None:
        names = [h.strip() for h in _split_line(lines[header], opts)]
    if names is None and len(data_idx):  # header-less without names: col0, col1, ...
        names = [f"col{i}" for i in range(len(_split_line(lines[int(data_idx[0])], opts)))]
    if not names:
        raise ValueError(f"{path}: no header line; set input.header=false and input.column_names=[...]")
    names = _unique(names)
    if not len(data_idx):  # a header-only file: no rows, its columns known
        table = _finish(pa.table({n: pa.array([], pa.string()) for n in names}), [], names, path, [])
    elif opts.get("fixed_width"):
        table = _read_fixed(lines, data_idx, origin, names, path, list(opts["fixed_width"]))
    elif opts.get("delimiter_regex") or opts.get("delimiter") == WHITESPACE or opts.get("max_fields"):
        table = _read_split(lines, data_idx, origin, names, path, opts)
    else:
        table = _read_csv(text, lines, data_idx, origin, names, path, opts)
    return _flag_encoding(table, names) if lossy else table


def _read_csv(
    text: str,
    lines: list[str],
    data_idx: np.ndarray,
    origin: int,
    names: list[str],
    path: str,
    opts: dict[str, Any],
) -> pa.Table:
    """pyarrow.csv over the file with every non-data line emptied (so its line numbers stay those of
    the file); records spanning lines (quoted newlines) are located with the csv module."""
    feed, skipped = _feed(text, lines, data_idx)
    bad: list[tuple[int, str, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        expected = f"expected {row.expected_columns} fields, got {row.actual_columns}"
        bad.append((row.number, f"malformed_row: {expected}", row.text))
        return "skip"

    quote = opts.get("quote_char", '"')
    table = pacsv.read_csv(
        io.BytesIO(feed.encode("utf-8")),
        read_options=pacsv.ReadOptions(
            column_names=names, use_threads=False, block_size=max(1 << 20, len(feed) + 1)
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=opts["delimiter"],
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
    # pyarrow numbers a bad row by its 1-based position among the non-empty records
    starts = data_idx
    if table.num_rows + len(bad) != len(starts):  # some record spans several lines
        starts = _record_starts(feed, opts["delimiter"], quote) + skipped
    if table.num_rows + len(bad) == len(starts):
        ok = np.ones(len(starts), bool)
        ok[[b[0] - 1 for b in bad]] = False
        rows: Any = starts[ok] - origin
        bad = [(int(starts[k - 1]) - origin, err, raw) for k, err, raw in bad]
    else:  # the two parsers disagree: number records in file order
        rows = np.arange(table.num_rows)
    return _finish(table, rows, names, path, bad)


def _feed(text: str, lines: list[str], data_idx: np.ndarray) -> tuple[str, int]:
    """(the text pyarrow reads, lines cut from its start): the file itself when every line but a first
    header is data (the common case), else the lines with each non-data line emptied."""
    n = len(lines) - (1 if lines and lines[-1] == "" else 0)
    if len(data_idx) == n and (n == 0 or data_idx[0] == 0):
        return text, 0
    if len(data_idx) == n - 1 and (n == 1 or data_idx[0] == 1):
        return (text.split("\n", 1)[1] if "\n" in text else ""), 1
    keep = np.zeros(len(lines), bool)
    keep[data_idx] = True
    return "\n".join(x if k else "" for x, k in zip(lines, keep)), 0


def _record_starts(feed: str, delimiter: str, quote: str | None) -> np.ndarray:
    """0-based line of the first line of each non-empty record (csv module, same quoting as pyarrow)."""
    reader = pycsv.reader(
        io.StringIO(feed, newline=""), delimiter=delimiter, quotechar=quote or None, quoting=_quoting(quote)
    )
    starts, line = [], 0
    limit = pycsv.field_size_limit(len(feed) + 1)  # fields as large as the file (pyarrow has no limit)
    try:
        for record in reader:
            if record:
                starts.append(line)
            line = reader.line_num
    finally:
        pycsv.field_size_limit(limit)
    return np.array(starts, np.int64)


def _read_split(
    lines: list[str], data_idx: np.ndarray, origin: int, names: list[str], path: str, opts: dict[str, Any]
) -> pa.Table:
    """Lines split on a regex, on runs of spaces / tabs, or (``max_fields``) on a one-character delimiter
    without quoting (Arrow's regex split, at most ``max_fields`` fields: the last keeps the rest of the
    line); a line with another field count than ``names`` is a malformed row."""
    arr = pa.array([lines[i] for i in data_idx], pa.string())
    cap = int(opts["max_fields"]) - 1 if opts.get("max_fields") else None
    if opts.get("delimiter_regex"):
        try:
            parts = pc.split_pattern_regex(arr, opts["delimiter_regex"], max_splits=cap)
        except pa.ArrowInvalid as exc:
            raise ValueError(
                f"input.delimiter_regex {opts['delimiter_regex']!r}: {exc}; use RE2 syntax (no look-around "
                "or back-references)"
            ) from None
    elif opts.get("delimiter") == WHITESPACE:
        parts = pc.split_pattern_regex(pc.utf8_trim(arr, " \t"), r"[ \t]+", max_splits=cap)
    else:
        parts = pc.split_pattern(arr, opts["delimiter"], max_splits=cap)
    counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    ok = counts == len(names)
    good = parts.filter(pa.array(ok))
    cols = {n: _empty_null(pc.list_element(good, j)) for j, n in enumerate(names)}
    bad = [
        (int(i) - origin, f"malformed_row: expected {len(names)} fields, got {int(c)}", lines[i])
        for i, c in zip(data_idx[~ok], counts[~ok])
    ]
    return _finish(pa.table(cols), data_idx[ok] - origin, names, path, bad)


def _read_fixed(
    lines: list[str], data_idx: np.ndarray, origin: int, names: list[str], path: str, widths: list[int]
) -> pa.Table:
    """Fixed-width columns (padding stripped); the last column takes the rest of the line, so nothing
    is dropped: wrong widths show up as values that do not convert."""
    if len(names) != len(widths):
        raise ValueError(
            f"{path}: input.fixed_width gives {len(widths)} columns but there are {len(names)} column "
            f"names {names}; give one width per column"
        )
    arr = pa.array([lines[i] for i in data_idx], pa.string())
    starts = _fixed_starts(widths)
    ends = [*starts[1:], 1 << 30]
    cols = {
        n: _empty_null(pc.utf8_trim_whitespace(pc.utf8_slice_codeunits(arr, a, b)))
        for n, a, b in zip(names, starts, ends)
    }
    return _finish(pa.table(cols), data_idx - origin, names, path, [])


def _empty_null(arr: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)


def parse_jsonl(data: bytes, path: str, opts: dict[str, Any]) -> pa.Table:
    """One JSON object per line -> string columns (nested values as JSON text); broken lines kept."""
    text, lossy = decode(data, opts.get("encoding", "utf-8"))
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
    table = _finish(table, rows, names, path, bad)
    return _flag_encoding(table, names) if lossy else table


def parse_excel(data: bytes, path: str, opts: dict[str, Any]) -> pa.Table:
    """A sheet of an xlsx file -> string columns (datetimes as ISO 8601, integral floats without .0);
    header 'auto' reads the first row as the header."""
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


# --------------------------------------------------------------------------- item lists
def ordinal_ts(users: np.ndarray) -> np.ndarray:
    """Position of each row within its user's rows (file order), as epoch-second strings."""
    out: np.ndarray = (
        pd.Series(users).groupby(users, sort=False, dropna=False).cumcount().astype(str).to_numpy()
    )
    return out


def explode(table: pa.Table, user_col: str, items: pa.ListArray) -> pa.Table:
    """One row per list element with ``user_id``, ``item_id``, an ordinal timestamp and META repeated
    (the presets' layout: every other column dropped)."""
    parent = pc.list_parent_indices(items)
    users = pc.take(table[user_col], parent)
    out = {"user_id": users, "item_id": pc.list_flatten(items)}
    out["timestamp"] = pa.array(ordinal_ts(users.to_numpy(zero_copy_only=False)), pa.string())
    for m in META:
        out[m] = pc.take(table[m], parent)
    return pa.table(out)


def explode_item_list(table: pa.Table, opts: dict[str, Any]) -> pa.Table:
    """``opts['item_list']``: the column of whitespace-separated item ids (in time order) -> one row per
    item, the column replaced by ``item_id``, every other column (META included: source_row stays the
    line) repeated; a ``timestamp`` column ordinal per user is added when none is mapped. A row with no
    item (a malformed line, an empty list) stays one row with a null item_id, so it is quarantined, not
    lost. The user is the column mapped to user_id (else ``user_id``)."""
    col = opts["item_list"]
    names = [c for c in table.column_names if c not in META]
    if col not in names:
        raise ValueError(
            f"input.item_list: column {col!r} is not in the source columns {names}; name one of them"
        )
    mapping: dict[str, str] = opts.get("columns") or {}
    if "item_id" in names:
        raise ValueError(
            f"input.item_list {col!r} becomes item_id but the source has an item_id column; rename it"
        )
    text = pc.utf8_trim_whitespace(pc.fill_null(table[col], ""))
    none = pa.scalar([None], pa.list_(pa.string()))
    items = pc.if_else(pc.equal(text, ""), none, pc.split_pattern_regex(text, r"\s+"))
    items = items.combine_chunks() if isinstance(items, pa.ChunkedArray) else items
    parent = pc.list_parent_indices(items)
    out = {c: (pc.list_flatten(items) if c == col else pc.take(table[c], parent)) for c in table.column_names}
    out["item_id"] = out.pop(col)
    ts_mapped = opts.get("timestamp") or "timestamp" in mapping.values() or "timestamp" in names
    if not ts_mapped:
        user = next((s for s, c in mapping.items() if c == "user_id"), "user_id")
        if user not in names:
            raise ValueError(
                f"input.item_list: ordinal timestamps count per user but no column is mapped to user_id; "
                f"map one with input.columns (source columns {names})"
            )
        has_item = pc.is_valid(out["item_id"]).to_numpy(zero_copy_only=False)
        users = out[user].to_numpy(zero_copy_only=False)
        ts = np.full(len(users), None, object)
        ts[has_item] = ordinal_ts(users[has_item])  # a row without an item takes no place in the order
        out["timestamp"] = pa.array(ts, pa.string())
    return pa.table({k: out[k] for k in [*(c for c in out if c not in META), *META] if k in out})


def add_ordinal_timestamps(table: pa.Table, opts: dict[str, Any]) -> pa.Table:
    """``opts['ordinal_timestamps']``: a ``timestamp`` column holding each row's position among its user's
    rows of this file (the log lists events in time order but has no time column); nothing when a
    timestamp is mapped. The user is the column mapped to user_id (else ``user_id``)."""
    mapping: dict[str, str] = opts.get("columns") or {}
    names = [c for c in table.column_names if c not in META]
    if opts.get("timestamp") or "timestamp" in mapping.values() or "timestamp" in names:
        return table
    user = next((s for s, c in mapping.items() if c == "user_id"), "user_id")
    if user not in names:
        raise ValueError(
            "input.ordinal_timestamps counts positions per user but no column is mapped to user_id; "
            f"map one with input.columns (source columns {names})"
        )
    users = table[user].to_numpy(zero_copy_only=False)
    return table.append_column("timestamp", pa.array(ordinal_ts(users), pa.string()))


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
