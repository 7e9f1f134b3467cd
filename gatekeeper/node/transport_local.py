"""Run builds in a directory on this host: the ``local`` provider's transport."""

from __future__ import annotations

import logging
import os
import queue
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from gatekeeper.errors import TransportError
from gatekeeper.node import rsync
from gatekeeper.node.collect import collect
from gatekeeper.node.confine import Jail
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

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class LocalTransport(Transport):
    """Runs commands in a node directory on this host. Used by one worker
    thread at a time.

    With a ``jail`` every command runs inside it (:mod:`gatekeeper.node.confine`):
    it sees and writes only the node directory, as an unprivileged uid.
    Without one (``jail=None``, only when the provider allows running
    unconfined) the command runs as gatekeeper's own user, with its file
    permissions and its network: only the working directory, ``HOME``,
    ``TMPDIR``, the environment and a session of its own keep it apart.
    ``refuse`` (non-empty) is why commands may not run at all: every
    :meth:`run` fails with it. Neither way limits CPU, memory or disk.
    """

    def __init__(self, root: Path, jail: Jail | None, refuse: str = "") -> None:
        self.root = Path(root).resolve()
        self.jail = jail
        self.refuse = refuse

    def __repr__(self) -> str:
        return f"<LocalTransport {self.root}>"

    def _inside(self, relative: str) -> Path:
        path = (self.root / check_relative(relative)).resolve()
        if path != self.root and not path.is_relative_to(self.root):
            raise TransportError(f"{relative!r} resolves outside the node root {self.root}")
        return path

    def push(self, local_dir: Path, remote_dir: str) -> None:
        dest = self._inside(remote_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        rsync.push(Path(local_dir), str(dest))

    def pull(
        self, remote_dir: str, patterns: list[str], local_dir: Path, max_bytes: int = NO_CAP
    ) -> Pulled:
        source = self._inside(remote_dir)
        # Refused even when there is nothing to pull.
        rsync.check_patterns(patterns)
        if not source.is_dir():
            return Pulled()
        # The copy is made here, by gatekeeper's user, which may read more
        # than the job could: each file is checked as it is opened.
        names = rsync.select(str(source), patterns)
        return collect(source, names, Path(local_dir), max_bytes)

    def clean(self) -> None:
        if not self.root.exists():
            return
        for child in self.root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, onerror=make_writable_and_retry)
            else:
                child.unlink()

    def run(
        self,
        command: str,
        env: dict[str, str],
        cwd: str,
        on_output: Callable[[str], None],
        timeout: float,
        stop: threading.Event,
    ) -> int:
        if self.refuse:
            raise TransportError(self.refuse)
        workdir = self._inside(cwd)
        tmpdir = self.root / "tmp"
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            tmpdir.mkdir(exist_ok=True)
            if self.jail is not None:
                self.jail.hand_over(self.root)
        except OSError as exc:
            raise TransportError(f"cannot prepare {workdir}: {exc}") from exc
        full_env = dict(check_env(env))
        full_env.setdefault("PATH", os.environ.get("PATH", DEFAULT_PATH))
        argv = ["bash", "-c", command]
        if self.jail is None:
            full_env["HOME"] = str(self.root)
            full_env["TMPDIR"] = str(tmpdir)
        else:
            full_env["HOME"] = str(self.jail.inside(self.root, self.root))
            full_env["TMPDIR"] = str(self.jail.inside(self.root, tmpdir))
            argv = self.jail.argv(self.root, workdir, argv)
        try:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=full_env,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            raise TransportError(f"cannot start command: {exc}") from exc
        return _supervise(proc, on_output, timeout, stop)


def _supervise(
    proc: subprocess.Popen[bytes],
    on_output: Callable[[str], None],
    timeout: float,
    stop: threading.Event,
) -> int:
    """Stream ``proc``'s output to ``on_output`` in the calling thread until
    it exits, killing its process group on timeout or stop."""
    assert proc.stdout is not None
    chunks: queue.Queue[bytes | None] = queue.Queue()
    reader = threading.Thread(
        target=_read, args=(proc.stdout, chunks), name=f"output-{proc.pid}", daemon=True
    )
    reader.start()
    splitter = LineSplitter(on_output)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                chunk = chunks.get(timeout=POLL)
            except queue.Empty:
                chunk = b""
            if chunk is None:
                break
            if chunk:
                splitter.feed(chunk)
            if stop.is_set():
                _kill_group(proc)
                raise CommandAborted("stopped")
            if time.monotonic() > deadline:
                _kill_group(proc)
                raise CommandTimedOut(f"timed out after {timeout:.0f}s")
            if chunk == b"" and proc.poll() is not None:
                # The command is done but something it started in the
                # background still holds the output open: end those too,
                # as a build must not leave processes behind.
                _kill_group(proc)
        splitter.flush()
        return proc.wait()
    finally:
        if proc.poll() is None:
            _kill_group(proc)
        reader.join(timeout=KILL_GRACE)
        proc.stdout.close()


def _read(stream: IO[bytes], chunks: queue.Queue[bytes | None]) -> None:
    try:
        while data := stream.read1(65536):  # type: ignore[attr-defined]
            chunks.put(data)
    except (OSError, ValueError):
        pass
    finally:
        chunks.put(None)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the command's process group, SIGKILL it if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        if sig == signal.SIGTERM:
            try:
                proc.wait(timeout=KILL_GRACE)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; kill anything it left in its group.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            return
    proc.wait()


def make_writable_and_retry(func: Callable[[str], object], path: str, _exc: object) -> None:
    # A build may leave read-only directories; rmtree cannot empty them.
    parent = os.path.dirname(path)
    os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
    func(path)
