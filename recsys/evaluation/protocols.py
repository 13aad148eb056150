"""Evaluation protocols: which queries, which targets, which items get ranked.

An :class:`EvalSet` holds, per query, the history the scorer sees, the relevant target items
(optionally graded), and either a candidate matrix (sampled / file protocols) or nothing (full
ranking over ``catalog``, minus each query's ``exclude`` items). Builders:

- :func:`leave_one_out` — last item = test target, the one before = validation target (SASRec /
  RecBole convention; users with fewer than ``min_length`` items only train).
- :func:`time_split` — a global time cutoff: everything a user did after it is the target set.
- :func:`sample_negatives` — N random negatives per query, fixed by ``seed`` and the query id
  (so a query's candidates never depend on which other queries are evaluated).
- :func:`with_candidates` — candidate lists shipped with a data set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd


@dataclass
class EvalSet:
    """Queries to rank. Lists are aligned with ``query_ids`` (Q queries)."""

    name: str
    query_ids: np.ndarray  # (Q,) object: user or query ids
    histories: list[list[str]]  # what the scorer sees (time-ordered item ids)
    targets: list[list[str]]  # relevant items of each query
    catalog: np.ndarray  # (N,) object: every rankable item id
    gains: list[list[float]] | None = None  # graded relevance per target (None = all 1)
    texts: list[str] | None = None  # query text (search / matching)
    candidates: np.ndarray | None = None  # (Q, C) object incl. targets; None = full ranking
    exclude: list[list[str]] | None = None  # full ranking: items removed per query (seen items)
    segments: dict[str, np.ndarray] = field(default_factory=dict)  # per-query columns for slicing

    def __post_init__(self) -> None:
        self.query_ids = np.asarray(self.query_ids, dtype=object)
        self.catalog = np.asarray(self.catalog, dtype=object)
        n = len(self.query_ids)
        for name in ("histories", "targets", "gains", "texts", "exclude"):
            val = getattr(self, name)
            if val is not None and len(val) != n:
                raise ValueError(f"EvalSet {self.name!r}: {name} has {len(val)} rows, query_ids has {n}")
        if self.candidates is not None and len(self.candidates) != n:
            raise ValueError(
                f"EvalSet {self.name!r}: candidates has {len(self.candidates)} rows, expected {n}"
            )

    def __len__(self) -> int:
        return len(self.query_ids)

    @property
    def protocol(self) -> str:
        return "full" if self.candidates is None else f"sampled({self.candidates.shape[1]} candidates)"

    def subset(self, idx: np.ndarray | list[int]) -> EvalSet:
        """The queries at positions ``idx`` (for sharding, k-fold and slicing)."""
        idx = np.asarray(idx, dtype=np.int64)

        def pick(v: Any) -> Any:  # a per-query list (or None) -> its rows at idx
            return None if v is None else [v[i] for i in idx]

        return replace(
            self,
            query_ids=self.query_ids[idx],
            histories=pick(self.histories),
            targets=pick(self.targets),
            gains=pick(self.gains),
            texts=pick(self.texts),
            exclude=pick(self.exclude),
            candidates=None if self.candidates is None else self.candidates[idx],
            segments={k: np.asarray(v)[idx] for k, v in self.segments.items()},
        )

    def head(self, n: int) -> EvalSet:
        return self.subset(np.arange(min(n, len(self))))


def _activity_segment(histories: list[list[str]]) -> np.ndarray:
    lens = np.array([len(h) for h in histories])
    bins = np.array([0, 5, 10, 20, 50])
    labels = np.array(["<5", "5-9", "10-19", "20-49", "50+"], dtype=object)
    return labels[np.searchsorted(bins, lens, side="right") - 1] if len(lens) else labels[:0]


def _sequences_frame(sequences: pd.DataFrame | dict[str, list[str]]) -> pd.DataFrame:
    if isinstance(sequences, dict):
        return pd.DataFrame({"user_id": list(sequences), "items": list(sequences.values())})
    missing = {"user_id", "items"} - set(sequences.columns)
    if missing:
        raise ValueError(
            f"sequences table lacks column(s) {sorted(missing)}; expected the canonical sequences "
            "table (user_id, items: time-ordered list of item ids) written by the features job"
        )
    return sequences


@dataclass
class Split:
    """A train part (sequences the models fit on) and the validation / test query sets."""

    train: pd.DataFrame  # user_id, items (time-ordered)
    valid: EvalSet
    test: EvalSet


def leave_one_out(
    sequences: pd.DataFrame | dict[str, list[str]],
    *,
    min_length: int = 3,
    catalog: np.ndarray | None = None,
    name: str = "leave_one_out",
) -> Split:
    """Split time-ordered sequences: train = items[:-2], valid target = items[-2], test = items[-1].

    The test history includes the validation item (the standard SASRec / RecBole protocol).
    Users shorter than ``min_length`` (>= 3) keep all their items in train and are not evaluated.
    """
    if min_length < 3:
        raise ValueError("leave_one_out: min_length must be >= 3 (one train, one valid, one test item)")
    df = _sequences_frame(sequences)
    items = [list(map(str, s)) for s in df["items"]]
    users = df["user_id"].astype(str).to_numpy(dtype=object)
    long = np.array([len(s) >= min_length for s in items], dtype=bool)
    train_items = [s[:-2] if ok else s for s, ok in zip(items, long)]
    cat = (
        np.asarray(catalog, dtype=object)
        if catalog is not None
        else np.array(sorted({i for s in items for i in s}), dtype=object)
    )
    ev = [s for s, ok in zip(items, long) if ok]
    q = users[long]

    def make(split: str, hist: list[list[str]], tgt: list[list[str]]) -> EvalSet:
        return EvalSet(
            name=f"{name}/{split}",
            query_ids=q,
            histories=hist,
            targets=tgt,
            catalog=cat,
            exclude=[list(h) for h in hist],
            segments={"activity": _activity_segment(hist)},
        )

    return Split(
        train=pd.DataFrame({"user_id": users, "items": train_items}),
        valid=make("valid", [s[:-2] for s in ev], [[s[-2]] for s in ev]),
        test=make("test", [s[:-1] for s in ev], [[s[-1]] for s in ev]),
    )


def time_split(
    events: pd.DataFrame,
    *,
    test_start: str | pd.Timestamp,
    valid_start: str | pd.Timestamp | None = None,
    only_new_items: bool = False,
    name: str = "time_split",
) -> Split:
    """Global temporal split of an events table (user_id, item_id, timestamp).

    train = events before ``valid_start`` (or ``test_start``); a query per user active both before
    and after a cutoff; its targets = the distinct items after the cutoff (within the split window),
    graded by how often they occur. ``only_new_items`` drops targets the user had already seen.
    """
    need = {"user_id", "item_id", "timestamp"} - set(events.columns)
    if need:
        raise ValueError(f"time_split needs columns user_id, item_id, timestamp; missing {sorted(need)}")
    ev = events[["user_id", "item_id", "timestamp"]].copy()
    ev["user_id"], ev["item_id"] = ev["user_id"].astype(str), ev["item_id"].astype(str)
    ts = pd.to_datetime(ev["timestamp"], utc=True)
    t_test = (
        pd.Timestamp(test_start, tz="UTC")
        if pd.Timestamp(test_start).tzinfo is None
        else pd.Timestamp(test_start)
    )
    t_valid = (
        t_test
        if valid_start is None
        else (
            pd.Timestamp(valid_start, tz="UTC")
            if pd.Timestamp(valid_start).tzinfo is None
            else pd.Timestamp(valid_start)
        )
    )
    if t_valid > t_test:
        raise ValueError("time_split: valid_start must be <= test_start")
    ev = ev.assign(timestamp=ts).sort_values(["user_id", "timestamp"], kind="stable")
    catalog = np.array(sorted(ev["item_id"].unique()), dtype=object)

    def seqs(frame: pd.DataFrame) -> pd.Series:
        return frame.groupby("user_id", sort=True)["item_id"].agg(list)

    def make(split: str, before: pd.DataFrame, window: pd.DataFrame) -> EvalSet:
        hist = seqs(before)
        users = [u for u in seqs(window).index if u in hist.index]
        targets, gains = [], []
        win = window[window["user_id"].isin(users)]
        for u, grp in win.groupby("user_id", sort=True):
            counts = grp["item_id"].value_counts(sort=False)
            if only_new_items:
                counts = counts[~counts.index.isin(set(hist[u]))]
            targets.append(list(counts.index))
            gains.append([float(c) for c in counts.to_numpy()])
        keep = [i for i, t in enumerate(targets) if t]
        users = [users[i] for i in keep]
        h = [hist[u] for u in users]
        return EvalSet(
            name=f"{name}/{split}",
            query_ids=np.array(users, dtype=object),
            histories=h,
            targets=[targets[i] for i in keep],
            gains=[gains[i] for i in keep],
            catalog=catalog,
            exclude=[list(x) for x in h],
            segments={"activity": _activity_segment(h)},
        )

    train_ev = ev[ev["timestamp"] < t_valid]
    valid = (
        make("valid", train_ev, ev[(ev["timestamp"] >= t_valid) & (ev["timestamp"] < t_test)])
        if valid_start is not None
        else make("valid", train_ev.iloc[:0], train_ev.iloc[:0])
    )
    test = make("test", ev[ev["timestamp"] < t_test], ev[ev["timestamp"] >= t_test])
    train = seqs(train_ev)
    return Split(
        train=pd.DataFrame({"user_id": train.index.to_numpy(dtype=object), "items": list(train)}),
        valid=valid,
        test=test,
    )


def _query_rng(seed: int, query_id: str) -> np.random.Generator:
    digest = hashlib.blake2b(str(query_id).encode(), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


def sample_negatives(
    es: EvalSet,
    n: int,
    *,
    seed: int = 0,
    exclude_history: bool = True,
    strategy: Literal["uniform", "popularity"] = "uniform",
    popularity: dict[str, float] | None = None,
) -> EvalSet:
    """Candidates = the targets + ``n`` distinct random items the query never interacted with.

    Deterministic per (seed, query id). ``strategy='popularity'`` draws proportionally to
    ``popularity`` (item -> count), as some papers do; uniform is the SASRec / LLMRank protocol.
    Each row is shuffled (seeded): a target's column carries no information, so a scorer or a
    fusion that breaks ties by position cannot find it.
    """
    cat = es.catalog
    if n < 1:
        raise ValueError("sample_negatives: n must be >= 1")
    index = pd.Index(cat)
    p = None
    if strategy == "popularity":
        if popularity is None:
            raise ValueError("sample_negatives(strategy='popularity') needs popularity={item: count}")
        w = np.array([popularity.get(i, 0.0) for i in cat], dtype=np.float64) + 1e-12
        p = w / w.sum()
    n_t = max((len(t) for t in es.targets), default=1)
    rows = np.empty((len(es), n_t + n), dtype=object)
    for q in range(len(es)):
        banned = set(es.targets[q]) | (set(es.histories[q]) if exclude_history else set())
        banned_rows = index.get_indexer(list(banned))
        free = len(cat) - int((banned_rows >= 0).sum())
        if free < n:
            raise ValueError(
                f"query {es.query_ids[q]!r}: only {free} items are left to sample {n} negatives from; "
                "lower protocol.n_negatives or set exclude_history: false"
            )
        rng = _query_rng(seed, es.query_ids[q])
        picked: list[int] = []
        seen = set(banned_rows[banned_rows >= 0].tolist())
        while len(picked) < n:
            draw = rng.choice(len(cat), size=2 * (n - len(picked)) + 8, p=p)
            for d in draw.tolist():
                if d not in seen:
                    seen.add(d)
                    picked.append(d)
                    if len(picked) == n:
                        break
        row = list(es.targets[q]) + cat[picked].tolist()
        rows[q] = [row[i] for i in rng.permutation(len(row))] + [None] * (n_t - len(es.targets[q]))
    return replace(es, candidates=rows, name=f"{es.name}+{n}neg")


def with_candidates(es: EvalSet, candidates: dict[str, list[str]], *, add_targets: bool = True) -> EvalSet:
    """Use candidate lists shipped with a data set (query id -> item ids). Queries without a list are
    dropped. ``add_targets`` puts a missing target into its list (else it counts as not retrieved)."""
    keep = [i for i, q in enumerate(es.query_ids) if str(q) in candidates]
    if not keep:
        raise ValueError(
            "with_candidates: no query id of the eval set has a candidate list; check the id mapping"
        )
    sub = es.subset(keep)
    lists = []
    for q, tgt in zip(sub.query_ids, sub.targets):
        c = [str(x) for x in candidates[str(q)]]
        if add_targets:
            c = [t for t in tgt if t not in set(c)] + c
            c = [c[i] for i in _query_rng(0, q).permutation(len(c))]  # no position leak
        lists.append(c)
    width = max(len(c) for c in lists)
    rows = np.full((len(lists), width), None, dtype=object)
    for i, c in enumerate(lists):
        rows[i, : len(c)] = c
    return replace(sub, candidates=rows, name=f"{es.name}+file")
