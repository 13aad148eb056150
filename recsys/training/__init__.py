"""Training: fine-tune the recsys models with Ray Train (DDP or DeepSpeed) from one config.

``recsys.training.trainer.run_training(cfg)`` runs a ``TrainConfig`` end to end and returns the
result; ``build_trainer(cfg, datasets, run_config)`` gives the ``TorchTrainer`` itself (reused
unchanged inside Ray Tune trials). The per-worker loop is ``recsys.training.loop.train_loop``.
"""
