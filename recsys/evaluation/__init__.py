"""Evaluation: ranking metrics, protocols, evaluators, uncertainty, reports.

Public API (see the module docstrings):

- ``Scorer`` / ``QueryBatch`` / ``ItemIndex`` (recsys.evaluation.scorer): what a ranker implements.
- ``EvalSet``, ``leave_one_out``, ``time_split``, ``from_targets``, ``sample_negatives``,
  ``with_candidates`` (recsys.evaluation.protocols): what gets ranked.
- ``RankingEvaluator(eval_set, metrics, primary_metric)(scorer) -> dict`` with ``primary_metric``;
  ``PairClassificationEvaluator`` for matching (F1 at a validation-chosen threshold, PR-AUC).
- ``bootstrap_ci``, ``compare`` (paired t-test / permutation / bootstrap p-values).
"""

from recsys.evaluation.evaluators import RankingEvaluator, RankingResult
from recsys.evaluation.protocols import (
    EvalSet,
    Split,
    from_targets,
    leave_one_out,
    sample_negatives,
    time_split,
    with_candidates,
)
from recsys.evaluation.scorer import ItemIndex, QueryBatch, Scorer, as_scorer
from recsys.evaluation.stats import bootstrap_ci, compare

__all__ = [
    "EvalSet", "ItemIndex", "QueryBatch", "RankingEvaluator", "RankingResult", "Scorer", "Split",
    "as_scorer", "bootstrap_ci", "compare", "from_targets", "leave_one_out", "sample_negatives",
    "time_split", "with_candidates",
]
