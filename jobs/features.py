"""Splits (LOO + time), sequences, user/item/query/text features, segments, PCA, selection report."""

from recsys.data.config import FeaturesConfig

CONFIG = FeaturesConfig


def run(cfg: FeaturesConfig, ctx) -> dict:
    from recsys.data.features import build_features
    from recsys.data.layout import FEATURES
    from recsys.data.shuffle import configure_exchange

    configure_exchange(
        cfg.exchange.input_batch_mb, cfg.exchange.compression, cfg.exchange.reserve_per_operator
    )
    result = build_features(cfg, cfg.data, str(ctx.output_dir), ctx)
    names = (
        "items",
        "sequences",
        "loo_train",
        "loo_valid",
        "loo_test",
        "time_train",
        "time_valid",
        "time_test",
        "pairs",
        "user_features",
        "item_features",
        "text_features",
        "manifest",
        "selection",
    )
    result["artifacts"] = {n: str(ctx.output_dir / getattr(FEATURES, n)) for n in names}
    return result


if __name__ == "__main__":
    from recsys.cli.entry import job_main

    job_main(__name__)
