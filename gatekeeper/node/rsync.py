"""rsync between this host and a node, for both transports: local and SSH
copies differ only in where the other end is (``-e ssh ...`` for SSH).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from gatekeeper.errors import TransportError
from gatekeeper.model.names import log_glob_problem
from gatekeeper.model.outside import shown


def check_patterns(patterns: list[str]) -> list[str]:
    """Patterns safe to hand rsync as ``--include`` rules
    (:func:`gatekeeper.model.names.log_glob_problem`: what validate refuses).

    :raises TransportError: a pattern climbs out with ``..``, is absolute,
        empty, or looks like an rsync filter-rule modifier.
    """
    for pattern in patterns:
        problem = log_glob_problem(pattern)
        if problem is not None:
            raise TransportError(f"bad log pattern '{shown(pattern, 100)}': {problem}")
    return list(patterns)


def _push_args(source: Path, dest: str, ssh: str | None = None) -> list[str]:
    args = ["rsync", "-a", "--delete"]
    if ssh:
        args += ["-e", ssh]
    return [*args, f"{source}/", f"{dest}/"]


def _pull_args(
    source: str,
    patterns: list[str],
    dest: Path | str,
    ssh: str | None = None,
    max_bytes: int | None = None,
    dry_run: bool = False,
) -> list[str]:
    # Not -a: its -l copies symlinks and its -D devices and fifos; -o/-g
    # would hand the archive to whatever owner the node claims. Only
    # regular files (and the directories that hold them) come back.
    args = ["rsync", "-rt", "--no-links", "--no-devices", "--no-specials"]
    if dry_run:
        # Listing only: links and special files are named too, so that
        # whoever copies can say which it refused.
        args = ["rsync", "-rlD", "--dry-run"]
    args += ["--prune-empty-dirs", "--out-format=%n"]
    if max_bytes is not None:
        args.append(f"--max-size={max_bytes}")
    if ssh:
        args += ["-e", ssh]
    # The archive's own console.txt is never replaced, and git's internals
    # (whose .git/logs/ would match "logs/**") are never collected.
    args += ["--exclude=/console.txt", "--exclude=.git/", "--include=*/"]
    # Anchored: a pattern names paths from the root of the pulled directory.
    args += [f"--include=/{p.lstrip('/')}" for p in patterns]
    args.append("--exclude=*")
    return [*args, f"{source}/", f"{dest}/"]


def _run(args: list[str], timeout: float = 3600.0) -> list[str]:
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


def _copied_files(dest: Path, rsync_lines: list[str]) -> list[Path]:
    """The files rsync's ``--out-format=%n`` lines name (directories end in /)."""
    files = []
    for line in rsync_lines:
        if not line or line.endswith("/"):
            continue
        path = dest / line
        if path.is_file() and not path.is_symlink():
            files.append(path)
    return files


def push(source: Path, dest: str, ssh: str | None = None) -> None:
    """Mirror ``source/`` to ``dest/`` (deleting what ``source`` lacks).

    :raises TransportError:
    """
    _run(_push_args(source, dest, ssh))


def pull(
    source: str,
    patterns: list[str],
    dest: Path,
    ssh: str | None = None,
    max_bytes: int | None = None,
) -> list[Path]:
    """Copy the regular files under ``source/`` that ``patterns`` name
    (checked with :func:`check_patterns`), none over ``max_bytes``, into
    ``dest``; the files copied.

    :raises TransportError:
    """
    dest.mkdir(parents=True, exist_ok=True)
    args = _pull_args(source, check_patterns(patterns), dest, ssh, max_bytes)
    return _copied_files(dest, _run(args))


_ESCAPE = re.compile(r"\\#([0-7]{3})")


def select(source: str, patterns: list[str]) -> list[str]:
    """The paths (relative to the local directory ``source``) that a pull
    with ``patterns`` would copy, asked of rsync itself (a dry run), so
    that every transport reads the patterns alike.

    :raises TransportError:
    """
    with tempfile.TemporaryDirectory(prefix="gatekeeper-select-") as empty:
        lines = _run(_pull_args(source, check_patterns(patterns), empty, dry_run=True))
    return [_unescaped(line) for line in lines if line and not line.endswith("/")]


def _unescaped(line: str) -> str:
    # rsync writes each unprintable byte of a name as \#ooo (octal).
    raw = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(line):
        raw += os.fsencode(line[pos : match.start()])
        raw.append(int(match.group(1), 8))
        pos = match.end()
    raw += os.fsencode(line[pos:])
    return os.fsdecode(bytes(raw))
