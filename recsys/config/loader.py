"""Load a job config: YAML file + dotted ``key=value`` overrides -> typed, validated model.

A dotted key steps through mappings by key and through lists by position or by a field
(``models.3.path``, ``models[-1].path``, ``models[name=SASRec].path``): ``set_dotted`` is the one
implementation, used by CLI overrides, tune spaces / overrides and pipeline stage overrides.

Every problem (YAML syntax, malformed override, unknown key, wrong type, impossible combination,
missing file) is collected and reported at once, each with its key path, the bad value and a fix.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Select:
    """``[field=value]`` in a dotted key: the one list element whose ``field`` is ``value``."""

    field: str
    value: str


Step = str | int | Select  # a mapping key (or a list position written 'models.3'), [3], [name=x]
_INDEX = re.compile(r"-?\d+")
KEY_HELP = "e.g. train.lr=3e-5, models.3.path=..., models[-1].path=..., models[name=SASRec].path=..."


def dotted_steps(key: str) -> list[Step]:
    """Split a dotted key into steps: ``models[name=SASRec].params.k`` -> ``['models', Select('name',
    'SASRec'), 'params', 'k']``, ``models.3`` -> ``['models', '3']``, ``models[-1]`` -> ``['models', -1]``.
    A selector's value may hold dots (``[path=a/b.yaml]``). Raises ValueError naming the problem."""
    steps: list[Step] = []
    i, n = 0, len(key)
    while i < n:
        if key[i] == "[":
            end = key.find("]", i)
            if end < 0:
                raise ValueError(f"unclosed '[' at position {i}; write [3] or [name=value]")
            if not steps:
                raise ValueError("a [..] selector follows a list's key, e.g. models[0]")
            steps.append(_bracket(key[i + 1 : end]))
            i = end + 1
        else:
            end = min((j for j in (key.find(".", i), key.find("[", i)) if j >= 0), default=n)
            if end == i:
                raise ValueError("empty part between dots")
            if "]" in key[i:end]:
                raise ValueError(f"unmatched ']' in {key[i:end]!r}")
            steps.append(key[i:end])
            i = end
        if i < n and key[i] == ".":
            i += 1
            if i == n:
                raise ValueError("ends with a dot")
        elif i < n and key[i] != "[":
            raise ValueError(f"expected '.' or '[' after ']' at position {i}")
    if not steps:
        raise ValueError("empty key")
    return steps


def _bracket(inner: str) -> int | Select:
    if _INDEX.fullmatch(inner.strip()):
        return int(inner)
    field, sep, value = inner.partition("=")
    if not sep or not field.strip():
        raise ValueError(f"[{inner}] is neither a position ([3], [-1]) nor a selector ([name=value])")
    return Select(field.strip(), value.strip())


def format_steps(steps: list[Step]) -> str:
    """The dotted text of ``steps`` (positions as ``[i]``, as validation errors show them)."""
    out = ""
    for s in steps:
        if isinstance(s, int):
            out += f"[{s}]"
        elif isinstance(s, Select):
            out += f"[{s.field}={s.value}]"
        else:
            out += f".{s}" if out else s
    return out


def _scalar_text(v: Any) -> str:
    """How a selector value is written for ``v`` (YAML spelling: true / null, numbers as typed)."""
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "null"}[v]
    return str(v)


def _list_position(items: list[Any], step: Step, where: str) -> int:
    """The position in ``items`` that ``step`` names (an index, a digit key, or a selector)."""
    if isinstance(step, Select):
        return _select(items, step, where)
    if isinstance(step, str) and not _INDEX.fullmatch(step):
        raise ValueError(
            f"{where} is a list; pick an element by position ({where}.0, {where}[-1]) "
            f"or by a field ({where}[name=...]), not by key {step!r}"
        )
    i = int(step)
    if not -len(items) <= i < len(items):
        if not items:
            raise ValueError(f"{where} is an empty list; set the whole list instead: {where}=[...]")
        raise ValueError(
            f"{where} has {len(items)} elements; position {i} is out of range "
            f"(0..{len(items) - 1}, or -1 for the last)"
        )
    return i % len(items)


def _select(items: list[Any], sel: Select, where: str) -> int:
    target = f"{where}[{sel.field}={sel.value}]"
    named = [
        (i, _scalar_text(el[sel.field]))
        for i, el in enumerate(items)
        if isinstance(el, dict) and isinstance(el.get(sel.field, ()), str | int | float | bool | None)
    ]
    hits = [i for i, v in named if v == sel.value]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ValueError(
            f"{len(hits)} elements of {where} have {sel.field} {sel.value!r} (positions "
            f"{', '.join(map(str, hits))}); select one by position, e.g. {where}.{hits[0]}"
        )
    if not items:
        raise ValueError(f"{where} is an empty list; set the whole list instead: {where}=[...]")
    if not named:
        raise ValueError(
            f"no element of {where} has a plain {sel.field!r} value (text or number) to match; "
            f"select by position ({where}.0 .. {where}.{len(items) - 1})"
        )
    values = [v for _, v in named]
    close = [v for v in values if v.casefold() == sel.value.casefold()]
    close = close or difflib.get_close_matches(sel.value, values, n=1)
    hint = f"; did you mean {where}[{sel.field}={close[0]}]?" if close else ""
    raise ValueError(f"{target} matches nothing: {sel.field} values in {where} are {', '.join(values)}{hint}")


