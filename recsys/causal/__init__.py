"""Counterfactual learning and evaluation from logged clicks (issue #32).

- :mod:`~recsys.causal.policies`: logging policies (deterministic, top-k shuffle, Plackett-Luce) and the
  item-at-position propensities they log;
- :mod:`~recsys.causal.clicklog`: synthetic click logs with known examination and relevance;
- :mod:`~recsys.causal.propensity`: position-bias (examination) estimation with bootstrap CIs;
- :mod:`~recsys.causal.ope`: off-policy evaluation of a candidate ranking (IPS, SNIPS, DM, DR);
- :mod:`~recsys.causal.served`: the Serve app's feedback sink as a click log (impressions with propensities);
- :mod:`~recsys.causal.ab`: every A/B arm's off-policy estimate from the stochastic arms' served logs;
- :mod:`~recsys.causal.ultr`: unbiased learning to rank (naive / IPS / DLA / oracle) of a feature ranker,
  NDCG against the known relevance.

Pure numpy / pandas (torch for :mod:`ultr`): nothing here touches Ray.
"""
