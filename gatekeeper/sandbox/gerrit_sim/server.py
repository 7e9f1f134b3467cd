"""The simulator's SSH server: paramiko, one thread per exec request.

Threads: one accept thread; paramiko's own thread per connection; one
handler thread per exec request (plus pump threads for git). Every exec
request ends with an exit status, then the channel closes.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

from gatekeeper.errors import GerritError
from gatekeeper.gerrit import cmdline
from gatekeeper.sandbox.gerrit_sim import commands, push, review
from gatekeeper.sandbox.gerrit_sim.faults import Faults
from gatekeeper.sandbox.gerrit_sim.hook import COMMIT_MSG_HOOK
from gatekeeper.sandbox.gerrit_sim.options import UsageError, operand
from gatekeeper.sandbox.gerrit_sim.state import RAW_LINE, SimState

log = logging.getLogger(__name__)


class _DropResets(logging.Filter):
    """A client that hangs up abruptly is normal for a server, not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Socket exception:")


_transport_log = logging.getLogger(f"{__name__}.transport")
_transport_log.addFilter(_DropResets())

_MSG_CHANNEL_SUCCESS = 99
_GIT_SERVICES = {
    "git-upload-pack": "upload-pack",
    "git-receive-pack": "receive-pack",
}
_CHUNK = 65536
#: The SSH library Gerrit 3.x names after its version in the banner.
SSHD_NAME = "APACHE-SSHD-2.12.0"
#: Where ``scp`` finds the commit-msg hook, as on Gerrit.
HOOK_PATH = "hooks/commit-msg"

#: A stream-events session's queue of events (SimState.subscribe; None: stop).
_Subscriber = queue.SimpleQueue[dict[str, Any] | None]


class _Transport(paramiko.Transport):
    """A paramiko transport that starts exec handlers after the exec reply.

    paramiko answers an exec request only after ``check_channel_exec_request``
    returns; a handler started from inside it could close the channel before
    the reply is sent, and the client would then see "Channel closed".
    So the handler is started when the success reply leaves the transport.
    Owned by paramiko's connection thread.
    """

    def __init__(self, sock: socket.socket, version: str) -> None:
        super().__init__(sock)
        # What real Gerrit (Apache MINA SSHD) sends; clients such as
        # git-review and gerritlib read the version from it.
        self.local_version = f"SSH-2.0-GerritCodeReview_{version} ({SSHD_NAME})"
        self._pending: dict[int, threading.Thread] = {}
        self._pending_lock = threading.Lock()

    def start_after_reply(self, channel: paramiko.Channel, thread: threading.Thread) -> None:
        with self._pending_lock:
            self._pending[channel.remote_chanid] = thread

    def _send_user_message(self, data: paramiko.Message) -> None:
        # A private paramiko method, absent from types-paramiko.
        super()._send_user_message(data)  # type: ignore[misc]
        raw = data.asbytes()
        if len(raw) >= 5 and raw[0] == _MSG_CHANNEL_SUCCESS:
            with self._pending_lock:
                thread = self._pending.pop(int.from_bytes(raw[1:5], "big"), None)
            if thread is not None:
                thread.start()


class _Interface(paramiko.ServerInterface):
    """paramiko's callbacks for one connection; runs in its transport thread."""

    def __init__(self, server: SshServer, transport: _Transport) -> None:
        self._server = server
        self._transport = transport
        self._env: dict[int, dict[str, str]] = {}

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        with self._server.state.lock:
            account = self._server.state.accounts.get(username)
        if account is not None and account.key_base64 == key.get_base64():
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return OPEN_SUCCEEDED
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_env_request(
        self, channel: paramiko.Channel, name: bytes | str, value: bytes | str
    ) -> bool:
        key = name.decode() if isinstance(name, bytes) else name
        if key != "GIT_PROTOCOL":
            return False
        text = value.decode() if isinstance(value, bytes) else value
        self._env.setdefault(channel.get_id(), {})[key] = text
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        try:
            line = command.decode("utf-8")
        except UnicodeDecodeError:
            return False
        username = self._transport.get_username() or ""
        env = self._env.pop(channel.get_id(), {})
        # Subscribe before the exec reply, so a client whose exec_command()
        # has returned is sure to see every later event.
        subscriber = None
        if cmdline.split(line)[:2] == ["gerrit", "stream-events"]:
            subscriber = self._server.state.subscribe(stream=True)
        thread = threading.Thread(
            target=self._server.handle,
            args=(channel, username, line, env, subscriber),
            name=f"gerrit-sim-exec-{username}",
            daemon=True,
        )
        self._transport.start_after_reply(channel, thread)
        return True


