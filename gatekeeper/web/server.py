"""Serving the web: uvicorn in a thread of its own (``gatekeeper run``,
``gatekeeper sandbox``), or as the whole process (``gatekeeper web``)."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette

from gatekeeper.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["WebServer"]


class WebServer:
    """uvicorn serving ``app`` on ``host:port``; its own thread ("web")
    runs the event loop. ``start`` returns once it listens."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def _bind(self) -> socket.socket:
        """The listening socket, bound here so a port in use is a clear error.

        :raises ConfigError: the address cannot be listened on.
        """
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit it: uvicorn writes a response's head and
        # body apart, and without it the body waits ~40 ms on the client's
        # delayed ACK (every request, measured by bench/report_transport.py).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used: {exc}"
            raise ConfigError(
                f"web.listen: {self.host}:{self.port} {why} "
                "(set web.listen to another port, or web.enabled: false)"
            ) from exc
        sock.set_inheritable(True)
        return sock

    def start(self, timeout: float = 30.0) -> None:
        """Listen and serve in the background.

        :raises ConfigError: the address is in use or not ours to listen on.
        """
        sock = self._bind()
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=5
        )
        server = uvicorn.Server(config)
        # Off the main thread uvicorn leaves signals alone: they are the process's.
        self._server = server

        def serve() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except Exception:
                log.exception("the web server stopped")
            finally:
                sock.close()

        self._thread = threading.Thread(target=serve, name="web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not server.started:
            raise ConfigError(f"web: the server on {self.url} did not start")
        log.info("web: serving on %s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in this thread until stopped (``gatekeeper web``)."""
        self.start()
        assert self._thread is not None
        while self._thread.is_alive():
            self._thread.join(1.0)
