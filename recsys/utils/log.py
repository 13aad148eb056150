"""Logging and progress: rich on a TTY, plain timestamped lines otherwise (CI, Ray job logs)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.logging import RichHandler
from tqdm.auto import tqdm

T = TypeVar("T")


def is_tty() -> bool:
    return sys.stderr.isatty()


def get_logger(name: str = "recsys") -> logging.Logger:
    logger = logging.getLogger(name)
    if not logger.handlers and not logging.getLogger().handlers:
        if is_tty():
            handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=False)
            handler.setFormatter(logging.Formatter("%(message)s"))
        else:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """A tqdm bar on a TTY; every ~10% a plain log line otherwise."""
    if is_tty():
        yield from tqdm(items, desc=desc, total=total)
        return
    log = get_logger()
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)  # type: ignore[arg-type]
    step = max(1, (total or 10) // 10)
    for i, item in enumerate(items, 1):
        yield item
        if i % step == 0 or (total and i == total):
            log.info("%s: %d/%s", desc, i, total if total else "?")