class SshServer:
    """Accepts SSH connections for the simulator; owns the accept thread."""

    def __init__(
        self,
        state: SimState,
        host_key: paramiko.PKey,
        host: str,
        port: int,
        faults: Faults | None = None,
    ) -> None:
        self.state = state
        self.faults = faults or Faults()
        self._host_key = host_key
        self._sock = socket.create_server((host, port))
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._transports: list[paramiko.Transport] = []
        self._handlers: set[threading.Thread] = set()
        # Open stream-events sessions: subscriber -> channel.
        self._streams: dict[_Subscriber, paramiko.Channel] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._accept_loop, name="gerrit-sim-accept", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.faults.release_all()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self.state.close_subscribers()
        # Let stream-events sessions (woken above) and quick commands send
        # their exit status before the connections go away.
        deadline = time.monotonic() + 2
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            handler.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            transports, self._transports = self._transports, []
        for transport in transports:
            transport.close()
        self._thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if not self._stop.is_set():
                    log.exception("accept failed")
                break
            try:
                # Small request/response packets; without this, Nagle plus
                # delayed ACKs add ~40 ms to every command.
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                transport = _Transport(conn, self.state.version)
                transport.set_log_channel(_transport_log.name)
                transport.add_server_key(self._host_key)
                transport.start_server(event=threading.Event(), server=_Interface(self, transport))
                with self._lock:
                    self._transports = [t for t in self._transports if t.is_active()]
                    self._transports.append(transport)
            except Exception:
                log.exception("could not start SSH session")
                conn.close()

    # -- exec handling (one thread per request) -----------------------------------

    def handle(
        self,
        channel: paramiko.Channel,
        username: str,
        line: str,
        env: dict[str, str],
        subscriber: _Subscriber | None,
    ) -> None:
        status = 1
        answer = True
        with self._lock:
            self._handlers.add(threading.current_thread())
        try:
            argv = cmdline.split(line)
            faults = self.faults
            if subscriber is not None:
                status = self._stream_events(channel, username, argv[2:], subscriber)
            elif argv[:1] == ["scp"]:
                status = _scp_send(channel, argv)
            elif argv and (argv[0] in _GIT_SERVICES or argv[:1] == ["git"]):
                status = self._git(channel, username, argv, env)
            elif not faults.admit(argv, username):
                # A stalled command that is given up: no output, no exit status.
                answer = False
            else:
                stdin = _read_stdin(channel) if _wants_stdin(self.state, argv) else ""
                result = commands.run(self.state, username, line, argv, stdin)
                if faults.cut_after(argv):
                    # It ran; the connection goes before the answer does.
                    answer = False
                    transport = channel.get_transport()
                    if transport is not None:
                        transport.close()
                    return
                if result.stdout:
                    channel.sendall(result.stdout.encode())
                if result.stderr:
                    channel.sendall_stderr(result.stderr.encode())
                status = result.exit_status
        except Exception:
            log.exception("command %r from %s failed", line, username)
            try:
                channel.sendall_stderr(b"fatal: internal server error\n")
            except Exception:
                log.debug("could not report the failure to %s", username)
        finally:
            try:
                if answer:
                    channel.send_exit_status(status)
            except Exception:
                log.debug("channel of %s closed before exit status", username)
            try:
                channel.close()
            except (EOFError, OSError, paramiko.SSHException):
                # The client (or the server's stop) already closed the transport.
                log.debug("channel of %s already closed", username)
            with self._lock:
                self._handlers.discard(threading.current_thread())

    def _stream_events(
        self, channel: paramiko.Channel, username: str, argv: list[str], subscriber: _Subscriber
    ) -> int:
        refusal, types = stream_access(self.state, username, argv)
        if refusal:
            self.state.unsubscribe(subscriber)
            channel.sendall_stderr(refusal.encode())
            return 1

        def watch_client() -> None:
            # recv() returns b"" once the client closes or sends EOF.
            try:
                while channel.recv(_CHUNK):
                    pass
            except Exception:
                log.debug("stream-events client went away")
            self.state.unsubscribe(subscriber)

        threading.Thread(target=watch_client, name="gerrit-sim-stream-watch", daemon=True).start()
        with self._lock:
            self._streams[subscriber] = channel
        try:
            while not self._stop.is_set():
                event = subscriber.get()
                if event is None:
                    break
                if RAW_LINE in event:
                    channel.sendall(event[RAW_LINE].encode() + b"\n")
                    continue
                if types and event.get("type") not in types:
                    continue
                channel.sendall((json.dumps(event) + "\n").encode())
        finally:
            self.state.unsubscribe(subscriber)
            with self._lock:
                self._streams.pop(subscriber, None)
        return 0

    def stream_count(self) -> int:
        with self._lock:
            return len(self._streams)

    def cut_streams(self) -> int:
        """Drop the SSH connection of every stream-events session at once, as a
        network failure would (no exit status); returns how many were cut."""
        with self._lock:
            streams, self._streams = self._streams, {}
        for subscriber, channel in streams.items():
            # From now on events pile up for nobody: they are missed.
            self.state.unsubscribe(subscriber)
            transport = channel.get_transport()
            try:
                if transport is not None:
                    transport.close()
                else:
                    channel.close()
            except (EOFError, OSError, paramiko.SSHException):
                log.debug("stream-events connection already gone")
        return len(streams)

    def _git(
        self, channel: paramiko.Channel, username: str, argv: list[str], env: dict[str, str]
    ) -> int:
        if argv[0] == "git" and len(argv) > 1:
            argv = [f"git-{argv[1]}", *argv[2:]]
        service = _GIT_SERVICES.get(argv[0])
        if service is None or len(argv) != 2:
            channel.sendall_stderr(f"fatal: {argv[0]}: not found\n".encode())
            return 1
        name = argv[1].strip("/").removesuffix(".git")
        try:
            project = self.state.project(name)
        except GerritError:
            channel.sendall_stderr(f"fatal: project {name} not found\n".encode())
            return 1
        if service == "upload-pack":
            return _pump(channel, ["git", service, str(project.repo.path)], env)
        with project.lock:
            status = _pump(channel, ["git", service, str(project.repo.path)], env)
            if status == 0:
                report = push.process(self.state, project, username)
                channel.sendall_stderr("".join(f"remote: {r}\n" for r in report).encode())
        return status


