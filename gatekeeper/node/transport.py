"""The transport seam: copy a workspace to a node, run there, copy logs back.

Paths given to a transport are relative to the node's root (a node's own
directory for ``local``; ``<workdir>/<node name>`` on a static SSH host); a
transport never touches anything outside that root on the node. The checks
and the line splitting every transport needs are here too.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gatekeeper.errors import TransportError

# Seconds between SIGTERM and SIGKILL when a command has to be stopped.
KILL_GRACE = 5.0
# How often a running command's timeout and stop event are looked at.
POLL = 0.05
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: ``max_bytes`` of a pull that has no cap.
NO_CAP = 2**62


@dataclass
class Pulled:
    """What a pull brought back: the files copied, and a note for each file
    that matched but was not taken (a link, a special file, over the cap)."""

    files: list[Path] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


class CommandTimedOut(Exception):  # noqa: N818 - it is a result, not a failure of ours
    """The command ran past its timeout and was killed."""


class CommandAborted(Exception):  # noqa: N818
    """The command was killed because the build was cancelled."""


class Transport(ABC):
    """Moves files to and from one node and runs commands on it.

    Used by one worker thread at a time.
    """

    @abstractmethod
    def push(self, local_dir: Path, remote_dir: str) -> None:
        """rsync ``local_dir/`` to ``<root>/<remote_dir>/`` (mirror, with deletes).

        :raises TransportError:
        """

    @abstractmethod
    def run(
        self,
        command: str,
        env: dict[str, str],
        cwd: str,
        on_output: Callable[[str], None],
        timeout: float,
        stop: threading.Event,
    ) -> int:
        """Run ``command`` with ``bash -c`` in ``<root>/<cwd>`` with ``env``.

        Each line of combined stdout/stderr is passed to ``on_output`` (without
        its newline) as it arrives. Returns the exit status.

        :raises CommandTimedOut: it ran longer than ``timeout`` seconds (killed).
        :raises CommandAborted: ``stop`` was set (killed).
        :raises TransportError: the command could not be started.
        """

    @abstractmethod
    def pull(
        self, remote_dir: str, patterns: list[str], local_dir: Path, max_bytes: int = NO_CAP
    ) -> Pulled:
        """Copy files under ``<root>/<remote_dir>`` matching rsync-style glob
        ``patterns`` into ``local_dir``, keeping relative paths. Patterns are
        anchored at ``remote_dir`` (``logs/**``, ``screen-*.txt`` name paths
        from there). Only regular files are copied: never symlinks, devices,
        fifos or sockets, nor ``.git`` directories or a top-level
        ``console.txt``; no file larger than ``max_bytes``.

        :raises TransportError:
        """

    @abstractmethod
    def clean(self) -> None:
        """Remove everything under the node's root (for re-usable nodes)."""


# -- what every transport checks and does alike --------------------------


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


def check_env(env: dict[str, str]) -> dict[str, str]:
    """:raises TransportError: a variable name a shell would not accept."""
    for name in env:
        if not _ENV_NAME.match(name):
            raise TransportError(f"bad environment variable name {name!r}")
    return env


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
