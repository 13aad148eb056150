"""The evaluate job's orchestration (``recsys run evaluate``): config -> protocol data -> scorers ->
results, one module per protocol.

- ``scorers``: baselines (tuned on validation), trained models, ensembles and pair scorers from specs;
- ``ranking``: tasks recommendation and retrieval (``RankingEvaluator``);
- ``matching``: task matching (``PairClassificationEvaluator``);
- ``kfold``: k-fold cross-validation of the baselines;
- ``search``: the served /search pipeline (``recsys.search.SearchPipeline``) on judged queries.

Metrics, evaluators, protocol data, statistics and reports live one layer down, in ``recsys.evaluation``.
A new protocol is a module with ``run_<name>(cfg, ctx) -> dict`` registered in ``RUNNERS`` (and its name
added to ``ProtocolConfig.task`` in ``recsys/evaluation/config.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from recsys.evaluation.config import EvaluateConfig
from recsys.experiments.matching import run_matching
from recsys.experiments.ranking import run_ranking
from recsys.experiments.scorers import check_model_paths
from recsys.experiments.search import run as run_search

if TYPE_CHECKING:
    from recsys.runtime import JobContext

Runner = Callable[[EvaluateConfig, Any], dict[str, Any]]

RUNNERS: dict[str, Runner] = {  # protocol.task -> the function that runs it
    "recommendation": run_ranking,
    "retrieval": run_ranking,
    "matching": run_matching,
    "search": run_search,  # the served /search pipeline end to end on judged queries
}


def run(cfg: EvaluateConfig, ctx: JobContext) -> dict[str, Any]:
    """Run the evaluate job: trained-model paths checked first, then the protocol's runner."""
    check_model_paths(cfg)
    return RUNNERS[cfg.protocol.task](cfg, ctx)


__all__ = ["RUNNERS", "run", "run_matching", "run_ranking", "run_search"]
