"""The embedded Gearman server (gear's own, in-process)."""

from __future__ import annotations

import logging

import gear

log = logging.getLogger(__name__)


class EmbeddedGearman:
    """A ``gear.Server`` in this process; gear runs its own threads."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4730) -> None:
        self.host = host
        self._server = gear.Server(port, host=host)
        self.port: int = self._server.port
        log.info("embedded gearman listening on %s:%d", host, self.port)

    def stop(self) -> None:
        self._server.shutdown()
