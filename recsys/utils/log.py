"""Logging: rich on a TTY, plain timestamped lines otherwise (CI, Ray job logs)."""

from __future__ import annotations

import logging
import sys

from rich.logging import RichHandler


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
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
            )
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger
