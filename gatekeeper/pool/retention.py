"""Log retention: build logs older than ``logs.keep-days`` go.

Run by the reaper (see :mod:`gatekeeper.pool.reaper`): it already runs on a
schedule and once at start, in every site that has a pool, with the site's
configuration at hand; the log root is a plain directory beside the state.

Files (and symlinks, which are never followed) whose own modification time
is older than the cut-off are removed; a directory goes once it is empty
and old itself, so a build still writing (its files are new) keeps its
directory. Every step works on directory file descriptors opened with
``O_NOFOLLOW``: a symlink inside the log root, even one swapped in while the
pass runs, is removed as a link, and nothing outside the root is touched.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from gatekeeper.model.outside import shown

log = logging.getLogger(__name__)

DAY = 86400.0
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class Pruned:
    files: int = 0
    directories: int = 0


def prune_logs(root: Path, keep_days: float, now: float) -> Pruned:
    """Remove what under ``root`` is older than ``keep_days`` days (0: nothing).

    ``root`` itself stays. Errors on one entry are logged and skipped.
    """
    pruned = Pruned()
    if keep_days <= 0:
        return pruned
    cutoff = now - keep_days * DAY
    try:
        fd = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        return pruned
    except OSError as exc:
        log.warning("logs: cannot open the log root %s: %s", root, exc)
        return pruned
    try:
        _prune(fd, str(root), cutoff, pruned)
    finally:
        os.close(fd)
    if pruned.files or pruned.directories:
        log.info(
            "logs: removed %d files and %d directories older than %g days under %s",
            pruned.files,
            pruned.directories,
            keep_days,
            root,
        )
    return pruned


def _prune(dir_fd: int, where: str, cutoff: float, pruned: Pruned) -> bool:
    """Prune the directory open as ``dir_fd``; True if it is left empty."""
    empty = True
    with os.scandir(dir_fd) as entries:
        names = [entry.name for entry in entries]
    for name in names:
        path = f"{where}/{name}"
        try:
            info = os.lstat(name, dir_fd=dir_fd)
            if stat.S_ISDIR(info.st_mode):
                child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    child_empty = _prune(child, path, cutoff, pruned)
                finally:
                    os.close(child)
                if child_empty and info.st_mtime < cutoff:
                    os.rmdir(name, dir_fd=dir_fd)
                    pruned.directories += 1
                    log.debug("logs: removed %s", shown(path, 300))
                    continue
            elif info.st_mtime < cutoff:
                # A symlink is removed as a link: its target, wherever it
                # points, is not ours.
                os.unlink(name, dir_fd=dir_fd)
                pruned.files += 1
                continue
        except FileNotFoundError:
            continue  # gone meanwhile: nothing to keep
        except OSError as exc:
            log.warning("logs: cannot prune %s: %s", shown(path, 300), exc)
        empty = False
    return empty
