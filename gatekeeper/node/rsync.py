"""rsync between this host and a node, for both transports: local and SSH
copies differ only in where the other end is (``-e ssh ...`` for SSH).
"""

from __future__ import annotations

import subprocess
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


def _pull_args(source: str, patterns: list[str], dest: Path, ssh: str | None = None) -> list[str]:
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


def pull(source: str, patterns: list[str], dest: Path, ssh: str | None = None) -> list[Path]:
    """Copy the files under ``source/`` that ``patterns`` name (checked with
    :func:`check_patterns`) into ``dest``; the files copied.

    :raises TransportError:
    """
    dest.mkdir(parents=True, exist_ok=True)
    return _copied_files(dest, _run(_pull_args(source, check_patterns(patterns), dest, ssh)))
