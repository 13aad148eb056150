"""Evaluation: ranking metrics, protocols, evaluators, uncertainty, reports.

Public API (see the module docstrings):

- ``Scorer`` / ``QueryBatch`` / ``ItemIndex`` (recsys.evaluation.scorer): what a ranker implements.
- ``EvalSet``, ``leave_one_out``, ``time_split``, ``from_targets``, ``sample_negatives``,
  ``with_candidates`` (recsys.evaluation.protocols): what gets ranked.
- ``RankingEvaluator(eval_set, metrics, primary_metric)(scorer) -> dict`` with ``primary_metric``;
  ``PairClassificationEvaluator`` for matching (F1 at a validation-chosen threshold, PR-AUC).
- ``bootstrap_ci``, ``compare`` (paired t-test / permutation / bootstrap p-values).
"""

import importlib

_EXPORTS = {
    "RankingEvaluator": "evaluators", "RankingResult": "evaluators",
    "EvalSet": "protocols", "Split": "protocols", "from_targets": "protocols", "leave_one_out": "protocols",
    "sample_negatives": "protocols", "time_split": "protocols", "with_candidates": "protocols",
    "ItemIndex": "scorer", "QueryBatch": "scorer", "Scorer": "scorer", "as_scorer": "scorer",
    "bootstrap_ci": "stats", "compare": "stats", "PairClassificationEvaluator": "classification",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):  # lazy, so that importing the job config stays light
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"recsys.evaluation.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
