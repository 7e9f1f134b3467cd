"""The live console: a worker serves its running builds' console.txt to the web.

A plain TCP line protocol (:mod:`gatekeeper.model.console`), the way a
finger daemon answers one name, rather than a second HTTP stack in every
worker: one request line in, bytes out, nothing else understood, so there is
no URL, header or method to get wrong and no way to name a file. The web
proxies it to browsers (``/build/<uuid>/console``) from wherever the worker
runs; the address the web dials is recorded on the build row.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gatekeeper.errors import ConfigError
from gatekeeper.model.console import OK, REQUEST_LIMIT, is_build_uuid
from gatekeeper.model.outside import shown

log = logging.getLogger(__name__)

#: Bytes read from console.txt and sent at a time.
CHUNK = 65536


@dataclass
class _Console:
    path: Path
    ended: threading.Event = field(default_factory=threading.Event)
    ended_at: float | None = None


class ConsoleServer:
    """Serves, read-only and by uuid, the consoles of the builds this worker
    runs now or ended within ``keep`` seconds (a reader who asks just as the
    build ends still gets all of it). The build threads call :meth:`running`
    and :meth:`ended`; a listening thread and one thread per reader serve.

    ``host``/``port`` is where it listens (port 0: any free one);
    ``advertise`` is the host others dial (default: the listen host, or this
    host's name when listening on every address).

    :raises ConfigError: the address cannot be listened on (bound at once,
        so the worker does not start without its console).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        advertise: str = "",
        keep: float = 60.0,
        poll: float = 0.1,
    ) -> None:
        self.keep = keep
        self.poll = poll
        self._advertise = advertise
        self._lock = threading.Lock()
        self._consoles: dict[str, _Console] = {}
        self._stopping = threading.Event()
        self._readers = 0
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class((host, port), _make_handler(self))
        except OSError as exc:
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used: {exc}"
            raise ConfigError(
                f"worker.console-listen: {host}:{port} {why} (set another port, or 0 for any)"
            ) from exc
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``host:port`` for the build row: where the web dials."""
        host, port = self._server.server_address[:2]
        shown_host = self._advertise or str(host)
        if not self._advertise and shown_host in ("0.0.0.0", "::"):
            shown_host = socket.getfqdn()
        if ":" in shown_host:
            shown_host = f"[{shown_host}]"
        return f"{shown_host}:{port}"

    @property
    def readers(self) -> int:
        """Consoles being sent now (a reader that hung up is not counted)."""
        with self._lock:
            return self._readers

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="console-server", daemon=True
        )
        self._thread.start()
        log.info("serving live consoles at %s", self.address)

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def running(self, uuid: str, path: Path) -> None:
        """Build ``uuid`` runs here and writes its console to ``path``."""
        with self._lock:
            self._forget_old()
            self._consoles[uuid] = _Console(path)

    def ended(self, uuid: str) -> None:
        """Build ``uuid`` ended: its console is complete."""
        with self._lock:
            console = self._consoles.get(uuid)
            if console is not None:
                console.ended_at = time.monotonic()
                console.ended.set()
            self._forget_old()

    def _find(self, uuid: str) -> _Console | None:
        with self._lock:
            self._forget_old()
            return self._consoles.get(uuid)

    def _forget_old(self) -> None:
        limit = time.monotonic() - self.keep
        for uuid in [
            u for u, c in self._consoles.items() if c.ended_at is not None and c.ended_at < limit
        ]:
            del self._consoles[uuid]

    # -- one reader (its own thread) ------------------------------------------

    def serve(self, sock: socket.socket) -> None:
        # A request line that does not come soon is a connection held open.
        sock.settimeout(10)
        request = b""
        try:
            while not request.endswith(b"\n") and len(request) <= REQUEST_LIMIT:
                data = sock.recv(REQUEST_LIMIT + 1 - len(request))
                if not data:
                    break
                request += data
        except OSError:
            return
        uuid = request.decode("ascii", "replace").strip()
        if not request.endswith(b"\n") or not is_build_uuid(uuid):
            self._refuse(sock, uuid, "not a build uuid")
            return
        console = self._find(uuid)
        if console is None:
            self._refuse(sock, uuid, "no such build running here")
            return
        # A reader that stops reading does not hold a thread for ever.
        sock.settimeout(30)
        with self._lock:
            self._readers += 1
        try:
            sock.sendall(OK)
            self._follow(sock, console)
        except OSError as exc:
            log.debug("console reader of %s went away: %s", uuid, exc)
        finally:
            with self._lock:
                self._readers -= 1

    def _refuse(self, sock: socket.socket, request: str, why: str) -> None:
        log.info("console request refused (%s): %s", why, shown(request))
        try:
            sock.sendall(f"ERROR {why}\n".encode())
        except OSError:
            pass

    def _follow(self, sock: socket.socket, console: _Console) -> None:
        """console.txt from its first byte, then what is written to it, until
        the build ended (then the rest) or the reader hung up."""
        while not console.path.is_file():
            if console.ended.is_set() or not self._wait(sock):
                return
        with open(console.path, "rb") as fh:
            while True:
                # Read before looking at ended: what was written before the
                # build ended is read after it, in the last pass.
                ended = console.ended.is_set()
                chunk = fh.read(CHUNK)
                if chunk:
                    sock.sendall(chunk)
                elif ended or not self._wait(sock):
                    return

    def _wait(self, sock: socket.socket) -> bool:
        """Wait a poll interval; False when the reader hung up (its socket
        reads as closed) or the server stops."""
        readable, _, _ = select.select([sock], [], [], self.poll)
        if readable:
            # The reader has nothing to say after its request: whatever it
            # sends is dropped; an end of stream means it hung up.
            try:
                if not sock.recv(4096):
                    return False
            except OSError:
                return False
        return not self._stopping.is_set()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def _make_handler(owner: ConsoleServer) -> type[socketserver.BaseRequestHandler]:
    class _Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            assert isinstance(self.request, socket.socket)
            owner.serve(self.request)

    return _Handler
