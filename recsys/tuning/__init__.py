"""Tuning: hyperparameter sweeps of the train job with Ray Tune, each trial a Ray Train run.

``recsys.tuning.run.run_tuning(cfg, output_dir)`` validates the space against the train config,
sweeps (or resumes an interrupted sweep), and writes the trials table, the HTML report,
``best.yaml`` and the best model. Trials run ``recsys.training``'s loop unchanged
(``recsys.tuning.trial.train_trial``).
"""
