"""The embedded Gearman server (gear's own, in-process)."""

from __future__ import annotations

import logging

import gear

from gatekeeper.model.metrics import GearmanQueue

log = logging.getLogger(__name__)


class EmbeddedGearman:
    """A ``gear.Server`` in this process; gear runs its own threads."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4730) -> None:
        self.host = host
        self._server = gear.Server(port, host=host)
        self.port: int = self._server.port
        log.info("embedded gearman listening on %s:%d", host, self.port)

    def queue(self) -> GearmanQueue:
        """Jobs held now (for metrics; gear's counters, read without its lock)."""
        server = self._server
        return GearmanQueue(server.total_jobs, server.running_jobs, server.waiting_jobs)

    def stop(self) -> None:
        self._server.shutdown()
