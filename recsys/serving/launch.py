"""Start a Serve config file's applications on the connected Ray (what `recsys serve` and the
tests use; `serve run configs/serve/X.yaml` and `serve deploy` read the same file), and stop what
is running (`recsys serve --stop`: a foreground `recsys serve` through its pid file, Serve apps on
a cluster through its dashboard's REST API)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import ValidationError

from recsys.config.loader import ConfigError, format_validation_error
from recsys.config.paths import runs_root
from recsys.serving.config import ServeArgs

SERVE_APPS_API = "/api/serve/applications/"  # the dashboard's Serve REST API (what `serve shutdown` calls)


def read_serve_config(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            [f"--config: file not found: {str(p)!r}; pass a Serve config such as configs/serve/tiny.yaml"]
        )
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not data.get("applications"):
        raise ConfigError(
            [f"{p}: a Serve config needs an `applications:` list (see configs/serve/tiny.yaml)"]
        )
    return data


def validate_args(app: dict[str, Any], source: str) -> ServeArgs:
    """The application's ``args`` as ServeArgs, or a ConfigError listing every problem."""
    try:
        return ServeArgs.model_validate(app.get("args") or {})
    except ValidationError as exc:
        errs = [
            f"applications[{app.get('name', '?')}].args.{e}" for e in format_validation_error(ServeArgs, exc)
        ]
        raise ConfigError(errs, source=source) from None


def start(
    path: str | Path,
    *,
    port: int | None = None,
    host: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Deploy every application of the Serve config at ``path`` with ``serve.run``; returns
    ``{"url", "apps"}``. ``overrides`` are merged into each application's args (tests, benchmarks)."""
    from ray import serve  # heavy: Ray Serve, only when deploying

    from recsys.serving.app import build_app  # heavy: FastAPI, torch, the deployments

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
    host = http.get("host", "127.0.0.1")
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{http.get('port', 8000)}"  # an address to open
    return {"url": url, "apps": names}


def pid_file() -> Path:
    """Where a foreground `recsys serve` writes ``<pid> <url>`` while it runs."""
    return Path(runs_root()) / "serve" / "serve.pid"


def serve_forever(
    names: list[str], url: str, pid_path: Path | None = None
) -> None:  # pragma: no cover - interactive
    """Block until Ctrl-C (or `recsys serve --stop`, which sends SIGINT through the pid file), then delete the apps."""
    from ray import serve  # heavy: Ray Serve, only when serving

    pid_path = pid_path or pid_file()
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    try:  # the pid file inside: a --stop that comes at once still finds the handler below
        pid_path.write_text(f"{os.getpid()} {url}\n", encoding="utf-8")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        for name in names:
            serve.delete(name)
    finally:
        pid_path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, but not ours to stop
        return True
    stat = Path(f"/proc/{pid}/stat")  # Linux: an exited child its parent has not reaped yet is a zombie (Z)
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stop_foreground(pid_path: Path | None = None, timeout_s: float = 60.0) -> int | None:
    """SIGINT the foreground `recsys serve` named in the pid file and wait for it to exit; its pid, or
    None when none runs (a stale pid file is removed)."""
    pid_path = pid_path or pid_file()
    if not pid_path.is_file():
        return None
    try:
        pid = int(pid_path.read_text(encoding="utf-8").split()[0])
    except (ValueError, IndexError):
        pid_path.unlink(missing_ok=True)
        return None
    if not _alive(pid):
        pid_path.unlink(missing_ok=True)
        return None
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        raise TimeoutError(
            f"recsys serve (pid {pid}) did not stop within {timeout_s:.0f}s; kill it: kill {pid}"
        )
    pid_path.unlink(missing_ok=True)
    return pid


def serve_apps(client: httpx.Client) -> list[str]:
    """Names of the Serve applications running on the cluster whose dashboard ``client`` talks to."""
    r = client.get(SERVE_APPS_API)
    r.raise_for_status()
    return sorted((r.json() or {}).get("applications") or {})


def stop_apps(client: httpx.Client, timeout_s: float = 60.0) -> list[str]:
    """Shut Serve down on that cluster (every application, its proxies, the port); the names stopped."""
    names = serve_apps(client)
    if not names:
        return []
    client.delete(SERVE_APPS_API).raise_for_status()
    deadline = time.monotonic() + timeout_s
    while serve_apps(client) and time.monotonic() < deadline:
        time.sleep(0.5)
    return names
