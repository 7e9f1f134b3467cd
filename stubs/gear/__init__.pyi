# Type stubs for the parts of gear (0.16) that gatekeeper uses.
#
# gear ships no types; these are read from its source. They are for mypy
# only (``mypy_path = "stubs"``) and are not part of the installed package.
# What gatekeeper does not use is left out on purpose: using more of gear
# means describing it here first, so nothing it hands out is ever Any.
#
# Bytes and text, as gear has them: the plain classes carry bytes
# (arguments, unique, data, exception); the Text* classes decode them as
# UTF-8 and hand out str. ``handle`` is bytes everywhere (None on a Job until
# the server has answered its submit). A job's ``name`` is str in both.
# gear's Text* classes change the types of attributes they inherit, which a
# subclass may not do in a type; the ``ignore[override]`` lines below record
# that, in this file only.

import socket as _socket
import threading
from collections.abc import Iterable, Sequence
from typing import ClassVar, Final

PRECEDENCE_NORMAL: Final = 0
PRECEDENCE_LOW: Final = 1
PRECEDENCE_HIGH: Final = 2

# gear names these after built-ins; they do not derive from them.
class ConnectionError(Exception): ...
class InvalidDataError(Exception): ...
class ConfigurationError(Exception): ...
class NoConnectedServersError(Exception): ...
class UnknownJobError(Exception): ...
class InterruptedError(Exception): ...
class TimeoutError(Exception): ...
class GearmanError(Exception): ...
class DisconnectError(Exception): ...
class RetryIOError(Exception): ...

class Connection:
    """One server of a client or worker; gear reconnects the same object."""

    host: str
    port: int
    client_id: bytes | None
    connected: bool
    connect_time: float | None
    #: Set by Worker (``INIT``, ``IDLE``, ``SLEEP``, ``GRAB_WAIT``).
    state: str
    state_time: float
    #: Jobs submitted over this connection, by handle.
    related_jobs: dict[bytes, Job]
    #: The socket (an ssl.SSLSocket over TLS) while connected.
    conn: _socket.socket | None
    def __init__(
        self,
        host: str,
        port: int,
        ssl_key: str | None = None,
        ssl_cert: str | None = None,
        ssl_ca: str | None = None,
        client_id: str | bytes | None = "unknown",
        keepalive: bool = False,
        tcp_keepidle: int = 7200,
        tcp_keepintvl: int = 75,
        tcp_keepcnt: int = 9,
    ) -> None: ...
    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    def reconnect(self) -> None: ...
    def sendPacket(self, packet: Packet) -> None: ...  # noqa: N802
    def sendAdminRequest(self, request: AdminRequest, timeout: float | None = 90) -> None: ...  # noqa: N802
    def echo(self, data: bytes | None = None, timeout: float | None = 30) -> bytes: ...

class AdminRequest:
    """Base of the text-protocol requests; ``response`` is set when answered."""

    command: ClassVar[bytes | None]
    arguments: Sequence[bytes]
    response: bytes | None
    def __init__(self, *arguments: bytes) -> None: ...
    def getCommand(self) -> bytes: ...  # noqa: N802
    def waitForResponse(self, timeout: float | None = None) -> bool: ...  # noqa: N802

class StatusAdminRequest(AdminRequest):
    def __init__(self) -> None: ...

class Packet:
    code: bytes
    ptype: int
    data: bytes
    connection: Connection | None
    def __init__(
        self, code: bytes, ptype: int, data: bytes, connection: Connection | None = None
    ) -> None: ...
    def getArgument(self, index: int, last: bool = False) -> bytes: ...  # noqa: N802
    def getJob(self) -> Job: ...  # noqa: N802

class FunctionRecord:
    name: bytes
    # gear joins it into the CAN_DO_TIMEOUT packet as it is: bytes.
    timeout: bytes | None
    def __init__(self, name: bytes, timeout: bytes | None = None) -> None: ...

