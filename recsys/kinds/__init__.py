"""Model kinds, one module each (``bi_encoder``, ``cross_encoder``, ``sequential``): see ``base``.

``get(name)`` -> ``ModelKind`` (config section, builder, task, losses, data preparation, scorer);
``names()`` lists them. ``data`` holds the Ray Data preparation helpers the kinds share.
"""

from recsys.kinds.base import (
    KindData,
    ModelKind,
    PairScores,
    RankingScores,
    Task,
    get,
    kinds,
    names,
    register,
)

__all__ = [
    "KindData",
    "ModelKind",
    "PairScores",
    "RankingScores",
    "Task",
    "get",
    "kinds",
    "names",
    "register",
]
