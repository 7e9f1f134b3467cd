"""Run builds in a directory on this host: the ``local`` provider's transport.

Also home of the rsync helpers both transports share (``rsync_push_args``,
``rsync_pull_args``, ``run_rsync``), since local and SSH copies differ only
in where the other end is.
"""

from __future__ import annotations

import logging
import os
import queue
import re
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
from gatekeeper.node.transport import CommandAborted, CommandTimedOut, Transport

log = logging.getLogger(__name__)

# Seconds between SIGTERM and SIGKILL when a command has to be stopped.
KILL_GRACE = 5.0
# How often a running command's timeout and stop event are looked at.
POLL = 0.05
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# -- shared by both transports ------------------------------------------


def check_relative(path: str) -> str:
    """A node-relative path, normalised; ``""`` means the root.

    :raises TransportError: it is absolute or climbs out with ``..``.
    """
    if path.startswith("/") or "\0" in path or "\n" in path:
        raise TransportError(f"not a node-relative path: {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise TransportError(f"path leaves the node root: {path!r}")
    return "/".join(parts)


def check_patterns(patterns: list[str]) -> list[str]:
    """Patterns safe to hand rsync as ``--include`` rules.

    :raises TransportError: a pattern climbs out with ``..``, is empty, or
        looks like an rsync filter-rule modifier.
    """
    for pattern in patterns:
        if not pattern or "\n" in pattern or "\0" in pattern:
            raise TransportError(f"bad log pattern {pattern!r}")
        if ".." in pattern.split("/"):
            raise TransportError(f"log pattern leaves the node root: {pattern!r}")
        # rsync reads "+ x", "- x" and "!" in --include as rule syntax.
        if pattern == "!" or pattern.startswith(("+ ", "- ")):
            raise TransportError(f"log pattern looks like an rsync filter rule: {pattern!r}")
    return list(patterns)


def check_env(env: dict[str, str]) -> dict[str, str]:
    """:raises TransportError: a variable name a shell would not accept."""
    for name in env:
        if not _ENV_NAME.match(name):
            raise TransportError(f"bad environment variable name {name!r}")
    return env


def rsync_push_args(source: Path, dest: str, ssh: str | None = None) -> list[str]:
    args = ["rsync", "-a", "--delete"]
    if ssh:
        args += ["-e", ssh]
    return [*args, f"{source}/", f"{dest}/"]


def rsync_pull_args(
    source: str, patterns: list[str], dest: Path, ssh: str | None = None
) -> list[str]:
    args = ["rsync", "-a", "--no-links", "--prune-empty-dirs", "--out-format=%n"]
    if ssh:
        args += ["-e", ssh]
    # The archive's own console.txt is never replaced, and git's internals
    # (whose .git/logs/ would match "logs/**") are never collected.
    args += ["--exclude=/console.txt", "--exclude=.git/", "--include=*/"]
    # Anchored: a pattern names paths from the root of the pulled directory.
    args += [f"--include=/{p.lstrip('/')}" for p in patterns]
    args.append("--exclude=*")
    return [*args, f"{source}/", f"{dest}/"]


def run_rsync(args: list[str], timeout: float = 3600.0) -> list[str]:
    """Run rsync; return its stdout lines.

    :raises TransportError: rsync failed or could not be started.
    """
    try:
        proc = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TransportError(f"rsync failed: {exc}") from exc
    if proc.returncode != 0:
        raise TransportError(f"rsync exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout.splitlines()


def copied_files(dest: Path, rsync_lines: list[str]) -> list[Path]:
    """The files rsync's ``--out-format=%n`` lines name (directories end in /)."""
    files = []
    for line in rsync_lines:
        if not line or line.endswith("/"):
            continue
        path = dest / line
        if path.is_file() and not path.is_symlink():
            files.append(path)
    return files


class LineSplitter:
    """Turns a byte stream into complete text lines for ``on_output``."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._on_line = on_line
        self._buf = b""

    def feed(self, data: bytes) -> None:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            self._on_line(line.rstrip(b"\r").decode("utf-8", errors="replace"))

    def flush(self) -> None:
        if self._buf:
            self._on_line(self._buf.decode("utf-8", errors="replace"))
            self._buf = b""


# -- the local transport -------------------------------------------------


class LocalTransport(Transport):
    """Runs commands in a node directory on this host. Used by one worker
    thread at a time.

    Confined to the node directory as far as the OS allows without
    privileges: the working directory, ``HOME`` and ``TMPDIR`` are inside
    it, the environment is only what the build passes plus ``PATH``, and the
    command gets its own session so it and everything it starts are killed
    together. It does NOT confine what the command can read or write: it
    runs as gatekeeper's own user, with gatekeeper's file permissions, its
    network, and no resource limits. Use the ``static`` provider (another
    host or a container over SSH) for untrusted changes.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

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
        run_rsync(rsync_push_args(Path(local_dir), str(dest)))

    def pull(self, remote_dir: str, patterns: list[str], local_dir: Path) -> list[Path]:
        source = self._inside(remote_dir)
        check_patterns(patterns)
        if not source.is_dir():
            return []
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        lines = run_rsync(rsync_pull_args(str(source), patterns, local_dir))
        return copied_files(local_dir, lines)

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
        workdir = self._inside(cwd)
        tmpdir = self.root / "tmp"
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            tmpdir.mkdir(exist_ok=True)
        except OSError as exc:
            raise TransportError(f"cannot prepare {workdir}: {exc}") from exc
        full_env = dict(check_env(env))
        full_env.setdefault("PATH", os.environ.get("PATH", DEFAULT_PATH))
        full_env["HOME"] = str(self.root)
        full_env["TMPDIR"] = str(tmpdir)
        try:
            proc = subprocess.Popen(
                ["bash", "-c", command],
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