def _untyped(schema: type[BaseModel], steps: list[Step]) -> bool:
    """True when ``steps`` end in a value the schema leaves as ``Any`` (so pydantic will not coerce
    the override's text): inside ``dict[str, Any]`` / ``list[Any]`` or below them."""
    current: list[Any] = [schema]
    for step in steps:
        if Any in current:
            return True
        models = [t for t in current if isinstance(t, type) and issubclass(t, BaseModel)]
        field = (
            next((m.model_fields[step] for m in models if step in m.model_fields), None)
            if isinstance(step, str)
            else None
        )
        containers = [t for t in current if typing.get_origin(t) in (dict, list)]
        if field is not None:
            current = field_types(field.annotation)
        elif containers:
            args = typing.get_args(containers[0])
            current = field_types(args[-1]) if args else [Any]
        else:
            return False  # an unknown key or a plain value: validation reports it
    return Any in current


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _yaml_scalar(raw: str) -> Any:
    """``raw`` as a YAML value in the file (32 -> int, true -> bool, 1e-3 -> float too), else the text."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    return value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``value`` at dotted ``key`` in ``data`` (in place): the one way a dotted override reaches YAML
    data (CLI, tune space and overrides, pipeline stage overrides). Mapping keys are created, a
    non-mapping section on the way is replaced by a mapping; a list element is named by position
    (``models.3``, ``models[3]``, ``models[-1]``) or by a field (``models[name=SASRec]``) and must exist.
    Raises ConfigError (one line: the key, the problem, the fix)."""
    try:
        steps = dotted_steps(key)
        _set_steps(data, steps, value)
    except ValueError as exc:
        raise ConfigError([f"{key}: {exc}"], source=f"override {key!r}") from None


def _set_steps(data: dict[str, Any], steps: list[Step], value: Any) -> None:
    node: Any = data
    for pos, step in enumerate(steps):
        where = format_steps(steps[:pos]) or "<root>"
        last = pos == len(steps) - 1
        if isinstance(node, list):
            i = _list_position(node, step, where)
            if last:
                node[i] = value
                return
            if not isinstance(node[i], dict | list):
                raise ValueError(
                    f"{where}[{i}] is {node[i]!r}, not a section; set it whole: {format_steps(steps[: pos + 1])}=..."
                )
            node = node[i]
            continue
        if not isinstance(step, str):
            keys = ", ".join(map(str, node)) or "none"
            raise ValueError(
                f"{where} is a mapping, not a list; name one of its keys ({keys}) instead of {format_steps([step])}"
            )
        if last:
            node[step] = value
            return
        nxt = steps[pos + 1]
        child = node.get(step)
        if not isinstance(nxt, str) and not isinstance(child, list):
            path = format_steps(steps[: pos + 1])
            got = "missing" if child is None else f"a {type(child).__name__}"
            raise ValueError(f"{path} is {got}, not a list; set the whole list instead: {path}=[...]")
        if not isinstance(child, dict | list):
            node[step] = child = {}
        node = child


def parse_overrides(
    data: dict[str, Any], overrides: list[str], errors: list[str], schema: type[BaseModel] | None = None
) -> dict[str, Any]:
    """Apply ``key=value`` overrides onto ``data`` (in place) through ``set_dotted``; a malformed one
    appends an error and is skipped. A value landing where ``schema`` types nothing (a free-form
    mapping such as ``models[name=BPRMF].params.factors``) is read as YAML would read it in the file."""
    for item in overrides or []:
        key, sep, raw = _split_override(item)
        if not sep or not key:
            errors.append(f"override {item!r}: expected dotted key=value, {KEY_HELP}")
            continue
        try:
            steps = dotted_steps(key)
        except ValueError as exc:
            errors.append(f"override {item!r}: {exc}; {KEY_HELP}")
            continue
        value = _yaml_scalar(raw) if schema and _untyped(schema, steps) else _override_value(raw)
        try:
            set_dotted(data, key, value)
        except ConfigError as exc:
            errors += exc.errors
    return data


def _split_override(item: str) -> tuple[str, str, str]:
    """``key=value`` split at the first '=' outside brackets (``models[name=x].path=y``)."""
    depth = 0
    for i, c in enumerate(item):
        depth = max(0, depth + {"[": 1, "]": -1}.get(c, 0))
        if c == "=" and depth == 0:
            return item[:i].strip(), "=", item[i + 1 :]
    key, sep, raw = item.partition("=")  # unbalanced brackets: dotted_steps names the problem
    return key.strip(), sep, raw


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
    parse_overrides(raw, overrides or [], errors, schema=model)
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
