"""Catalog changes (upserts and deletes of items): validation, the change files the catalog job reads,
and folding a change list into a catalog table (what the next index job builds from).

A change row has ``op`` (``upsert`` | ``delete``; default upsert), ``item_id`` and, for an upsert, the
item's full record: ``title`` (required) and optional ``category``, ``brand``, ``price`` (>= 0) and
``stock`` (>= 0; 0 = out of stock; missing = unknown, served as in stock). An upsert replaces the item
whole (fields left out become missing); a delete of an unknown item is a no-op, counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

Op = Literal["upsert", "delete"]
ITEM_FIELDS = ("title", "category", "brand", "price", "stock")
MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 1000


class ChangeError(ValueError):
    """A change row that cannot be applied: ``row`` (0-based) and ``field`` name what to fix."""

    def __init__(self, row: int, field: str, message: str):
        super().__init__(f"row {row}: {field}: {message}")
        self.row, self.field, self.message = row, field, message


@dataclass(frozen=True)
class ItemChange:
    """One validated change. ``seq``: its position in the change log (0 = not logged yet)."""

    op: Op
    item_id: str
    title: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    stock: int | None = None
    seq: int = 0

    def record(self) -> dict[str, Any]:
        """The catalog row of an upsert (``item_id`` + item fields)."""
        return {"item_id": self.item_id, **{f: getattr(self, f) for f in ITEM_FIELDS}}


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _text(row: int, field: str, v: Any, required: bool) -> str | None:
    if _missing(v) or (isinstance(v, str) and not v.strip()):
        if required:
            raise ChangeError(row, field, "required for an upsert (a non-empty string)")
        return None
    if not isinstance(v, str):
        raise ChangeError(row, field, f"must be a string, got {type(v).__name__}")
    if len(v) > MAX_TEXT_CHARS:
        raise ChangeError(row, field, f"longer than {MAX_TEXT_CHARS} characters")
    return v.strip()


def _number(row: int, field: str, v: Any, integer: bool) -> float | int | None:
    if _missing(v) or v == "":
        return None
    if isinstance(v, bool):
        raise ChangeError(row, field, "must be a number, got a boolean")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ChangeError(row, field, f"must be a number, got {v!r}") from None
    if not math.isfinite(x) or x < 0:
        raise ChangeError(row, field, f"must be a finite number >= 0, got {v!r}")
    if integer:
        if x != int(x):
            raise ChangeError(row, field, f"must be a whole number, got {v!r}")
        return int(x)
    return x


def validate_change(row: int, rec: dict[str, Any], op: str | None = None) -> ItemChange:
    """One raw row (``op`` overrides the row's own) -> an :class:`ItemChange`; ChangeError names the field."""
    unknown = sorted(set(rec) - {"op", "item_id", *ITEM_FIELDS, "seq"})
    if unknown:
        raise ChangeError(
            row, unknown[0], f"unknown field; a change has op, item_id, {', '.join(ITEM_FIELDS)}"
        )
    op = op or (rec.get("op") if not _missing(rec.get("op")) else "upsert")
    if op not in ("upsert", "delete"):
        raise ChangeError(row, "op", f"must be upsert or delete, got {op!r}")
    iid = rec.get("item_id")
    if isinstance(iid, (int, np.integer)) and not isinstance(iid, bool):
        iid = str(iid)
    if not isinstance(iid, str) or not iid.strip():
        raise ChangeError(row, "item_id", "required (a non-empty string)")
    iid = iid.strip()
    if len(iid) > MAX_ID_CHARS or any(c.isspace() or not c.isprintable() for c in iid):
        raise ChangeError(row, "item_id", f"1-{MAX_ID_CHARS} printable characters without whitespace")
    if op == "delete":
        return ItemChange("delete", iid)
    price = _number(row, "price", rec.get("price"), integer=False)
    stock = _number(row, "stock", rec.get("stock"), integer=True)
    return ItemChange(
        "upsert",
        iid,
        title=_text(row, "title", rec.get("title"), required=True),
        category=_text(row, "category", rec.get("category"), required=False),
        brand=_text(row, "brand", rec.get("brand"), required=False),
        price=None if price is None else float(price),
        stock=None if stock is None else int(stock),
    )


def read_change_file(path: str | Path) -> list[dict[str, Any]]:
    """The raw rows of a Parquet (``.parquet``) or CSV file (anything else), in file order."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"changes.path: no file {str(p)!r}; give a Parquet or CSV of catalog changes")
    if p.suffix == ".parquet":
        df = pd.read_parquet(p)
    else:
        df = pd.read_csv(p, dtype={"item_id": str, "op": str, "title": str, "category": str, "brand": str})
    df = df.astype(object).where(df.notna(), None)
    return list(df.to_dict("records"))


def validate_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[ItemChange], list[tuple[int, str, str]]]:
    """(valid changes in order, rejected ``(row, field, message)``): every input row lands in one of them."""
    ok, bad = [], []
    for i, rec in enumerate(rows):
        try:
            ok.append(validate_change(i, rec))
        except ChangeError as e:
            bad.append((e.row, e.field, e.message))
    return ok, bad


def fold(items: pd.DataFrame, changes: Iterable[ItemChange]) -> pd.DataFrame:
    """``items`` (catalog rows, ``item_id`` unique) with ``changes`` applied in order: an upsert replaces the
    item's fields and moves its row to the end (a new item is appended), a delete drops the row: the row order
    of the live catalog's visible rows, so equal scores break the same way. What a rebuild indexes; the live index
    (``recsys.retrieval.delta``) must agree."""
    rows: dict[str, dict[str, Any]] = {str(r["item_id"]): r for r in items.to_dict("records")}
    for c in changes:
        if c.op == "delete":
            rows.pop(c.item_id, None)
        else:  # moved to the end, as the live catalog appends the item's new row
            rows[c.item_id] = {**rows.pop(c.item_id, {}), **c.record()}
    out = pd.DataFrame(list(rows.values()))
    if out.empty:
        return items.iloc[0:0].copy()
    for col in ("category", "brand"):
        if col in out.columns:
            out[col] = out[col].astype("string")
    for col in ("price", "stock"):
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce")
    return out.reset_index(drop=True)
