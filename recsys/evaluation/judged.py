"""Judged queries from a relevance-judgment file (Home Depot's ``id, product_uid, search_term, relevance``
or any CSV / Parquet with ``query, item_id, relevance`` after a column mapping), checked against the
served catalog and split by query.

Every row is accounted for in a :class:`JudgmentsReport`: ``rows = kept + sum(skipped)``; a row is
skipped only for a counted reason (empty / too-long / punctuation-only query, relevance that is not a
number or lies outside ``[min_relevance, max_relevance]``, a product missing from the catalog, a
duplicate (query, product) pair). Lines that are not valid UTF-8 are decoded as Latin-1 and counted.

The split is by query, never by row: a query's bucket is a hash of its normalised text
(:func:`normalize_query`: NFKC, lower case, whitespace collapsed), so "Toilet  Seat" and "toilet seat"
are one query in one split, and the split of a query never depends on which other queries exist.
"""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SPLITS = ("train", "valid", "test")
_WORD = re.compile(r"\w", re.UNICODE)


@dataclass(frozen=True)
class JudgedQuery:
    query_id: str
    query: str
    user_id: str | None
    country: str | None
    relevance: dict[str, float]  # item_id -> graded relevance (as judged)


@dataclass(frozen=True)
class JudgmentsSpec:
    """How a judgments file is read, checked and split (plain values from the evaluate config)."""

    columns: dict[str, str] = field(default_factory=dict)  # source column -> query / item_id / relevance
    split: str = "all"  # train / valid / test / all
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)  # train, valid, test
    salt: str = "recsys-judged"
    min_relevance: float | None = None  # None: no range check
    max_relevance: float | None = None
    max_query_chars: int = 200


@dataclass
class JudgmentsReport:
    """Where every row of the judgments file went (``rows == kept + sum(skipped.values())``)."""

    rows: int = 0
    kept: int = 0
    latin1_lines: int = 0  # lines decoded as Latin-1 (not valid UTF-8); kept
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few offending values
    queries: dict[str, int] = field(default_factory=dict)  # split -> distinct normalised queries
    numbers_only_queries: int = 0  # kept: "2x4", "1/2" are real product searches

    def skip(self, reason: str, values: Iterable[Any]) -> None:
        vals = [str(v) for v in values]
        if not vals:
            return
        self.skipped[reason] = self.skipped.get(reason, 0) + len(vals)
        self.examples.setdefault(reason, []).extend(vals[: max(0, 5 - len(self.examples.get(reason, [])))])

    def reconciles(self) -> bool:
        return self.rows == self.kept + sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "kept": self.kept,
            "skipped": dict(self.skipped),
            "skipped_examples": {k: v for k, v in self.examples.items() if v},
            "latin1_lines": self.latin1_lines,
            "numbers_only_queries": self.numbers_only_queries,
            "queries_per_split": dict(self.queries),
            "reconciles": self.reconciles(),
        }


def normalize_query(q: str) -> str:
    """NFKC, lower case, whitespace collapsed: the identity of a query (dedup and split)."""
    return " ".join(unicodedata.normalize("NFKC", q).lower().split())


def query_split(normalized: str, fractions: tuple[float, float, float], salt: str) -> str:
    """``train`` / ``valid`` / ``test`` from a hash of the normalised query (deterministic, order-free)."""
    h = int.from_bytes(hashlib.blake2b(f"{salt}\x00{normalized}".encode(), digest_size=8).digest(), "big")
    u, total, edge = h / 2.0**64, sum(fractions), 0.0
    for name, share in zip(SPLITS, fractions):
        edge += share / total
        if u < edge:
            return name
    return SPLITS[-1]


