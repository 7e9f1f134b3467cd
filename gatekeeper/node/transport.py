"""The transport seam: copy a workspace to a node, run there, copy logs back.

Paths given to a transport are relative to the node's root (a node's own
directory for ``local``; ``<workdir>/<node name>`` on a static SSH host); a
transport never touches anything outside that root on the node.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path


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
    def pull(self, remote_dir: str, patterns: list[str], local_dir: Path) -> list[Path]:
        """Copy files under ``<root>/<remote_dir>`` matching rsync-style glob
        ``patterns`` into ``local_dir``, keeping relative paths. Patterns are
        anchored at ``remote_dir`` (``logs/**``, ``screen-*.txt`` name paths
        from there). Symlinks, ``.git`` directories and a top-level
        ``console.txt`` are never copied. Returns the files copied.

        :raises TransportError:
        """

    @abstractmethod
    def clean(self) -> None:
        """Remove everything under the node's root (for re-usable nodes)."""
