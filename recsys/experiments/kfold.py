"""k-fold cross-validation of the config's baselines over the train users (``protocol.kfold > 1``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from recsys.baselines import build_baseline
from recsys.evaluation import protocols as P
from recsys.evaluation.config import EvaluateConfig, ModelSpec
from recsys.evaluation.kfold import cross_validate
from recsys.evaluation.prepare import Prepared, make_evaluator
from recsys.evaluation.train_data import TrainData


def kfold_baselines(cfg: EvaluateConfig, prep: Prepared) -> dict[str, Any]:
    """Per baseline (trained models are skipped): per metric mean, std and fold values."""
    out = {}
    seqs = prep.train.sequences  # train parts only: the test items are never seen by k-fold

    def make_es(held: pd.DataFrame) -> P.EvalSet:
        es = P.leave_one_out(held, min_length=3, catalog=prep.train.catalog).test
        return (
            P.sample_negatives(es, cfg.protocol.n_negatives, seed=cfg.seed)
            if cfg.protocol.candidates != "full"
            else es
        )

    for spec in cfg.models:
        if spec.kind == "model":
            continue

        def fit(tr: pd.DataFrame, s: ModelSpec = spec) -> object:
            return build_baseline(s.kind, s.params, seed=cfg.seed).fit(
                TrainData(tr, prep.train.catalog, prep.train.items)
            )

        out[spec.name] = cross_validate(
            seqs,
            cfg.protocol.kfold,
            fit=fit,
            evaluate=lambda scorer, es: make_evaluator(cfg, es)(scorer),
            make_eval_set=make_es,
            seed=cfg.seed,
        )
    return out