class BaseJob:
    handle: bytes | None
    connection: Connection | None
    def __init__(
        self,
        name: str | bytes,
        arguments: bytes,
        unique: str | bytes | None = None,
        handle: bytes | None = None,
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @name.setter
    def name(self, value: str | bytes) -> None: ...
    @property
    def arguments(self) -> bytes: ...
    @arguments.setter
    def arguments(self, value: bytes) -> None: ...
    @property
    def unique(self) -> bytes | None: ...
    @unique.setter
    def unique(self, value: bytes) -> None: ...
    @property
    def binary_name(self) -> bytes: ...
    @property
    def binary_arguments(self) -> bytes: ...
    @property
    def binary_unique(self) -> bytes | None: ...

class Job(BaseJob):
    """A job a client submits; gear's poll thread fills in what comes back."""

    warning: bool
    complete: bool
    failure: bool
    numerator: bytes | None
    denominator: bytes | None
    fraction_complete: float | None
    known: bool | None
    running: bool | None
    def __init__(
        self, name: str | bytes, arguments: bytes, unique: str | bytes | None = None
    ) -> None: ...
    @property
    def data(self) -> list[bytes]: ...
    @data.setter
    def data(self, value: list[bytes]) -> None: ...
    @property
    def exception(self) -> bytes | None: ...
    @exception.setter
    def exception(self, value: bytes) -> None: ...

class TextJob(Job):
    """A Job whose arguments, unique, data and exception are UTF-8 text."""

    def __init__(
        self, name: str | bytes, arguments: str | bytes, unique: str | bytes | None = None
    ) -> None: ...
    @property  # type: ignore[override]
    def arguments(self) -> str: ...
    @arguments.setter
    def arguments(self, value: str | bytes) -> None: ...
    @property  # type: ignore[override]
    def unique(self) -> str | None: ...
    @unique.setter
    def unique(self, value: str | bytes) -> None: ...
    @property  # type: ignore[override]
    def data(self) -> list[str]: ...
    @data.setter
    def data(self, value: list[str]) -> None: ...
    @property  # type: ignore[override]
    def exception(self) -> str | None: ...
    @exception.setter
    def exception(self, value: str | bytes) -> None: ...

class WorkerJob(BaseJob):
    """A job Gearman assigned to a worker (from ``Worker.getJob``)."""

    handle: bytes
    connection: Connection
    def __init__(
        self, handle: bytes, name: str | bytes, arguments: bytes, unique: bytes | None = None
    ) -> None: ...
    def sendWorkData(self, data: bytes = b"") -> None: ...  # noqa: N802
    def sendWorkWarning(self, data: bytes = b"") -> None: ...  # noqa: N802
    def sendWorkStatus(self, numerator: float, denominator: float) -> None: ...  # noqa: N802
    def sendWorkComplete(self, data: bytes = b"") -> None: ...  # noqa: N802
    def sendWorkFail(self) -> None: ...  # noqa: N802
    def sendWorkException(self, data: bytes = b"") -> None: ...  # noqa: N802

class TextWorkerJob(WorkerJob):
    """A WorkerJob whose arguments and unique are text; it sends str or bytes."""

    @property  # type: ignore[override]
    def arguments(self) -> str: ...
    @arguments.setter
    def arguments(self, value: str | bytes) -> None: ...
    @property  # type: ignore[override]
    def unique(self) -> str | None: ...
    @unique.setter
    def unique(self, value: str | bytes) -> None: ...
    def sendWorkData(self, data: str | bytes = "") -> None: ...  # noqa: N802
    def sendWorkWarning(self, data: str | bytes = "") -> None: ...  # noqa: N802
    def sendWorkComplete(self, data: str | bytes = "") -> None: ...  # noqa: N802
    def sendWorkException(self, data: str | bytes = "") -> None: ...  # noqa: N802

class BaseClientServer:
    """Runs gear's poll and connect threads; handlers run in the poll thread."""

    client_id: bytes | None
    running: bool
    active_connections: list[Connection]
    inactive_connections: list[Connection]
    connections_condition: threading.Condition
    def __init__(self, client_id: str | bytes | None = None) -> None: ...
    def _lostConnection(self, conn: Connection) -> None: ...  # noqa: N802
    def _onConnect(self, conn: Connection) -> None: ...  # noqa: N802
    def handleDisconnect(self, job: Job) -> Job: ...  # noqa: N802
    def shutdown(self) -> None: ...

class BaseClient(BaseClientServer):
    def __init__(self, client_id: str | bytes = "unknown") -> None: ...
    def addServer(  # noqa: N802
        self,
        host: str,
        port: int = 4730,
        ssl_key: str | None = None,
        ssl_cert: str | None = None,
        ssl_ca: str | None = None,
        keepalive: bool = False,
        tcp_keepidle: int = 7200,
        tcp_keepintvl: int = 75,
        tcp_keepcnt: int = 9,
    ) -> None: ...
    def waitForServer(self, timeout: float | None = None) -> None: ...  # noqa: N802
    def getConnection(self) -> Connection: ...  # noqa: N802
    def broadcast(self, packet: Packet) -> None: ...
    def sendPacket(self, packet: Packet, connection: Connection) -> None: ...  # noqa: N802

class Client(BaseClient):
    """A Gearman client. The handle* methods run in gear's poll thread and
    return the Job (the object that was submitted) the packet is about."""

    options: set[bytes]
    def submitJob(  # noqa: N802
        self, job: Job, background: bool = False, precedence: int = 0, timeout: float | None = 30
    ) -> None: ...
    def handleJobCreated(self, packet: Packet) -> Job: ...  # noqa: N802
    def handleWorkComplete(self, packet: Packet) -> Job: ...  # noqa: N802
    def handleWorkFail(self, packet: Packet) -> Job: ...  # noqa: N802
    def handleWorkException(self, packet: Packet) -> Job: ...  # noqa: N802
    def handleWorkData(self, packet: Packet) -> Job: ...  # noqa: N802
    def handleWorkWarning(self, packet: Packet) -> Job: ...  # noqa: N802
    def handleWorkStatus(self, packet: Packet) -> Job: ...  # noqa: N802

class Worker(BaseClient):
    """A Gearman worker; ``getJob`` blocks until a job is assigned."""

    job_class: ClassVar[type[WorkerJob]]
    worker_id: str | bytes
    #: The registered functions, by name.
    functions: dict[bytes, FunctionRecord]
    def __init__(
        self, client_id: str | bytes | None = None, worker_id: str | bytes | None = None
    ) -> None: ...
    def registerFunction(self, name: str | bytes, timeout: bytes | None = None) -> None: ...  # noqa: N802
    def unRegisterFunction(self, name: str | bytes) -> None: ...  # noqa: N802
    def setFunctions(self, functions: Iterable[FunctionRecord]) -> None: ...  # noqa: N802
    def _sendCanDo(self, name: bytes) -> None: ...  # noqa: N802
    def getJob(self) -> WorkerJob: ...  # noqa: N802
    def stopWaitingForJobs(self) -> None: ...  # noqa: N802

class TextWorker(Worker):
    """A Worker whose jobs are TextWorkerJobs."""

    job_class: ClassVar[type[TextWorkerJob]]
    def getJob(self) -> TextWorkerJob: ...  # noqa: N802

class Server(BaseClientServer):
    """gear's own server, in this process (gear calls it one for testing)."""

    #: The port it listens on (the one chosen when 0 was asked for).
    port: int
    #: The listening socket (its accept thread reads the attribute at each accept).
    socket: _socket.socket
    #: Jobs it holds now: all, those a worker took, those none took yet.
    total_jobs: int
    running_jobs: int
    waiting_jobs: int
    def __init__(
        self,
        port: int = 4730,
        ssl_key: str | None = None,
        ssl_cert: str | None = None,
        ssl_ca: str | None = None,
        statsd_host: str | None = None,
        statsd_port: int = 8125,
        statsd_prefix: str | None = None,
        server_id: str | bytes | None = None,
        acl: object | None = None,
        host: str | None = None,
        keepalive: bool = False,
        tcp_keepidle: int = 7200,
        tcp_keepintvl: int = 75,
        tcp_keepcnt: int = 9,
    ) -> None: ...
