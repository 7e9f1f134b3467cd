"""The embedded Gearman server (gear's own, in-process)."""

from __future__ import annotations

import logging
import socket

import gear

from gatekeeper.dispatch.certs import TlsFiles
from gatekeeper.dispatch.tls import RoleAcl, gear_kwargs
from gatekeeper.dispatch.wire import no_delay
from gatekeeper.model.metrics import GearmanQueue

log = logging.getLogger(__name__)

# How long a new connection has to finish its TLS handshake. gear does the
# handshake in its single accept thread on a blocking socket: without a
# limit, one peer that connects and sends nothing stops everyone else from
# connecting.
HANDSHAKE_TIMEOUT = 5.0


class _AcceptingSocket:
    """The listening socket, handing out accepted sockets that send each
    packet at once (see :mod:`gatekeeper.dispatch.wire`) and, over TLS, with
    a timeout.

    gear's ``ServerConnection`` makes the socket non-blocking right after the
    handshake, so the timeout bounds only the handshake.
    """

    def __init__(self, sock: socket.socket, handshake_timeout: float | None) -> None:
        self._sock = sock
        self._handshake_timeout = handshake_timeout

    def accept(self) -> tuple[socket.socket, object]:
        conn, addr = self._sock.accept()
        no_delay(conn)
        if self._handshake_timeout is not None:
            conn.settimeout(self._handshake_timeout)
        return conn, addr

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


class EmbeddedGearman:
    """A ``gear.Server`` in this process; gear runs its own threads.

    With ``tls`` (the server's certificate) every connection must present a
    certificate of the same CA, and :class:`~gatekeeper.dispatch.tls.RoleAcl`
    decides what it may register and submit; without it, plain TCP and no
    access control (``gearman.insecure``).
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 4730, tls: TlsFiles | None = None
    ) -> None:
        self.host = host
        self.tls = tls
        self._server = gear.Server(
            port, host=host, acl=RoleAcl() if tls is not None else None, **gear_kwargs(tls)
        )
        self._server.socket = _AcceptingSocket(  # type: ignore[assignment]
            self._server.socket, HANDSHAKE_TIMEOUT if tls is not None else None
        )
        self.port: int = self._server.port
        log.info(
            "embedded gearman listening on %s:%d (%s)",
            host,
            self.port,
            "TLS, client certificates required" if tls is not None else "plain TCP",
        )

    def queue(self) -> GearmanQueue:
        """Jobs held now (for metrics; gear's counters, read without its lock)."""
        server = self._server
        return GearmanQueue(server.total_jobs, server.running_jobs, server.waiting_jobs)

    def stop(self) -> None:
        self._server.shutdown()
