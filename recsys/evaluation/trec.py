"""Score TREC-format run files against TREC qrels (``recsys evaluate-run``).

run:   ``qid Q0 docid rank score tag`` per line (whitespace separated); ranking is by score,
       descending, ties by docid descending (trec_eval's rule); the rank column is ignored.
qrels: ``qid 0 docid relevance`` per line; relevance <= 0 = not relevant.
Queries of the qrels with at least one relevant document are evaluated; a query missing from
the run scores 0 (as ``trec_eval -c``); run queries without judgements are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from recsys.evaluation import metrics as M

DEFAULT_METRICS = [
    "ndcg@10",
    "ndcg@100",
    "recall@10",
    "recall@100",
    "precision@10",
    "hit_rate@10",
    "mrr",
    "map",
    "map@100",
]


def _lines(path: str | Path, n_fields: int, what: str) -> Iterator[tuple[int, list[str]]]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {str(p)!r}")
    for no, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) < n_fields:
            raise ValueError(
                f"{p}:{no}: a {what} line needs {n_fields} fields "
                f"({'qid Q0 docid rank score tag' if what == 'run' else 'qid 0 docid relevance'}), got {line!r}"
            )
        yield no, parts


def read_qrels(path: str | Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for no, (qid, _, doc, rel, *_) in _lines(path, 4, "qrels"):
        try:
            out.setdefault(qid, {})[doc] = float(rel)
        except ValueError:
            raise ValueError(f"{path}:{no}: relevance {rel!r} is not a number") from None
    return out


def read_run(path: str | Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for no, (qid, _, doc, _rank, score, *_) in _lines(path, 5, "run"):
        try:
            out.setdefault(qid, {})[doc] = float(score)
        except ValueError:
            raise ValueError(f"{path}:{no}: score {score!r} is not a number") from None
    return out


def target_ranks(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, float]]
) -> tuple[list[str], M.TargetRanks]:
    qids = sorted(q for q, docs in qrels.items() if any(r > 0 for r in docs.values()))
    width = max((sum(r > 0 for r in qrels[q].values()) for q in qids), default=1)
    ranks = np.full((len(qids), width), M.NOT_RANKED, dtype=np.int64)
    gains = np.zeros((len(qids), width))
    n_cand = np.zeros(len(qids), dtype=np.int64)
    for i, q in enumerate(qids):
        docs = run.get(q, {})
        order = sorted(docs, key=lambda d: (-docs[d], tuple(-ord(c) for c in d)))  # score desc, docid desc
        pos = {d: r for r, d in enumerate(order)}
        rel = [(d, g) for d, g in qrels[q].items() if g > 0]
        for j, (d, g) in enumerate(rel):
            ranks[i, j] = pos.get(d, M.NOT_RANKED)
            gains[i, j] = g
        n_cand[i] = len(order)
    return qids, M.TargetRanks(ranks=ranks, gains=gains, n_candidates=n_cand)


def evaluate_run(
    run_path: str | Path, qrels_path: str | Path, metrics: list[str] | None = None
) -> dict[str, float]:
    """Mean of each metric over the judged queries, plus ``n_queries``."""
    qids, tr = target_ranks(read_run(run_path), read_qrels(qrels_path))
    if not qids:
        raise ValueError(f"{qrels_path}: no query has a relevant document (relevance > 0)")
    values = M.compute(tr, metrics or DEFAULT_METRICS)
    out = {k: float(np.mean(v)) for k, v in values.items()}
    out["n_queries"] = len(qids)
    return out
