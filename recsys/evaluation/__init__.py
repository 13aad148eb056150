"""Evaluation: ranking metrics, protocols, evaluators, uncertainty, reports (layer 4: imports only
``recsys.data`` / ``recsys.models`` and below; the evaluate job's orchestration is ``recsys.experiments``).

Modules:

- ``metrics`` (ranking metrics from target ranks), ``classification`` (pair F1 / PR-AUC and
  ``PairClassificationEvaluator``), ``beyond`` (coverage, novelty, popularity bias, diversity);
- ``scorer``: ``Scorer`` / ``QueryBatch`` / ``ItemIndex``, what a ranker implements;
- ``protocols``: ``EvalSet``, ``leave_one_out``, ``time_split``, ``sample_negatives``, ``with_candidates``;
- ``evaluators``: ``RankingEvaluator(eval_set, metrics, primary_metric)(scorer) -> dict`` with ``primary_metric``;
- ``data`` (tables as pandas), ``train_data`` (``TrainData``: what scorers fit on), ``prepare``
  (the evaluate config's protocol -> train data, eval sets and evaluators);
- ``stats`` (``bootstrap_ci``, ``compare``, ``paired_tests``), ``kfold``, ``report``, ``trec`` (TREC run files);
- ``config``: ``EvaluateConfig``; ``model_scorers``: trained models as Scorers.

The names below are importable from the package itself; they load on first use (PEP 562), so that
importing ``recsys.evaluation.config`` (every job listing does) does not import pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the lazy names below, for type checkers and readers
    from recsys.evaluation.classification import PairClassificationEvaluator
    from recsys.evaluation.evaluators import RankingEvaluator, RankingResult
    from recsys.evaluation.protocols import (
        EvalSet,
        Split,
        leave_one_out,
        sample_negatives,
        time_split,
        with_candidates,
    )
    from recsys.evaluation.scorer import ItemIndex, QueryBatch, Scorer, as_scorer
    from recsys.evaluation.stats import bootstrap_ci, compare
    from recsys.evaluation.train_data import TrainData

_EXPORTS = {
    "RankingEvaluator": "evaluators",
    "RankingResult": "evaluators",
    "EvalSet": "protocols",
    "Split": "protocols",
    "leave_one_out": "protocols",
    "sample_negatives": "protocols",
    "time_split": "protocols",
    "with_candidates": "protocols",
    "ItemIndex": "scorer",
    "QueryBatch": "scorer",
    "Scorer": "scorer",
    "as_scorer": "scorer",
    "bootstrap_ci": "stats",
    "compare": "stats",
    "PairClassificationEvaluator": "classification",
    "TrainData": "train_data",
}
__all__ = [  # = sorted(_EXPORTS), written out for linters
    "EvalSet",
    "ItemIndex",
    "PairClassificationEvaluator",
    "QueryBatch",
    "RankingEvaluator",
    "RankingResult",
    "Scorer",
    "Split",
    "TrainData",
    "as_scorer",
    "bootstrap_ci",
    "compare",
    "leave_one_out",
    "sample_negatives",
    "time_split",
    "with_candidates",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"recsys.evaluation.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'recsys.evaluation' has no attribute {name!r}")
