"""Run builds on another host over SSH: the ``static`` provider's transport.

Files move with rsync over OpenSSH (host key checked against the configured
known_hosts file, never accepted blindly); commands run through paramiko
(:func:`gatekeeper.node.ssh.connect`) so their output can be streamed and
they can be killed. ``SSHError`` is a ``TransportError``, so what the
connect raises is already this seam's error.
"""

from __future__ import annotations

import logging
import posixpath
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko

from gatekeeper.errors import TransportError
from gatekeeper.node import rsync, ssh
from gatekeeper.node.transport import (
    KILL_GRACE,
    NO_CAP,
    POLL,
    CommandAborted,
    CommandTimedOut,
    LineSplitter,
    Pulled,
    Transport,
    check_env,
    check_relative,
)

log = logging.getLogger(__name__)

# The remote wrapper's first output line: the command's process group id.
_PID_MARK = "gatekeeper-pgid "
_PID_LINE = re.compile(rb"gatekeeper-pgid (\d+)\n")


class SSHTransport(Transport):
    """Moves files to and runs commands on one SSH host, under ``root``.
    Used by one worker thread at a time; each call opens its own connection.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        private_key: Path,
        known_hosts: Path,
        root: str,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.private_key = Path(private_key)
        self.known_hosts = Path(known_hosts)
        root = posixpath.normpath(root)
        if not root.startswith("/") or root == "/":
            raise TransportError(f"SSH node root must be an absolute directory, not {root!r}")
        self.root = root

    def __repr__(self) -> str:
        return f"<SSHTransport {self.username}@{self.host}:{self.port}{self.root}>"

    @property
    def ssh_command(self) -> str:
        """The ``rsync -e`` value; rsync splits it like a shell would."""
        q = shlex.quote
        return (
            f"ssh -i {q(str(self.private_key))} -p {int(self.port)} -o IdentitiesOnly=yes"
            f" -o BatchMode=yes -o UserKnownHostsFile={q(str(self.known_hosts))}"
            " -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null"
        )

    def _remote(self, relative: str) -> str:
        return posixpath.join(self.root, check_relative(relative)).rstrip("/")

    def _rsync_target(self, path: str) -> str:
        # rsync (>= 3.2.4) escapes the remote path itself before the remote
        # shell sees it, so it is given unquoted here.
        return f"{self.username}@{self.host}:{path}"

    @contextmanager
    def _client(self) -> Iterator[paramiko.SSHClient]:
        client = ssh.connect(
            self.host, self.port, self.username, self.private_key, known_hosts=self.known_hosts
        )
        try:
            yield client
        finally:
            client.close()

    def push(self, local_dir: Path, remote_dir: str) -> None:
        dest = self._remote(remote_dir)
        with self._client() as client:
            ssh.run(client, f"mkdir -p -- {shlex.quote(posixpath.dirname(dest))}")
        rsync.push(Path(local_dir), self._rsync_target(dest), self.ssh_command)

    def pull(
        self, remote_dir: str, patterns: list[str], local_dir: Path, max_bytes: int = NO_CAP
    ) -> Pulled:
        source = self._remote(remote_dir)
        # Refused even when there is nothing to pull.
        rsync.check_patterns(patterns)
        with self._client() as client:
            exists = ssh.run(client, f"test -d {shlex.quote(source)} && echo yes || true")
        if exists.strip() != "yes":
            return Pulled()
        target = self._rsync_target(source)
        # The other end runs as the node's user, whom the job may have been:
        # the receiving rsync here takes regular files only, none over the
        # cap, and the archive checks again what arrived (worker.archive).
        files = rsync.pull(target, patterns, Path(local_dir), self.ssh_command, max_bytes)
        return Pulled(files=files)

    def clean(self) -> None:
        with self._client() as client:
            root = shlex.quote(self.root)
            ssh.run(client, f"rm -rf -- {root} && mkdir -p -- {root}")

    def run(
        self,
        command: str,
        env: dict[str, str],
        cwd: str,
        on_output: Callable[[str], None],
        timeout: float,
        stop: threading.Event,
    ) -> int:
        workdir = self._remote(cwd)
        q = shlex.quote
        assignments = " ".join(f"{k}={q(v)}" for k, v in check_env(env).items())
        # sshd runs this in a new session, so the login shell's pid is the
        # process group of everything the command starts: print it so the
        # group can be killed on timeout (closing the channel kills nothing).
        remote = (
            f"echo {_PID_MARK}$$ && mkdir -p -- {q(workdir)} && cd -- {q(workdir)}"
            f" && exec env {assignments} bash -c {q(command)}"
        )
        with self._client() as client:
            try:
                channel = client.get_transport().open_session()  # type: ignore[union-attr]
                channel.set_combine_stderr(True)
                channel.settimeout(POLL)
                channel.exec_command(remote)
            except (OSError, paramiko.SSHException) as exc:
                raise TransportError(f"cannot start command on {self.host}: {exc}") from exc
            try:
                return self._stream(client, channel, on_output, timeout, stop)
            finally:
                channel.close()

    def _stream(
        self,
        client: paramiko.SSHClient,
        channel: paramiko.Channel,
        on_output: Callable[[str], None],
        timeout: float,
        stop: threading.Event,
    ) -> int:
        splitter = LineSplitter(on_output)
        deadline = time.monotonic() + timeout
        head = b""
        pgid: int | None = None
        while True:
            if stop.is_set():
                self._kill(client, pgid)
                raise CommandAborted("stopped")
            if time.monotonic() > deadline:
                self._kill(client, pgid)
                raise CommandTimedOut(f"timed out after {timeout:.0f}s")
            try:
                data = channel.recv(65536)
            except TimeoutError:
                continue
            except (OSError, paramiko.SSHException) as exc:
                raise TransportError(f"lost the command on {self.host}: {exc}") from exc
            if not data:
                break
            if pgid is None:
                head += data
                match = _PID_LINE.match(head)
                if match is None:
                    if b"\n" in head or len(head) > 64:
                        # The wrapper did not run as expected; pass it all on.
                        pgid, data = 0, head
                    else:
                        continue
                else:
                    pgid, data = int(match.group(1)), head[match.end() :]
            splitter.feed(data)
        splitter.flush()
        try:
            return channel.recv_exit_status()
        except (OSError, paramiko.SSHException) as exc:
            raise TransportError(f"lost the command on {self.host}: {exc}") from exc

    def _kill(self, client: paramiko.SSHClient, pgid: int | None) -> None:
        """SIGTERM the remote process group, SIGKILL it if it lingers."""
        if not pgid:
            log.warning("cannot kill the command on %s: its process group is unknown", self.host)
            return
        group = f"-{int(pgid)}"
        steps = int(KILL_GRACE / 0.1)
        script = (
            f"kill -TERM -- {group} 2>/dev/null || exit 0;"
            f" for i in $(seq {steps}); do kill -0 -- {group} 2>/dev/null || exit 0; sleep 0.1;"
            f" done; kill -KILL -- {group} 2>/dev/null; exit 0"
        )
        try:
            ssh.run(client, script, timeout=KILL_GRACE + 10)
        except TransportError as exc:
            log.warning("killing the command on %s failed: %s", self.host, exc)
