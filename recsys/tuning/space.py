"""Search space <-> train config: load the base, check every space key and candidate value against
``TrainConfig`` before any trial starts, turn the space into Ray Tune domains, build trial configs.
"""

from __future__ import annotations

import copy
import difflib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from recsys.config.loader import (
    KEY_HELP,
    ConfigError,
    dotted_steps,
    expand_values,
    field_types,
    format_steps,
    load_config,
    read_yaml,
    set_dotted,
)
from recsys.config.paths import project_root
from recsys.training.config import TrainConfig
from recsys.tuning.params import ParamSpec


# -- base config -----------------------------------------------------------------------------------
def load_base(base: str | dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The base train config as raw YAML data (``${VAR}`` kept, so best.yaml stays portable), with
    the sweep's dotted ``overrides`` applied (each checked to be a train-config key)."""
    data = _read_base(base)
    flat = dict(flatten_overrides(overrides or {}))
    errors = [e.replace("space.", "overrides.", 1) for e in map(_schema_error, flat) if e]
    if errors:
        raise ConfigError(errors, source="tune config")
    return trial_data(data, flat)


def flatten_overrides(overrides: dict[str, Any], prefix: str = ""):
    """Dotted (key, value) pairs; nested sections (``train: {max_steps: 5}``, as CLI overrides such
    as ``overrides.train.max_steps=5`` produce) become ``train.max_steps`` -- a value that is a
    mapping only stays whole where the train config has a mapping field."""
    for key, value in overrides.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and value and _schema_error(full) is not None:
            yield from flatten_overrides(value, full + ".")
        else:
            yield full, value


def _read_base(base: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(base, dict):
        return copy.deepcopy(base)
    path = Path(base)
    if not path.is_file() and not path.is_absolute() and (project_root() / path).is_file():
        path = project_root() / path
    errors: list[str] = []
    data = read_yaml(path, errors)
    if errors:
        raise ConfigError([f"base: {e.removeprefix('--config: ')}" for e in errors], source="tune config")
    return data


def with_objective(raw: dict[str, Any], metric: str | None, mode: str | None) -> dict[str, Any]:
    """Base data whose train.metric / train.mode are the sweep's objective (checkpoints ranked by it)."""
    out = copy.deepcopy(raw)
    if metric:
        set_dotted(out, "train.metric", metric)
    if mode:
        set_dotted(out, "train.mode", mode)
    return out


def trial_data(raw: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Base data with a trial's dotted params applied (raw, ``${VAR}`` not expanded)."""
    out = copy.deepcopy(raw)
    for key, value in params.items():
        set_dotted(out, key, value)
    return out


def train_config(data: dict[str, Any], *, check_paths: bool = True) -> TrainConfig:
    return load_config(TrainConfig, None, data=data, check_paths=check_paths)


# -- validation ------------------------------------------------------------------------------------
def _schema_error(key: str) -> str | None:
    """None if ``key`` names a field of TrainConfig (or a key inside one of its dict fields); list
    elements are stepped into by position or selector (``a.0.b``, ``a[name=x].b``) as ``set_dotted`` does."""
    try:
        steps = dotted_steps(key)
    except ValueError as exc:
        return f"space.{key}: {exc}; {KEY_HELP}"
    current: list[Any] = [TrainConfig]
    for i, part in enumerate(steps):
        models = [t for t in current if isinstance(t, type) and issubclass(t, BaseModel)]
        lists = [t for t in current if typing.get_origin(t) is list or t is list]
        if any(typing.get_origin(t) is dict or t is dict for t in current) and not models:
            return None  # free-form mapping (e.g. strategy.deepspeed.extra): any sub-key
        if lists and not models and (not isinstance(part, str) or part.lstrip("-").isdigit()):
            args = typing.get_args(lists[0])
            current = field_types(args[0]) if args else [Any]
            continue
        where = format_steps(steps[:i])
        if not models or not isinstance(part, str):
            rest = format_steps(steps[i:])
            return f"space.{key}: {where!r} is a value, not a section; remove {rest!r}"
        model = next((m for m in models if part in m.model_fields), None)
        if model is None:
            valid = sorted({f for m in models for f in m.model_fields})
            close = difflib.get_close_matches(part, valid, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(valid)}"
            where = where or "the train config"
            return f"space.{key}: the train config has no key {key!r} ({part!r} is not in {where}); {hint}"
        current = field_types(model.model_fields[part].annotation)
    if any(isinstance(t, type) and issubclass(t, BaseModel) for t in current):
        return f"space.{key}: {key!r} is a whole section; tune one of its fields (e.g. {key}.<field>)"
    return None


def validate_space(
    raw: dict[str, Any],
    space: dict[str, ParamSpec],
    metric: str | None = None,
    mode: str | None = None,
    *,
    check_paths: bool = True,
) -> TrainConfig:
    """Check the base and every space key / candidate value against TrainConfig; raise ConfigError
    listing every problem. Returns the validated base (objective applied)."""
    errors: list[str] = []
    base = with_objective(raw, metric, mode)
    try:
        base_cfg = train_config(expand_values(base, errors), check_paths=check_paths)
    except ConfigError as exc:
        raise ConfigError([f"base: {e}" for e in exc.errors], source="tune config") from None
    for key, spec in space.items():
        problem = _schema_error(key)
        if problem:
            errors.append(problem)
            continue
        for value in spec.probe_values():
            try:
                train_config(expand_values(trial_data(base, {key: value})), check_paths=False)
            except ConfigError as exc:
                errors += [f"space.{key} = {value!r}: {e}" for e in exc.errors]
    if errors:
        raise ConfigError(errors, source="tune config (space)")
    return base_cfg


# -- Ray Tune domains ------------------------------------------------------------------------------
def tune_domain(spec: ParamSpec) -> Any:
    # lazy: the tune job's config imports this module at listing time; Ray Tune costs seconds
    from ray import tune

    if spec.type == "choice":
        return tune.choice(spec.values)
    if spec.type == "grid":
        return tune.grid_search(spec.values)
    low, high = spec.bounds()
    if spec.type == "uniform":
        return tune.uniform(low, high)
    if spec.type == "loguniform":
        return tune.loguniform(low, high)
    return tune.randint(int(low), int(high))


def param_space(space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Flat ``{dotted key: domain}`` (results show them as ``config/<dotted key>``)."""
    return {key: tune_domain(spec) for key, spec in space.items()}


def grid_size(space: dict[str, ParamSpec]) -> int:
    n = 1
    for spec in space.values():
        if spec.type == "grid":
            n *= len(spec.values or [])
    return n
