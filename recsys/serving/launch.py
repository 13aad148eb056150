"""Start a Serve config file's applications on the connected Ray (what `recsys serve` and the
tests use; `serve run configs/serve/X.yaml` and `serve deploy` read the same file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from recsys.config.loader import ConfigError, format_validation_error


def read_serve_config(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"--config: file not found: {str(p)!r}; pass a Serve config such as configs/serve/tiny.yaml"])
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not data.get("applications"):
        raise ConfigError([f"{p}: a Serve config needs an `applications:` list (see configs/serve/tiny.yaml)"])
    return data


def validate_args(app: dict[str, Any], source: str):
    """The application's ``args`` as ServeArgs, or a ConfigError listing every problem."""
    from pydantic import ValidationError

    from recsys.serving.config import ServeArgs

    try:
        return ServeArgs.model_validate(app.get("args") or {})
    except ValidationError as exc:
        errs = [f"applications[{app.get('name', '?')}].args.{e}" for e in format_validation_error(ServeArgs, exc)]
        raise ConfigError(errs, source=source) from None


def start(path: str | Path, *, port: int | None = None, host: str | None = None, blocking: bool = False,
          overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Deploy every application of the Serve config at ``path`` with ``serve.run``; returns
    ``{"url", "apps"}``. ``overrides`` are merged into each application's args (tests, benchmarks)."""
    from ray import serve

    from recsys.serving.app import build_app

    cfg = read_serve_config(path)
    http = dict(cfg.get("http_options") or {})
    if port is not None:
        http["port"] = port
    if host is not None:
        http["host"] = host
    serve.start(http_options=http, proxy_location=cfg.get("proxy_location", "HeadOnly"))
    names = []
    for app in cfg["applications"]:
        if overrides:
            app = {**app, "args": {**(app.get("args") or {}), **overrides}}
        args = validate_args(app, str(path))
        name = app.get("name", "default")
        serve.run(build_app(args), name=name, route_prefix=app.get("route_prefix", "/"), blocking=False)
        names.append(name)
    url = f"http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}"
    if blocking:  # pragma: no cover - interactive
        import time

        print(f"recsys serving {names} at {url} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            for name in names:
                serve.delete(name)
    return {"url": url, "apps": names}