def _scp_send(channel: paramiko.Channel, argv: list[str]) -> int:
    """Serve ``scp -f [-p] hooks/commit-msg``: the source side of the classic
    scp protocol (what ``scp -O``, and git-review, speak). Only the hook is
    there to fetch; any other path or mode is refused as scp would.
    """
    flags = [a for a in argv[1:] if a.startswith("-")]
    paths = [a for a in argv[1:] if not a.startswith("-")]
    if "-f" not in flags or len(paths) != 1:
        channel.sendall(b"\x01scp: only downloads (scp -f) are served\n")
        return 1
    if paths[0].lstrip("/") != HOOK_PATH:
        channel.sendall(f"\x01scp: {paths[0][:200]}: No such file or directory\n".encode())
        return 1
    data = COMMIT_MSG_HOOK.encode()

    def acked() -> bool:
        # The sink answers each step with one byte: 0 means go on.
        reply = channel.recv(1)
        return reply == b"\x00"

    if not acked():
        return 1
    if "-p" in flags:
        stamp = int(time.time())
        channel.sendall(f"T{stamp} 0 {stamp} 0\n".encode())
        if not acked():
            return 1
    channel.sendall(f"C0755 {len(data)} commit-msg\n".encode())
    if not acked():
        return 1
    channel.sendall(data + b"\x00")
    return 0 if acked() else 1


def stream_access(state: SimState, username: str, argv: list[str]) -> tuple[str, set[str]]:
    """Whether ``username`` may run ``gerrit stream-events ARGV``: (the
    refusal for stderr, or ''; the subscribed event types, empty for all)."""
    with state.lock:
        account = state.accounts.get(username)
    allowed = account is not None and (account.stream_events or "Administrators" in account.groups)
    if not allowed:
        return f'fatal: {username} does not have "Stream Events" capability.\n', set()
    types: set[str] = set()
    i = 0
    while i < len(argv):
        name, eq, inline = argv[i].partition("=")
        i += 1
        if name not in ("-s", "--subscribe"):
            return f'fatal: "{argv[i - 1]}" is not a valid option\n', set()
        try:
            value, i = operand(argv, i, name, inline if eq else None)
        except UsageError as exc:
            return f"fatal: {exc}\n", set()
        types.add(value)
    return "", types


def _wants_stdin(state: SimState, argv: list[str]) -> bool:
    """A valid ``gerrit review --json``: only then is stdin read (a refused
    command line answers at once, without waiting for the client's EOF)."""
    if argv[:2] != ["gerrit", "review"]:
        return False
    try:
        return review.parse(argv[2:], state.speaks_3x()).json
    except UsageError:
        return False


def _read_stdin(channel: paramiko.Channel, limit: int = 1 << 20) -> str:
    """What the client sends until EOF (at most ``limit`` bytes)."""
    data = b""
    while len(data) < limit:
        chunk = channel.recv(_CHUNK)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", errors="replace")


def _pump(channel: paramiko.Channel, args: list[str], extra_env: dict[str, str]) -> int:
    """Run ``args`` with its stdin/stdout/stderr joined to ``channel``; return its status."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(extra_env)
    proc = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin = proc.stdin

    def feed() -> None:
        try:
            while True:
                data = channel.recv(_CHUNK)
                if not data:
                    break
                stdin.write(data)
                stdin.flush()
        except (OSError, ValueError):
            log.debug("git stdin closed early")
        finally:
            try:
                stdin.close()
            except OSError:
                log.debug("git stdin already closed")

    def drain(stream: IO[bytes], send: Callable[[bytes], None]) -> None:
        try:
            while True:
                # typeshed has Popen.stdout as IO[bytes]; with the default
                # buffering it is a BufferedReader, which has read1.
                data = stream.read1(_CHUNK)  # type: ignore[attr-defined]
                if not data:
                    break
                send(data)
        except OSError:
            log.debug("channel closed while git was writing")

    feeder = threading.Thread(target=feed, name="gerrit-sim-git-in", daemon=True)
    out = threading.Thread(target=drain, args=(proc.stdout, channel.sendall), daemon=True)
    err = threading.Thread(target=drain, args=(proc.stderr, channel.sendall_stderr), daemon=True)
    for thread in (feeder, out, err):
        thread.start()
    status = proc.wait()
    out.join()
    err.join()
    proc.stdout.close()
    proc.stderr.close()
    return status
