"""Wiring of the inventory job: role inference on a sample, profiling every table of the inputs,
the contract (given or default) and the verdict."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs

from recsys.data.adapters import _parse, open_source, read_input, tables_of
from recsys.data.inventory import profile_table
from recsys.data.io import head
from recsys.data.readers import META, SNIFF_BYTES, WHITESPACE, decode
from recsys.data.roles import (
    SEQUENCE_LAYOUT,
    Proposal,
    infer_roles,
    propose,
    propose_sequence_lines,
    sequence_line_evidence,
)

if TYPE_CHECKING:
    from recsys.config.base import InputConfig
    from recsys.data.config import QualityRule

# Reader options the source resolved (given, defaulted, or sniffed by the reader) that the proposal
# states explicitly, so the clean job reads the file the way the inventory did.
READER_KEYS = ("delimiter", "delimiter_regex", "fixed_width", "header", "column_names", "encoding", "comment")


def infer_adapter(input_cfg: InputConfig, sample_rows: int) -> Proposal:
    """Propose an input section for an unknown file from a bounded sample of its raw rows."""
    seq = sequence_proposal(input_cfg, sample_rows)
    if seq is not None:
        return seq
    src = open_source(input_cfg)
    rows = src.read_raw().limit(sample_rows).take_all()  # bounded sample: the only rows on the driver
    df = pa.Table.from_pylist(rows).to_pandas() if rows else None
    if df is None or df.empty:
        raise ValueError(f"input.path {input_cfg.path!r} has no rows to infer roles from")
    df = df[[c for c in df.columns if c not in META]]
    roles = infer_roles(df, input_cfg.null_values)
    base = input_cfg.model_dump(exclude_defaults=True, exclude={"columns"})
    base["format"] = src.fmt
    # open_source resolved what the config left open (sniffed delimiter / whitespace / fixed widths /
    # header): the proposal states it, so the clean job splits the file exactly as this sample was
    base.update(reader_options(src.spec, base, type(input_cfg)) if src.fmt in ("csv", "tsv", "text") else {})
    return propose(roles, df, base)


def sequence_proposal(input_cfg: InputConfig, sample_rows: int) -> Proposal | None:
    """``user item1 item2 ...`` lines (roles.sequence_line_evidence on the first file's head): the input
    read with max_fields 2 and ``item_list``, from that head in-process (bounded, no Ray). None when the
    config already says how to read the file or the file is not such lines."""
    given = ("preset", "columns", "column_names", "item_list", "max_fields", "delimiter_regex", "fixed_width")
    if any(getattr(input_cfg, k) for k in given) or input_cfg.delimiter not in (None, WHITESPACE):
        return None
    src = open_source(input_cfg)
    if src.fmt not in ("csv", "tsv", "text") or src.spec.get("delimiter") != WHITESPACE:
        return None
    fs = src.filesystem or pafs.LocalFileSystem()
    with fs.open_input_stream(src.files[0]) as f:
        head = f.read(SNIFF_BYTES)
    if len(head) == SNIFF_BYTES and b"\n" in head:
        head = head[: head.rindex(b"\n") + 1]  # whole lines only
    evidence = sequence_line_evidence(decode(head, src.spec.get("encoding") or "utf-8")[0])
    if evidence is None:
        return None
    cls = type(input_cfg)
    base = {
        **input_cfg.model_dump(exclude_defaults=True, exclude={"columns"}),
        "format": src.fmt,
        **SEQUENCE_LAYOUT,
        "item_list": "items",
        "timestamp_unit": "s",  # ordinal seconds (their magnitude would say so too)
    }
    seq = open_source(cls.model_validate({**base, "columns": {"user": "user_id"}}))
    raw = _parse(pa.table({"bytes": [head], "path": [src.files[0]]}), seq.fmt, seq.spec, None)
    df = raw.slice(0, sample_rows).to_pandas()
    df = df[[c for c in df.columns if c not in META]]
    return propose_sequence_lines(df, base, evidence, input_cfg.null_values)


def reader_options(spec: dict[str, Any], base: dict[str, Any], cls: type[InputConfig]) -> dict[str, Any]:
    """The reader options of ``spec`` that ``base`` lacks and differ from the defaults (valid together)."""
    defaults = {k: cls.model_fields[k].default for k in READER_KEYS}
    extra = {
        k: spec[k]
        for k in READER_KEYS
        if k not in base and spec.get(k) is not None and spec[k] != defaults[k]
    }
    splitters = ("delimiter", "delimiter_regex", "fixed_width")
    given = any(k in base for k in splitters)
    found = [k for k in splitters if k in extra]
    # one way to split: the given one wins, else the first the source resolved
    return {k: v for k, v in extra.items() if k not in splitters or (not given and k == found[0])}


def clean_yaml(adapter_text: str, path: Path, inventory_dir: Path) -> str:
    """A ready-to-run clean config (``clean.yaml`` beside ``adapter.yaml``): the proposal, comments
    included, writing to ``runs/clean/<name of the inventory's output dir>``."""
    return (
        f"# recsys run clean --config {path}\n"
        "# Made by `recsys run inventory` from its proposal (adapter.yaml): review the comments below first;\n"
        "# clean fails, and says why, when more rows than clean's max_quarantine_fraction are quarantined.\n"
        f"output_dir: runs/clean/{inventory_dir.name}\n" + adapter_text
    )


def default_rules(profiles: dict[str, Any], rules: tuple[QualityRule, ...]) -> list[QualityRule]:
    """The default contract's rules whose table and column were profiled."""
    return [
        r
        for r in rules
        if r.table in profiles and (r.column is None or r.column in profiles[r.table]["columns"])
    ]


def verdict(proposal: Proposal | None, contract: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """'review needed' with its reasons (low-confidence or unfilled roles, warnings, violated warn
    rules of the contract), else 'ok'. Violated error rules fail the job instead."""
    reasons = list(proposal.review) if proposal else []
    reasons += [
        f"contract warning: {r['label']} (got {r['value']})"
        for r in contract
        if not r["ok"] and r.get("severity") == "warn"
    ]
    return ("review needed" if reasons else "ok"), reasons


def profile_inputs(
    inputs: list[InputConfig], top_k: int, bins: int, now: dt.datetime, limit: int | None
) -> dict[str, Any]:
    datasets: dict[str, Any] = {}
    tokens: dict[str, tuple[str, ...]] = {}
    for cfg in inputs:
        for t in tables_of(cfg):
            # _error stays: the profile counts conversion errors per column (parse_rate)
            ds = read_input(cfg, t, on_error="mark", keep_meta=True).drop_columns(["source_file", "_raw"])
            name = t if t not in datasets else f"{t}_{len(datasets)}"
            datasets[name] = head(ds, limit) if limit else ds
            tokens[name] = tuple(cfg.null_values)
    # referential integrity: ids of the (small) dimension tables, checked inside the event tasks
    refs: dict[str, tuple[str, pa.Array]] = {}
    for dim, key in (("items", "item_id"), ("users", "user_id")):
        if dim in datasets and "events" in datasets:
            ids = pa.array(
                sorted(
                    {r[key] for r in datasets[dim].select_columns([key]).take_all() if r[key] is not None}
                ),
                pa.string(),
            )
            refs[f"events.{key} -> {dim}"] = (key, ids)
    return {
        name: profile_table(ds, name, top_k, bins, now, refs if name == "events" else {}, tokens[name])
        for name, ds in datasets.items()
    }
