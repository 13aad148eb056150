"""Live step progress of a Ray Train run for the driver's console (a stage's bar and ETA).

Rank 0 posts its optimizer step to a zero-CPU actor (fire and forget, at most once a second); a driver
thread polls the actor and hands ``(step, total_steps)`` to a callback. The workers, the Train
controller and the driver may sit on different nodes, so a Ray actor (not a file, not a Train callback
in the controller process) carries the number.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

OnProgress = Callable[[int, int], None]


class _Board:
    """The latest (step, total) posted by rank 0."""

    def __init__(self) -> None:
        self.value: tuple[int, int] | None = None

    def post(self, step: int, total: int) -> None:
        self.value = (step, total)

    def read(self) -> tuple[int, int] | None:
        return self.value


class StepPoster:
    """Worker side: ``post(step, total)`` sends at most one update a second (and always the last step)."""

    def __init__(self, board: Any, every_s: float = 1.0):
        self.board, self.every_s, self._last = board, every_s, 0.0

    def post(self, step: int, total: int) -> None:
        now = time.monotonic()
        if self.board is None or (now - self._last < self.every_s and step < total):
            return
        self._last = now
        self.board.post.remote(step, total)  # no ray.get: the step never waits on the driver


@contextmanager
def step_progress(on_progress: OnProgress | None, poll_s: float = 1.0) -> Iterator[Any]:
    """Yields the board handle to give the workers (None when nobody listens); relays its updates to
    ``on_progress`` from a daemon thread until the block ends, then once more (the final step)."""
    if on_progress is None:
        yield None
        return
    import ray  # lazy: Ray costs seconds of import; the trainer's callers import this module

    board = ray.remote(num_cpus=0)(_Board).remote()  # zero CPUs: it never waits for a worker's slot
    stop = threading.Event()

    def relay() -> None:
        seen = None
        while True:
            stopping = stop.is_set()  # one more read after the run ended: its last step
            try:
                value = ray.get(board.read.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - progress is cosmetic; the run's own errors surface from fit()
                value = None
            if value is not None and value != seen:
                seen = value
                on_progress(*value)
            if stopping:
                return
            stop.wait(poll_s)

    thread = threading.Thread(target=relay, name="train-progress", daemon=True)
    thread.start()
    try:
        yield board
    finally:
        stop.set()
        thread.join(timeout=35)
        ray.kill(board)
