"""Copying a job's log files out of a node directory on this host.

The copy is made by gatekeeper's user, which may read what the job could
not; so a file is taken only when it is a regular file, reached from the
node directory without following any symlink, and has one name only.

One name only: a hard link made inside the node to a file outside it is
the same inode as that file, indistinguishable from it by its content or
its name; its link count (two or more) is what gives it away. A job that
hard-links its own logs loses them (noted); that is the price of a rule
that needs no scan of the node for every inode it holds.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gatekeeper.model.outside import shown
from gatekeeper.node.transport import Pulled

_CHUNK = 1 << 20


def collect(source: Path, names: list[str], dest: Path, max_bytes: int) -> Pulled:
    """Copy ``names`` (paths relative to ``source``) into ``dest``, no more
    than ``max_bytes`` together; a note for each one not taken whole."""
    pulled = Pulled()
    budget = max_bytes
    for name in names:
        try:
            why, size = _copy(source, name, dest, budget)
        except OSError as exc:
            why, size = f"could not be read ({exc.strerror or exc})", -1
        if size >= 0:
            budget -= size
            pulled.files.append(dest / name)
        if why:
            pulled.refused.append(f"{shown(name)}: {why}")
    return pulled


def _copy(source: Path, name: str, dest: Path, budget: int) -> tuple[str, int]:
    """(why it was not taken whole or "", bytes copied or -1 when not taken).

    :raises OSError:
    """
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "not a plain relative path", -1
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    dir_fd = os.open(source, flags | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            # O_NOFOLLOW: a directory swapped for a symlink is not followed out.
            try:
                inner = os.open(part, flags | os.O_DIRECTORY, dir_fd=dir_fd)
            except OSError:
                return "a directory on its path is a symlink or gone", -1
            os.close(dir_fd)
            dir_fd = inner
        info = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            return "a symlink, not archived", -1
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file (device, fifo or socket), not archived", -1
        if info.st_nlink > 1:
            return (
                f"a hard link ({info.st_nlink} names; it may be a file from outside), not archived",
                -1,
            )
        if budget <= 0:
            return "over the log size cap, not archived", -1
        fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as src:
        opened = os.fstat(src.fileno())
        # What was opened must be what was checked.
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino) or opened.st_nlink > 1:
            return "changed while it was read, not archived", -1
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        out_fd = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
        copied = 0
        with os.fdopen(out_fd, "wb") as out:
            while copied < budget and (chunk := src.read(min(_CHUNK, budget - copied))):
                out.write(chunk)
                copied += len(chunk)
        if copied < opened.st_size:
            return f"cut at {copied} of {opened.st_size} bytes (log size cap)", copied
        return "", copied
