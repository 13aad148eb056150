"""Where things live: project root, configs, shared data, run outputs.

Configs refer to data outside the project as ``${RECSYS_DATA_ROOT}/...`` so that the same YAML
works from a checkout, inside a ``ray job submit`` working dir, and on a cloud cluster (set the
variable to an ``s3://`` / ``gs://`` prefix or a shared mount there).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def project_root() -> Path:
    """The directory holding ``configs/`` and ``jobs/``: the cwd if it has them, else the checkout."""
    cwd = Path.cwd()
    if (cwd / "configs").is_dir() and (cwd / "jobs").is_dir():
        return cwd
    return Path(__file__).resolve().parents[2]


def configs_dir() -> Path:
    return project_root() / "configs"


def data_root() -> str:
    """``RECSYS_DATA_ROOT``, defaulting to ``<project>/../shared/data``."""
    return os.environ.get("RECSYS_DATA_ROOT") or str((project_root() / ".." / "shared" / "data").resolve())


def runs_root() -> str:
    """``RECSYS_RUNS_ROOT``, defaulting to ``<project>/runs`` (outputs of every job)."""
    return os.environ.get("RECSYS_RUNS_ROOT") or str(project_root() / "runs")


def anchor_runs(path: str) -> str:
    """``runs/...`` means "under RECSYS_RUNS_ROOT": a submitted job's or replica's cwd is Ray's
    temporary copy of the project, so outputs (and the next stage's inputs) must not depend on it."""
    if path == "runs" or path.startswith("runs/"):
        return runs_root() + path[4:]
    return path


def expand_env(value: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; RECSYS_DATA_ROOT / RECSYS_RUNS_ROOT have defaults."""
    defaults = {"RECSYS_DATA_ROOT": data_root, "RECSYS_RUNS_ROOT": runs_root}

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        if name in defaults:
            return str(defaults[name]())
        raise KeyError(name)

    return _ENV_REF.sub(sub, value)


def is_uri(path: str) -> bool:
    return "://" in path
