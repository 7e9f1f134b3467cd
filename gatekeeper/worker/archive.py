"""Where a build's logs go on disk, how they are browsed, and their URL.

LOG_PATH comes from the scheduler but ends up as a directory name on the
worker, so it is checked component by component; file names inside the logs
come from the job (anything at all), so the index pages escape them.
"""

from __future__ import annotations

import html
import logging
import os
import re
import stat
from pathlib import Path
from urllib.parse import quote

from gatekeeper.model.outside import shown

log = logging.getLogger(__name__)

_COMPONENT = re.compile(r"[A-Za-z0-9._-]+")
INDEX = "index.html"


def safe_log_dir(log_root: Path, log_path: str) -> Path:
    """The directory for ``log_path`` under ``log_root`` (not created).

    :raises ValueError: a component is empty, ``.``/``..`` or has other
        characters, or the result (symlinks resolved) leaves ``log_root``.
    """
    parts = log_path.split("/")
    for part in parts:
        if part in (".", "..") or not _COMPONENT.fullmatch(part):
            raise ValueError(f"unsafe LOG_PATH {log_path!r}")
    root = Path(log_root).resolve()
    result = root.joinpath(*parts).resolve()
    if result == root or not result.is_relative_to(root):
        raise ValueError(f"LOG_PATH {log_path!r} leaves the log root")
    return result


def vet(log_dir: Path, max_bytes: int, keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Leave in ``log_dir`` only what an archive may hold: regular files
    with one name each (no symlinks, devices, fifos, sockets, hard links),
    ``max_bytes`` of them together at most (the file that crosses the cap
    is cut, the later ones removed; in sorted path order). Top-level names
    in ``keep`` (gatekeeper's own console.txt) are left alone and not
    counted. Returns a note for each file removed or cut.
    """
    top = Path(log_dir)
    notes: list[str] = []
    total = 0
    for current, dirs, files in os.walk(top, followlinks=False):
        here = Path(current)
        dirs.sort()
        names = sorted(files)
        # os.walk lists a symlink to a directory among the directories.
        names += [d for d in dirs if (here / d).is_symlink()]
        dirs[:] = [d for d in dirs if d not in names]
        for name in names:
            path = here / name
            rel = path.relative_to(top).as_posix()
            if here == top and name in keep:
                continue
            try:
                info = path.lstat()
                why = ""
                if stat.S_ISLNK(info.st_mode):
                    why = "a symlink"
                elif not stat.S_ISREG(info.st_mode):
                    why = "not a regular file"
                elif info.st_nlink > 1:
                    why = f"a hard link ({info.st_nlink} names)"
                elif total >= max_bytes:
                    why = "over the log size cap"
                if why:
                    path.unlink()
                    notes.append(f"{shown(rel)}: {why}, removed from the archive")
                    continue
                if total + info.st_size > max_bytes:
                    os.truncate(path, max_bytes - total)
                    notes.append(
                        f"{shown(rel)}: cut at {max_bytes - total} of {info.st_size} bytes"
                        " (log size cap)"
                    )
                    total = max_bytes
                    continue
                total += info.st_size
            except OSError as exc:
                log.warning("archive %s: %s: %s", top, shown(rel), exc)
                notes.append(f"{shown(rel)}: could not be checked ({exc.strerror})")
    return notes


def log_url(base_url: str, log_path: str) -> str:
    """The URL of a build's log directory (ends with ``/``)."""
    return f"{base_url.rstrip('/')}/{quote(log_path.strip('/'), safe='/')}/"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{n}B"  # pragma: no cover - the loop always returns


def _page(directory: Path, title: str, is_root: bool) -> str:
    rows = []
    if not is_root:
        rows.append('<tr><td><a href="../">../</a></td><td></td></tr>')
    try:
        entries = sorted(os.scandir(directory), key=lambda e: (not e.is_dir(), e.name))
    except OSError as exc:
        log.warning("cannot list %s: %s", directory, exc)
        entries = []
    for entry in entries:
        if entry.name == INDEX:
            continue
        is_dir = entry.is_dir(follow_symlinks=False)
        # fsencode: hrefs carry the name's real bytes, even when not UTF-8.
        href = quote(os.fsencode(entry.name), safe="") + ("/" if is_dir else "")
        label = html.escape(entry.name, quote=True) + ("/" if is_dir else "")
        try:
            size = "" if is_dir else _size(entry.stat(follow_symlinks=False).st_size)
        except OSError:
            size = "?"
        rows.append(f'<tr><td><a href="{href}">{label}</a></td><td>{size}</td></tr>')
    safe_title = html.escape(title, quote=True)
    body = "\n".join(rows)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>Index of {safe_title}</title></head>\n"
        f"<body><h1>Index of {safe_title}</h1>\n<table>\n{body}\n</table>\n</body></html>\n"
    )


def write_index(directory: Path) -> None:
    """Write ``index.html`` in ``directory`` and every directory below it.

    Symlinked directories are listed but not followed.
    """
    top = Path(directory)
    for current, _dirs, _files in os.walk(top, followlinks=False):
        here = Path(current)
        rel = here.relative_to(top).as_posix()
        title = "/" if rel == "." else f"/{rel}/"
        index = here / INDEX
        if index.is_symlink():
            # A job could leave a symlink named index.html pointing anywhere.
            index.unlink()
        index.write_text(
            _page(here, title, is_root=here == top), encoding="utf-8", errors="replace"
        )
