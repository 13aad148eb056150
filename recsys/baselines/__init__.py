"""Baselines every new model must beat, built from well-kept libraries, all :class:`Scorer`s.

``build_baseline(kind, params).fit(TrainData)``; kinds: ``popularity`` (global counts; with
``half_life``: recent popularity), ``itemknn`` (implicit cosine), ``als`` / ``bpr`` (implicit; ``bpr`` with
``optimizer: adam``: RecBole's recipe, mini-batch Adam with early stopping, in torch),
``bm25`` (bm25s over item text; ``variant: llmrank`` reproduces LLMRank's published row), ``zeroshot``
(pretrained MiniLM, no fine-tuning).
The SASRec baseline is the sequential model trained in pure-ID mode by ``recsys run train``.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from recsys.baselines.bm25_llmrank import LLMRankBM25Scorer
from recsys.baselines.itemknn import ItemKNNScorer
from recsys.baselines.mf import MFScorer
from recsys.baselines.popularity import PopularityScorer
from recsys.baselines.text import BM25Scorer, ZeroShotScorer
from recsys.evaluation.train_data import TrainData

BASELINES = ("popularity", "itemknn", "als", "bpr", "bm25", "zeroshot")


def build_baseline(kind: str, params: dict[str, Any] | None = None, *, seed: int = 0) -> Any:
    """A fresh (unfitted) baseline scorer; ``params`` are its constructor arguments."""
    p = dict(params or {})
    try:  # each baseline's library (torch, implicit, bm25s, a text encoder) loads only when built or fitted
        if kind == "popularity":
            return PopularityScorer(**p)
        if kind == "itemknn":
            return ItemKNNScorer(**p)
        if (
            kind == "bpr"
            and _choice(kind, p, "optimizer", ("sgd", "adam"), "sgd: implicit; adam: RecBole's recipe")
            == "adam"
        ):
            from recsys.baselines.bpr import BPRAdamScorer  # lazy: the Adam BPR imports torch

            p.setdefault("seed", seed)
            return BPRAdamScorer(**p)
        if kind in ("als", "bpr"):
            p.setdefault("seed", seed)
            return MFScorer(cast(Literal["als", "bpr"], kind), **p)  # narrowed by the `in` above
        if (
            kind == "bm25"
            and _choice(
                kind,
                p,
                "variant",
                ("standard", "llmrank"),
                "llmrank: LLMRank's published "
                "row, character query included; see recsys/baselines/bm25_llmrank.py",
            )
            == "llmrank"
        ):
            return LLMRankBM25Scorer(**p)
        if kind == "bm25":
            return BM25Scorer(**p)
        if kind == "zeroshot":
            return ZeroShotScorer(**p)
    except TypeError as exc:  # an unknown parameter name
        raise ValueError(f"baseline {kind!r}: bad params {sorted(p)}: {exc}") from None
    raise ValueError(f"unknown baseline kind {kind!r}; use one of {', '.join(BASELINES)}")


def _choice(kind: str, params: dict[str, Any], key: str, allowed: tuple[str, ...], hint: str) -> str:
    """Pop an option that picks the implementation (first of ``allowed`` by default); a bad value is named."""
    value = params.pop(key, allowed[0])
    if value not in allowed:
        raise ValueError(
            f"baseline {kind!r}: {key} must be {' or '.join(map(repr, allowed))} ({hint}), got {value!r}"
        )
    return cast(str, value)  # one of `allowed`


__all__ = ["BASELINES", "TrainData", "build_baseline"]
