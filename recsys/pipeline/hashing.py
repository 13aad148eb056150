"""Content keys of stages: a hash of the job, its resolved config and fingerprints of what it reads.

Upstream outputs enter a stage's config as their hash-keyed directories, so a changed upstream
changes every downstream key. External inputs (raw logs, data sets) are fingerprinted by the size
and modification time of every file under them (cheap on large data; a rewrite with identical
size and mtime is the one change it cannot see).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MAX_FILES = 20_000  # fingerprint at most this many files per input (then the count and total size stand in)


def fingerprint_path(path: str) -> dict[str, Any] | None:
    """``{"files", "bytes", "digest"}`` of a local file or directory; None when absent or a URI."""
    if "://" in path or not os.path.exists(path):
        return None
    p = Path(path)
    files = (
        [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    )
    h = hashlib.sha256()
    total = 0
    for f in files[:MAX_FILES]:
        st = f.stat()
        total += st.st_size
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"files": len(files), "bytes": total, "digest": h.hexdigest()[:16]}


def external_inputs(config: Any, exclude_under: Path) -> dict[str, dict[str, Any]]:
    """Every string in ``config`` that names an existing local path outside ``exclude_under``
    (upstream outputs are already keyed by hash), with its fingerprint."""
    found: dict[str, dict[str, Any]] = {}
    root = str(exclude_under.resolve())

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and v and ("/" in v or os.sep in v) and "://" not in v and len(v) < 4096:
            if os.path.exists(v) and not os.path.abspath(v).startswith(root):
                fp = fingerprint_path(v)
                if fp is not None:
                    found[v] = fp

    walk(config)
    return found


def stage_key(job: str, config: dict[str, Any], inputs: dict[str, Any]) -> str:
    """sha256 of the job name, its resolved config (output_dir and tracking excluded: neither changes
    what the stage computes) and its input fingerprints."""
    body = {
        "job": job,
        "config": {k: v for k, v in config.items() if k not in ("output_dir", "tracking")},
        "inputs": inputs,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
