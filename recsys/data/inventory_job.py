"""Wiring of the inventory job: role inference on a sample, profiling every table of the inputs."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from recsys.data.adapters import open_source, read_input, tables_of
from recsys.data.inventory import profile_table
from recsys.data.io import head
from recsys.data.readers import META
from recsys.data.roles import infer_roles, propose_input

if TYPE_CHECKING:
    from recsys.config.base import InputConfig


def infer_adapter(input_cfg: InputConfig, sample_rows: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Propose an input section for an unknown file from a bounded sample of its rows."""
    src = open_source(input_cfg)
    rows = src.read_raw().limit(sample_rows).take_all()  # bounded sample: the only rows on the driver
    df = pa.Table.from_pylist(rows).to_pandas() if rows else None
    if df is None or df.empty:
        raise ValueError(f"input.path {input_cfg.path!r} has no rows to infer roles from")
    df = df[[c for c in df.columns if c not in META]]
    roles = infer_roles(df)
    base = input_cfg.model_dump(exclude_defaults=True, exclude={"columns"})
    base["format"] = src.fmt
    return propose_input(roles, df, base), [{k: v for k, v in r.items()} for r in roles]


def profile_inputs(
    inputs: list[InputConfig], top_k: int, bins: int, now: dt.datetime, limit: int | None
) -> dict[str, Any]:
    datasets: dict[str, Any] = {}
    for cfg in inputs:
        for t in tables_of(cfg):
            ds = read_input(cfg, t, on_error="mark", keep_meta=False)
            datasets[t if t not in datasets else f"{t}_{len(datasets)}"] = head(ds, limit) if limit else ds
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
        name: profile_table(ds, name, top_k, bins, now, refs if name == "events" else {})
        for name, ds in datasets.items()
    }
