"""Counterfactual learning and evaluation from logged clicks (issue #32).

- :mod:`~recsys.causal.policies`: logging policies (deterministic, top-k shuffle, Plackett-Luce) and the
  item-at-position propensities they log;
- :mod:`~recsys.causal.clicklog`: synthetic click logs with known examination and relevance;
- :mod:`~recsys.causal.propensity`: position-bias (examination) estimation with bootstrap CIs;
- :mod:`~recsys.causal.ope`: off-policy evaluation of a candidate ranking (IPS, SNIPS, DM, DR);
- :mod:`~recsys.causal.ultr`: unbiased learning to rank (IPS listwise / pairwise, DLA) of a feature ranker;
- :mod:`~recsys.causal.uplift`: uplift of exposure (two-model / X-learner), Qini and AUUC.

Pure numpy / pandas (torch for :mod:`ultr`): nothing here touches Ray.
"""
