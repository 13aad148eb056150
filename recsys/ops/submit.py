"""Submit a job to a Ray cluster with ``JobSubmissionClient``.

Equivalent to ``ray job submit --address ADDR --working-dir . -- python -m jobs.<job> --config F k=v``:
the project directory is the working dir, the entrypoint is the job module, and the environment
carries ``HF_HUB_OFFLINE=1`` plus the data/runs roots.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from recsys.config.paths import data_root, project_root, runs_root
from recsys.runtime import JOB_ENV

# Never upload these with the working dir (Ray's working_dir limit is a few hundred MB).
WORKING_DIR_EXCLUDES = [
    ".venv/",
    "runs/",
    ".git/",
    "**/__pycache__/",
    "*.egg-info/",
    ".pytest_cache/",
    ".ruff_cache/",
    "mlruns/",
    "*.parquet",
    "*.safetensors",
    "*.bin",
    "*.pt",
]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _client(address: str):
    from ray.job_submission import JobSubmissionClient  # lazy: Ray costs seconds; the CLI imports this module

    return JobSubmissionClient(address)


def _is_local(address: str) -> bool:
    host = urlparse(address if "://" in address else f"http://{address}").hostname or ""
    return host in ("127.0.0.1", "localhost", "0.0.0.0", "::1")


def build_submission(job: str, config: str, overrides: list[str], address: str, env: dict[str, str]) -> dict:
    """Entrypoint + runtime_env for a submission (pure: tested without a cluster)."""
    root = project_root()
    env_vars = dict(JOB_ENV)
    # Same machine: the cluster sees this checkout's data and runs dirs. Remote: only what the user
    # exports (RECSYS_DATA_ROOT=s3://..., a shared mount) or passes with --env.
    for key, default in (("RECSYS_DATA_ROOT", data_root), ("RECSYS_RUNS_ROOT", runs_root)):
        if key in os.environ:
            env_vars[key] = os.environ[key]
        elif _is_local(address):
            env_vars[key] = str(Path(default()).resolve())
    env_vars.update(env)
    cfg_path = Path(config).resolve()
    try:
        cfg_arg = str(cfg_path.relative_to(root.resolve()))
    except ValueError:  # config outside the project: ship its text in the environment
        env_vars["RECSYS_CONFIG_YAML"] = cfg_path.read_text(encoding="utf-8")
        cfg_arg = "env:RECSYS_CONFIG_YAML"
    entrypoint = " ".join(
        ["python", "-m", f"jobs.{job}", "--config", shlex.quote(cfg_arg), *map(shlex.quote, overrides)]
    )
    runtime_env = {"working_dir": str(root), "excludes": WORKING_DIR_EXCLUDES, "env_vars": env_vars}
    return {"entrypoint": entrypoint, "runtime_env": runtime_env, "metadata": {"recsys_job": job}}


def submit(
    job: str,
    config: str,
    overrides: list[str],
    address: str,
    env: dict[str, str] | None = None,
    submission_id: str | None = None,
) -> str:
    spec = build_submission(job, config, overrides, address, env or {})
    return _client(address).submit_job(submission_id=submission_id, **spec)


def status(submission_id: str, address: str) -> str:
    return str(_client(address).get_job_status(submission_id).value)


def logs(submission_id: str, address: str) -> str:
    return _client(address).get_job_logs(submission_id)


def stop(submission_id: str, address: str) -> bool:
    return _client(address).stop_job(submission_id)


def follow(
    submission_id: str, address: str, poll_s: float = 1.0, write: Callable[[str], None] | None = None
) -> str:
    """Stream logs (to ``write``, default stdout) until the job ends; return its final status."""
    client = _client(address)

    def _stdout(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    async def _tail() -> None:
        async for lines in client.tail_job_logs(submission_id):
            (write or _stdout)(lines)

    try:
        asyncio.run(_tail())
    except Exception:  # noqa: BLE001 - log streaming is best effort; status polling is the truth
        pass
    while (st := str(client.get_job_status(submission_id).value)) not in TERMINAL:
        time.sleep(poll_s)
    return st
