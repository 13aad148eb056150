"""The embedded user-state store as a Serve deployment: one replica holds a Valkey server process
(``recsys.online.server``) whose append-only file lives in ``online.dir``; the ingress asks it for the
URL and then talks to the server directly (no hop through this replica per request). A server that
died is restarted in place by the health check, on the same port, from its append-only file."""

from __future__ import annotations

from typing import Any

from ray import serve

from recsys.online.server import EmbeddedServer


@serve.deployment
class StateServer:
    def __init__(self, data_dir: str, appendfsync: str):
        self.server = EmbeddedServer(data_dir, appendfsync)
        self.server.start()
        self.restarts = 0
        self.held_down = False  # kill() keeps it down (a drill) until restart()

    async def url(self) -> str:
        return self.server.url

    def check_health(self) -> None:
        if not self.held_down and not self.server.running():
            self.restart()

    def restart(self) -> str:
        """Start the server again (same port, same append-only file): every acknowledged write is back."""
        if self.server.running():
            self.server.stop()
        self.held_down = False
        self.restarts += 1
        return self.server.start()

    def kill(self) -> None:
        """SIGKILL the server (a crash drill): requests degrade until ``restart()`` (the health check does
        not restart a server killed here; it does restart one that died on its own)."""
        self.held_down = True
        self.server.kill()

    def info(self) -> dict[str, Any]:
        return {"url": self.server.url, "running": self.server.running(), "restarts": self.restarts,
                "dir": str(self.server.data_dir)}  # fmt: skip

    def __del__(self) -> None:  # graceful shutdown: the AOF is complete, no process left behind
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()