def decode_lines(raw: bytes, report: JudgmentsReport) -> str:
    """UTF-8 text of ``raw``; a line that is not valid UTF-8 is decoded as Latin-1 (and counted)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    out = []
    for line in raw.splitlines(keepends=True):
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(line.decode("latin-1"))
            report.latin1_lines += 1
    return "".join(out).lstrip("\ufeff")


def read_table(path: str | Path, report: JudgmentsReport) -> pd.DataFrame:
    """All columns as strings (CSV / TSV decoded line by line, Parquet as stored)."""
    p = Path(path)
    if p.suffix.lower() in (".csv", ".tsv"):
        text = decode_lines(p.read_bytes(), report)
        sep = "\t" if p.suffix.lower() == ".tsv" else ","
        return pd.read_csv(io.StringIO(text), dtype=str, sep=sep, keep_default_na=False)
    return pd.read_parquet(p).astype({c: str for c in ("query", "item_id") if c})


def _numbers_only(q: str) -> bool:
    return bool(_WORD.search(q)) and not any(ch.isalpha() for ch in q)


def load_judged_queries(
    path: str | Path, spec: JudgmentsSpec, catalog: set[str] | None
) -> tuple[list[JudgedQuery], JudgmentsReport]:
    """Judged queries of ``spec.split`` (every split's counts are in the report), rows checked and counted.

    Columns after ``spec.columns`` renaming: ``query, item_id, relevance`` [+ ``user_id, country``].
    ``catalog``: the item ids the pipeline can return (None: not checked)."""
    report = JudgmentsReport()
    df = read_table(path, report).rename(columns=spec.columns)
    missing = sorted({"query", "item_id", "relevance"} - set(df.columns))
    if missing:
        raise ValueError(
            f"{path}: judgments need columns query, item_id, relevance (after search.columns renaming "
            f"{spec.columns}); missing {missing}; have {list(df.columns)}"
        )
    report.rows = len(df)
    df = df.assign(query=df["query"].astype(str), item_id=df["item_id"].astype(str).str.strip())
    df["norm"] = [normalize_query(q) for q in df["query"]]
    rel = pd.to_numeric(df["relevance"], errors="coerce")

    def drop(mask: pd.Series, reason: str, shown: pd.Series) -> None:
        nonlocal df, rel
        report.skip(reason, shown[mask])
        df, rel = df[~mask], rel[~mask]

    drop(df["norm"] == "", "empty_query", df["query"])
    drop(df["norm"].str.len() > spec.max_query_chars, "query_too_long", df["query"].str.slice(0, 40) + "...")
    drop(~df["norm"].map(lambda q: bool(_WORD.search(q))), "punctuation_only_query", df["query"])
    drop(rel.isna(), "relevance_not_a_number", df["relevance"])
    if spec.min_relevance is not None or spec.max_relevance is not None:
        lo = -np.inf if spec.min_relevance is None else spec.min_relevance
        hi = np.inf if spec.max_relevance is None else spec.max_relevance
        drop((rel < lo) | (rel > hi), "relevance_out_of_range", df["relevance"])
    if catalog is not None:
        drop(~df["item_id"].isin(catalog), "product_not_in_catalog", df["item_id"])
    qkey = "query_id" if "query_id" in df.columns else "norm"  # one query: its given id, else its text
    drop(
        df.duplicated([qkey, "item_id"], keep="first"),
        "duplicate_judgment",
        df["norm"] + " | " + df["item_id"],
    )
    report.kept = len(df)
    split_of = {
        q: query_split(q, spec.fractions, spec.salt) for q in df["norm"].unique()
    }  # per query, not row
    df = df.assign(relevance=rel.astype(float), split=df["norm"].map(split_of))
    report.queries = {s: sum(v == s for v in split_of.values()) for s in SPLITS}
    report.numbers_only_queries = sum(_numbers_only(q) for q in split_of)
    chosen = df if spec.split == "all" else df[df["split"] == spec.split]
    key = "query_id" if "query_id" in chosen.columns else "norm"  # a given id wins; else the query itself
    first: dict[str, tuple[str, str | None, str | None]] = {}
    judged: dict[str, dict[str, float]] = {}
    users = chosen["user_id"] if "user_id" in chosen.columns else [None] * len(chosen)
    countries = chosen["country"] if "country" in chosen.columns else [None] * len(chosen)
    for qid, query, item, g, user, country in zip(
        chosen[key].astype(str), chosen["query"], chosen["item_id"], chosen["relevance"], users, countries
    ):
        if qid not in first:
            first[qid] = (query, _opt(user), _opt(country))
            judged[qid] = {}
        judged[qid][item] = float(g)
    out = [
        JudgedQuery(qid, first[qid][0], first[qid][1], first[qid][2], judged[qid]) for qid in sorted(first)
    ]
    return out, report


def _opt(value: Any) -> str | None:
    return (
        None if value is None or (isinstance(value, float) and np.isnan(value)) or value == "" else str(value)
    )
