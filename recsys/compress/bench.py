"""Latency and throughput of a scorer with fixed threads: p50 / p99 per batch size, pairs/s, size, RSS.

Each timed call scores one batch of ``batch_size`` pairs (tokenization included, as in serving).
``rss_mb`` is the process's resident memory after loading and running the scorer and
``peak_rss_mb`` the process's peak so far (one process runs every variant, so later variants'
peaks include earlier ones: compare ``rss_delta_mb``, the growth while this scorer loaded and ran).
``isolated_peak_rss_mb`` measures one variant alone: the peak of a fresh process that opens it and
scores one batch of each size (``python -m recsys.compress.bench``), what a serving replica holds.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

BATCH_SIZES = (1, 8, 32, 64)


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak) / (1024 * 1024 if sys.platform == "darwin" else 1024)


def score_fn(model: Any) -> Callable[[Sequence[tuple[str, str]], int], np.ndarray]:
    """The scoring call of a cross-encoder (pairs) or a bi-encoder (query . item, row by row)."""
    if hasattr(model, "score"):
        return lambda pairs, bs: np.asarray(model.score(pairs, batch_size=bs))

    def bi(pairs: Sequence[tuple[str, str]], bs: int) -> np.ndarray:
        q = model.encode([a for a, _ in pairs], batch_size=bs, tower="query")
        v = model.encode([b for _, b in pairs], batch_size=bs, tower="item")
        return np.asarray((q * v).sum(axis=1), dtype=np.float32)

    return bi


def latency(
    fn: Callable[[Sequence[tuple[str, str]], int], np.ndarray],
    pairs: Sequence[tuple[str, str]],
    batch_sizes: Sequence[int] = BATCH_SIZES,
    repeats: int = 20,
    warmup: int = 2,
) -> dict[str, Any]:
    """p50 / p99 milliseconds per batch (keys ``p50_ms_b<bs>``, ``p99_ms_b<bs>``) and pairs/s per batch size."""
    if not pairs:
        raise ValueError("no pairs to benchmark with")
    row: dict[str, Any] = {}
    for bs in batch_sizes:
        batch = [pairs[i % len(pairs)] for i in range(bs)]
        for _ in range(warmup):
            fn(batch, bs)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(batch, bs)
            times.append(time.perf_counter() - t0)
        ms = np.asarray(times) * 1000
        row[f"p50_ms_b{bs}"] = round(float(np.percentile(ms, 50)), 3)
        row[f"p99_ms_b{bs}"] = round(float(np.percentile(ms, 99)), 3)
        row[f"pairs_s_b{bs}"] = round(bs * repeats / float(np.sum(times)), 1)
    return row


def set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def isolated_peak_rss_mb(
    path: str, threads: int, pairs: Sequence[tuple[str, str]], batch_sizes: Sequence[int]
) -> float:
    """Peak RSS (MiB) of a fresh process that opens the model or variant at ``path`` (``load_scorer``) with
    ``threads`` threads and scores one batch of each of ``batch_sizes`` from ``pairs``."""
    job = {"path": str(path), "threads": threads, "pairs": list(pairs), "batch_sizes": list(batch_sizes)}
    done = subprocess.run(
        [sys.executable, "-m", "recsys.compress.bench"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"measuring the peak RSS of {path!r} failed: {done.stderr.strip()[-1000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def _measure_child() -> None:
    """The child of :func:`isolated_peak_rss_mb`: job JSON on stdin, ``{"peak_rss_mb": ...}`` on stdout."""
    from recsys.compress.scorers import load_scorer

    job = json.loads(sys.stdin.read())
    fn = score_fn(load_scorer(job["path"], threads=job["threads"]))
    pairs = [tuple(p) for p in job["pairs"]]
    for bs in job["batch_sizes"]:
        fn([pairs[i % len(pairs)] for i in range(bs)], bs)
    print(json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1)}))


if __name__ == "__main__":
    _measure_child()
