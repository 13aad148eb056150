"""Discover jobs: every module ``jobs/<name>.py`` with a ``CONFIG`` class and a ``run`` function.

Job modules import only their config at module level (nothing heavy runs on import), so listing
and validating jobs never starts Ray or loads torch.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from recsys.config.paths import configs_dir


@dataclass(frozen=True)
class JobSpec:
    name: str
    module: ModuleType

    @property
    def config_cls(self):
        return self.module.CONFIG

    @property
    def summary(self) -> str:
        return (self.module.__doc__ or "").strip().splitlines()[0] if self.module.__doc__ else ""

    @property
    def needs_ray(self) -> bool:
        return getattr(self.module, "NEEDS_RAY", True)

    def shipped_configs(self) -> list[Path]:
        return sorted((configs_dir() / self.name).glob("*.yaml"))


def job_names() -> list[str]:
    # by name, like every job module: jobs are plugins found at run time, not a layer below this one
    package = importlib.import_module("jobs")
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


def get_job(name: str) -> JobSpec:
    """Look a job up by module name; ``ab-report`` and ``ab_report`` are the same job."""
    name = name.replace("-", "_")
    names = job_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise KeyError(f"unknown job {name!r}; {hint}jobs: {', '.join(names)}")
    module = importlib.import_module(f"jobs.{name}")
    if not hasattr(module, "CONFIG") or not hasattr(module, "run"):
        raise KeyError(f"jobs/{name}.py must define CONFIG (a JobConfig class) and run(cfg, ctx)")
    return JobSpec(name=name, module=module)


def resolve_config_path(job: str, config: str) -> Path:
    """``--config`` may be a path, or a scale name (tiny/local/cluster) of the job's shipped configs."""
    p = Path(config)
    # is_file, not exists: from the repository root "cluster" is also the cluster/ folder
    if p.is_file() or p.suffix in (".yaml", ".yml"):
        return p
    return configs_dir() / job / f"{config}.yaml"
