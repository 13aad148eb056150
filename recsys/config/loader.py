"""Load a job config: YAML file + dotted ``key=value`` overrides -> typed, validated model.

Every problem (YAML syntax, malformed override, unknown key, wrong type, impossible combination,
missing file) is collected and reported at once, each with its key path, the bad value and a fix.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from recsys.config.paths import anchor_runs, expand_env

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """One or more config errors; ``errors`` holds one human-readable line each."""

    def __init__(self, errors: list[str], source: str = "config"):
        self.errors = errors
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{len(self.errors)} error(s) in {self.source}:"]
        lines += [f"  - {e}" for e in self.errors]
        return "\n".join(lines)


def read_yaml(path: str | Path, errors: list[str]) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        errors.append(f"--config: file not found: {str(p)!r}; pass an existing YAML (see `recsys ls`)")
        return {}
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        errors.append(f"--config: {p} is not valid YAML: {exc}".replace("\n", " "))
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        errors.append(f"--config: {p} must hold a mapping of keys, got {type(data).__name__}")
        return {}
    return data


def _override_value(raw: str) -> Any:
    """Keep scalars as strings (pydantic coerces them by the schema: '3e-5' -> float for a float field,
    '007' stays '007' for a str field); parse YAML flow values ([a, b], {k: v}) and null."""
    s = raw.strip()
    if s[:1] in "[{" or s in ("null", "~", "None"):
        return yaml.safe_load(s) if s != "None" else None
    return raw


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``data[a][b][c] = value`` for ``key`` 'a.b.c' (in place), creating or replacing non-mapping
    sections on the way: the one way a dotted override reaches YAML data (CLI, tune, pipeline)."""
    node = data
    *parents, last = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


def parse_overrides(data: dict[str, Any], overrides: list[str], errors: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides onto ``data`` (in place), creating sections as needed."""
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or any(not part for part in key.split(".")):
            errors.append(f"override {item!r}: expected dotted key=value, e.g. train.lr=3e-5")
            continue
        set_dotted(data, key.strip(), _override_value(raw))
    return data


def expand_values(obj: Any, errors: list[str] | None = None, path: str = "") -> Any:
    """Raw YAML data as a job sees it: ``${VAR}`` / ``${VAR:-default}`` expanded and ``runs/...``
    anchored under ``$RECSYS_RUNS_ROOT`` in every string (recursively; a new object). An unset
    variable is appended to ``errors`` (with its key path) and left as written."""
    errors = [] if errors is None else errors
    if isinstance(obj, dict):
        return {k: expand_values(v, errors, f"{path}.{k}" if path else str(k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [expand_values(v, errors, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, str) and "${" in obj:
        try:
            obj = expand_env(obj)
        except KeyError as exc:
            errors.append(
                f"{path}: environment variable {exc.args[0]} is not set; export it or write ${{{exc.args[0]}:-default}}"
            )
    if isinstance(obj, str):
        obj = anchor_runs(obj)
    return obj


def field_types(tp: Any) -> list[Any]:
    """The candidate types of a field annotation behind Optional/Union/Annotated
    (``int | None`` -> ``[int, NoneType]``), for walking a config schema by key."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return field_types(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for a in typing.get_args(tp):
            out += field_types(a)
        return out
    return [tp]


def _walk_loc(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, type[BaseModel] | None]:
    """Turn a pydantic loc into a clean dotted path (dropping union-member tags) and return the
    model that owns the last key (for 'did you mean' suggestions)."""
    parts: list[str] = []
    current: list[Any] = [model]
    owner: type[BaseModel] | None = model
    for comp in loc:
        models = [t for t in current if isinstance(t, type) and issubclass(t, BaseModel)]
        containers = [t for t in current if typing.get_origin(t) in (dict, list, tuple)]
        if isinstance(comp, str) and any(comp in m.model_fields for m in models):
            m = next(m for m in models if comp in m.model_fields)
            owner = m
            parts.append(comp)
            current = field_types(m.model_fields[comp].annotation)
        elif containers and (isinstance(comp, int) or isinstance(comp, str)):
            c = containers[0]
            parts.append(f"[{comp}]" if isinstance(comp, int) else comp)
            current = field_types(typing.get_args(c)[-1]) if typing.get_args(c) else [Any]
            owner = None
        elif isinstance(comp, str) and models:
            parts.append(comp)  # an unknown key: owner stays the model that rejected it
            owner = models[0]
            current = [Any]
        elif isinstance(comp, int):
            parts.append(f"[{comp}]")
        # else: a union-member tag such as 'function-after[...]' or 'int': drop it
    dotted = ".".join(parts).replace(".[", "[")
    return dotted or "<root>", owner


def _fmt_input(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_validation_error(model: type[BaseModel], exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        path, owner = _walk_loc(model, tuple(err["loc"]))
        kind, msg = err["type"], err["msg"]
        if kind == "extra_forbidden":
            key = str(err["loc"][-1])
            valid = sorted(owner.model_fields) if owner else []
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(valid)}"
            out.append(f"{path}: unknown key; {hint}")
        elif kind == "missing":
            out.append(f"{path}: required field is missing; add it to the YAML or pass {path}=VALUE")
        elif kind.startswith("value_error") or kind == "assertion_error":
            out.append(f"{path}: {msg.removeprefix('Value error, ')} (got {_fmt_input(err.get('input'))})")
        else:
            out.append(f"{path}: {msg} (got {_fmt_input(err.get('input'))})")
    return out


def load_config(
    model: type[M],
    path: str | Path | None,
    overrides: list[str] | None = None,
    *,
    check_paths: bool = True,
    data: dict[str, Any] | None = None,
) -> M:
    """Parse ``path`` (or ``data``) plus overrides into ``model``; raise ConfigError listing all errors."""
    errors: list[str] = []
    raw = dict(data) if data is not None else (read_yaml(path, errors) if path else {})
    parse_overrides(raw, overrides or [], errors)
    raw = expand_values(raw, errors)
    cfg: M | None = None
    try:
        cfg = model.model_validate(raw, context={"check_paths": check_paths})
    except ValidationError as exc:
        errors += format_validation_error(model, exc)
    if errors or cfg is None:
        raise ConfigError(errors, source=str(path) if path else model.__name__)
    return cfg


def dump_config(cfg: BaseModel) -> dict[str, Any]:
    """The resolved config as plain YAML-able data (what report.json and best.yaml hold)."""
    return cfg.model_dump(mode="json")
