"""Build logs, served from the site's log root under ``/logs/``.

Directory indexes are titled with the build that wrote them (its row, or the
first and last lines of the archive's ``console.txt``); text logs are served
as ``text/plain`` and, with ``?view=html``, as a page with line numbers,
line-range links and severity highlighting; ``.gz`` files are served
decompressed (or passed through to a client that accepts gzip, as nginx's
gunzip module does).

Nothing outside the log root is ever served: the path is taken from the raw
request bytes, every ``..`` is refused, and the file is resolved (symlinks
followed) and must still be under the root. What a job wrote (file names and
contents) is escaped on every page; files served raw carry a sandboxing
Content-Security-Policy, so a job's HTML or SVG cannot run script on this
origin.
"""

from __future__ import annotations

import codecs
import html
import json
import logging
import mimetypes
import os
import re
import stat
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote_to_bytes

from markupsafe import Markup
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route

from gatekeeper.db.tables import BuildRecord
from gatekeeper.model.outside import shown
from gatekeeper.web.context import WebContext
from gatekeeper.web.templating import templates

log = logging.getLogger(__name__)

PREFIX = "/logs/"
CONSOLE = "console.txt"
CHUNK = 1 << 20
GZIP_WBITS = 16 + zlib.MAX_WBITS
# The most of a file's end a build page reads for its console.
TAIL_BYTES = 8 << 20
# A line longer than this is rendered in pieces (same line number).
LINE_PIECE = 1 << 16
# Raw files: no script, no plugin, an opaque origin; a job's own HTML still
# shows with its inline styles and our images.
RAW_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; sandbox"
TEXT = "text/plain; charset=utf-8"
# Served as themselves; everything else is text (or octet-stream when binary).
AS_IS = {"text/html", "image/png", "image/jpeg", "image/gif", "image/svg+xml", "application/pdf"}
BINARY = {"application/octet-stream", "application/zip", "application/x-tar"}

# oslo.log: "2016-01-01 12:00:00.123 1234 ERROR nova.compute ..."
_OSLO = re.compile(
    rb"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?\s+\d+\s+(CRITICAL|ERROR|WARNING|TRACE)\b"
)
# syslog: "Jan  1 12:00:00 host proc[123]: ... ERROR ..."
_SYSLOG = re.compile(
    rb"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ [^:]{1,100}: .*?\b(CRITICAL|ERROR|WARNING|TRACE)\b"
)
# Our own console lines: "ERROR: preparing the workspace failed: ..."
_PLAIN = re.compile(rb"^(CRITICAL|ERROR|WARNING|TRACE)\b")


def severity(line: bytes) -> str:
    """``error``, ``warning``, ``trace``, ``critical`` or "" for one log line."""
    for pattern in (_OSLO, _SYSLOG, _PLAIN):
        match = pattern.match(line)
        if match:
            return match.group(1).decode().lower()
    return ""


# -- confinement ------------------------------------------------------------


def confined(root: Path, relative: str) -> Path | None:
    """``relative`` (components separated by ``/``) under ``root``, resolved,
    if it exists and is under ``root``; None otherwise (a ``..``, a NUL, a
    symlink leading out, or nothing there)."""
    if "\x00" in relative:
        return None
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    try:
        real_root = root.resolve(strict=True)
        target = real_root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if target != real_root and not target.is_relative_to(real_root):
        return None
    return target


def request_relative(request: Request) -> str:
    """The path after ``/logs/``, from the request's raw bytes: a name that
    is not UTF-8 still reaches its file (``os.fsdecode``)."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    path = unquote_to_bytes(raw.split(b"?", 1)[0])
    prefix = PREFIX.encode()
    if path == prefix.rstrip(b"/"):
        return ""
    return os.fsdecode(path[len(prefix) :])


def display(name: str) -> str:
    """``name`` for a page: bytes that are not UTF-8 shown as U+FFFD."""
    return os.fsencode(name).decode("utf-8", "replace")


def href(relative: str) -> str:
    """The URL path of ``relative`` under ``/logs/``, every byte quoted."""
    return PREFIX + quote(os.fsencode(relative), safe="/")


# -- what a file is --------------------------------------------------------


def inner_name(name: str) -> str:
    return name[:-3] if name.endswith(".gz") else name


def content_type(name: str) -> str:
    """What ``name`` (its ``.gz`` taken off) is served as."""
    guessed, _ = mimetypes.guess_type(inner_name(name), strict=False)
    if guessed in AS_IS:
        return f"{guessed}; charset=utf-8" if guessed == "text/html" else guessed
    if guessed in BINARY:
        return guessed
    return TEXT


def is_text(name: str) -> bool:
    return content_type(name) == TEXT


def read_chunks(path: Path, gunzip: bool) -> Iterator[bytes]:
    """``path``'s bytes in chunks, decompressed when ``gunzip``; a corrupt
    or truncated gzip ends the stream where it breaks (logged), after
    everything before the break."""
    with open(path, "rb") as handle:
        if not gunzip:
            while chunk := handle.read(CHUNK):
                yield chunk
            return
        try:
            yield from _inflate(handle)
        except zlib.error as exc:
            log.warning("logs: %s: %s", shown(path, 300), exc)


def _inflate(handle: BinaryIO) -> Iterator[bytes]:
    """Every gzip member in ``handle`` inflated, at most :data:`CHUNK` at a time."""
    inflater = zlib.decompressobj(GZIP_WBITS)
    while raw := handle.read(CHUNK):
        data = raw
        while data:
            out = inflater.decompress(data, CHUNK)
            if out:
                yield out
            if inflater.eof:
                # gzip -c a >> b.gz makes members one after the other.
                data = inflater.unused_data
                inflater = zlib.decompressobj(GZIP_WBITS)
            else:
                data = inflater.unconsumed_tail
    tail = inflater.flush()
    if tail:
        yield tail


def lines(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Pieces of lines (without the newline) and whether each ends its line;
    a line longer than :data:`LINE_PIECE` comes in several pieces."""
    pending = b""
    for chunk in chunks:
        data = pending + chunk
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            yield data[start:end], True
            start = end + 1
        pending = data[start:]
        while len(pending) > LINE_PIECE:
            yield pending[:LINE_PIECE], False
            pending = pending[LINE_PIECE:]
    if pending:
        yield pending, True


def html_lines(chunks: Iterable[bytes], first: int = 1) -> Iterator[str]:
    """Each line as ``<span class="gk-line" id="L<n>">``, escaped, with its
    number as a link and its severity as a class; yielded in batches."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    number = first
    open_line = False
    batch: list[str] = []
    size = 0
    for piece, ends in lines(chunks):
        if not open_line:
            level = severity(piece)
            css = f"gk-line sev-{level}" if level else "gk-line"
            batch.append(
                f'<span class="{css}" id="L{number}">'
                f'<a class="gk-lno" href="#L{number}">{number}</a>'
            )
            open_line = True
        text = html.escape(decoder.decode(piece, final=ends), quote=False)
        batch.append(text)
        size += len(text)
        if ends:
            batch.append("\n</span>")
            number += 1
            open_line = False
        if size > CHUNK // 4:
            yield "".join(batch)
            batch, size = [], 0
    if open_line:
        batch.append("</span>")
    if batch:
        yield "".join(batch)


def tail_html(path: Path, max_lines: int) -> tuple[Markup, int, int]:
    """The last ``max_lines`` lines of a text file as HTML, and the numbers
    of the first line shown and of lines in all.

    A plain file is counted in C (``bytes.count``) and its end read
    backwards, at most :data:`TAIL_BYTES` of it: a long console costs a
    read, not a parse of every line.
    """
    if path.name.endswith(".gz"):
        return _tail_html_parsed(path, max_lines)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        total = 0
        last = b""
        while chunk := handle.read(CHUNK):
            total += chunk.count(b"\n")
            last = chunk
        if last and not last.endswith(b"\n"):
            total += 1  # a last line without its newline is still a line
        data, position = b"", size
        while position > 0 and data.count(b"\n") <= max_lines and len(data) < TAIL_BYTES:
            step = min(CHUNK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    if not data:
        return Markup(""), 1, 0
    parts = data.split(b"\n")
    if data.endswith(b"\n"):
        parts.pop()
    kept = parts[-max_lines:] if max_lines else []
    first = total - len(kept) + 1
    body = b"".join(part + b"\n" for part in kept)
    return Markup("".join(html_lines([body], first))), first, total


def _tail_html_parsed(path: Path, max_lines: int) -> tuple[Markup, int, int]:
    kept: list[bytes] = []
    total = 0
    for piece, ends in lines(read_chunks(path, True)):
        if kept and not kept[-1].endswith(b"\n"):
            kept[-1] += piece + (b"\n" if ends else b"")
        else:
            kept.append(piece + (b"\n" if ends else b""))
        if ends:
            total += 1
            if len(kept) > max_lines:
                del kept[0]
    first = total - len(kept) + 1
    return Markup("".join(html_lines(kept, first))), first, total


# -- directory indexes -----------------------------------------------------


@dataclass
class Entry:
    #: As shown (see :func:`display`); ``raw`` is the name on disk.
    name: str
    raw: str
    href: str
    is_dir: bool
    size: int | None
    mtime: float | None
    text: bool


def listing(directory: Path, relative: str) -> list[Entry]:
    """What ``directory`` holds (symlinks not followed), directories first."""
    entries: list[Entry] = []
    try:
        scanned = list(os.scandir(directory))
    except OSError as exc:
        log.warning("logs: cannot list %s: %s", shown(directory, 300), exc)
        return entries
    for entry in scanned:
        if entry.name == "index.html":
            continue  # the archive's static copy of this very page
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        is_dir = stat.S_ISDIR(info.st_mode)
        child = f"{relative}/{entry.name}" if relative else entry.name
        entries.append(
            Entry(
                name=display(entry.name),
                raw=entry.name,
                href=href(child) + ("/" if is_dir else ""),
                is_dir=is_dir,
                size=None if is_dir else info.st_size,
                mtime=info.st_mtime,
                text=not is_dir and is_text(entry.name),
            )
        )
    entries.sort(key=lambda e: (not e.is_dir, e.raw))
    return entries


def tree(directory: Path, relative: str, limit: int = 500) -> list[tuple[int, Entry]]:
    """Every entry below ``directory`` with its depth, at most ``limit``
    (symlinked directories are listed, not entered)."""
    found: list[tuple[int, Entry]] = []

    def walk(here: Path, rel: str, depth: int) -> None:
        for entry in listing(here, rel):
            if len(found) >= limit:
                return
            found.append((depth, entry))
            if entry.is_dir:
                walk(here / entry.raw, f"{rel}/{entry.raw}" if rel else entry.raw, depth + 1)

    walk(directory, relative, 0)
    return found


def _uuid_bounds(prefix: str) -> tuple[str, str]:
    # Build uuids are lowercase hex: every one starting with ``prefix`` sorts
    # in [prefix, prefix + "g") under C and locale collations alike (no
    # control character whose weight a locale may ignore), and the primary
    # key's index answers the range.
    return prefix, prefix + "g"


_SHORT_UUID = re.compile(r"[0-9a-f]{7}")


def build_for(ctx: WebContext, relative: str) -> BuildRecord | None:
    """The build whose logs ``relative`` is in: LOG_PATH ends with the job
    and the build's uuid cut to 7 characters (see scheduler/params.py)."""
    parts = [p for p in relative.split("/") if p]
    for end in range(len(parts), 1, -1):
        short, job = parts[end - 1], parts[end - 2]
        if not _SHORT_UUID.fullmatch(short):
            continue
        low, high = _uuid_bounds(short)
        with ctx.db.session() as session:
            query = (
                select(BuildRecord)
                .where(BuildRecord.uuid >= low, BuildRecord.uuid < high, BuildRecord.job == job)
                .order_by(BuildRecord.dispatched_at.desc())
            )
            for record in session.scalars(query):
                if not record.uuid.startswith(short):
                    continue
                if record.log_url.endswith("/" + quote("/".join(parts[:end])) + "/"):
                    return record
                if _log_path(record) == "/".join(parts[:end]):
                    return record
    return None


def _log_path(record: BuildRecord) -> str:
    try:
        value = json.loads(record.parameters or "{}").get("LOG_PATH", "")
    except ValueError:
        return ""
    return value.strip("/") if isinstance(value, str) else ""


def console_title(directory: Path) -> dict[str, str]:
    """What the archive's console says of its build: the first line names
    the job, the last the result (see worker/executor.py)."""
    found: dict[str, str] = {}
    path = directory / CONSOLE
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - 4096))
            tail = handle.read(4096)
    except OSError:
        return found
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if len(first) >= 5 and first[:2] == ["gatekeeper", "build"] and first[3] == "job":
        found["uuid"], found["job"] = first[2], first[4]
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode("utf-8", "replace").split()
    if len(last) >= 5 and last[:2] == ["gatekeeper", "build"] and last[3] == "result":
        found["result"] = last[4]
    return found


# -- the routes -----------------------------------------------------------


class BigFileResponse(FileResponse):
    # Bigger reads than Starlette's 64 KiB: a 50 MB log is 50 round trips
    # through the thread pool instead of 800.
    chunk_size = CHUNK


def _raw_headers() -> dict[str, str]:
    return {"content-security-policy": RAW_CSP, "x-content-type-options": "nosniff"}


def routes(ctx: WebContext) -> list[BaseRoute]:
    root = ctx.site.log_root
    assert root is not None  # resolve() fills it

    def not_found() -> Response:
        return PlainTextResponse("no such log\n", status_code=404)

    def serve(request: Request) -> Response:
        relative = request_relative(request)
        target = confined(root, relative)
        if target is None and not relative.strip("/") and not root.exists():
            # A new site: no build has archived anything yet.
            return _index(request, None, "")
        if target is None:
            return not_found()
        if target.is_dir():
            if relative and not request.url.path.endswith("/"):
                return RedirectResponse(href(relative.rstrip("/")) + "/", status_code=301)
            return _index(request, target, relative.strip("/"))
        if not target.is_file():
            return not_found()
        # The name asked for decides the type, not a symlink's target's.
        name = relative.rstrip("/").rsplit("/", 1)[-1]
        gz = name.endswith(".gz")
        kind = content_type(name)
        if request.query_params.get("view") == "html" and kind == TEXT:
            return _html_view(request, target, relative.strip("/"), gz)
        headers = _raw_headers()
        if not gz:
            return BigFileResponse(target, media_type=kind, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            # The client inflates it itself: the bytes go as they are.
            headers["content-encoding"] = "gzip"
            headers["vary"] = "Accept-Encoding"
            return BigFileResponse(target, media_type=kind, headers=headers)
        headers["vary"] = "Accept-Encoding"
        return StreamingResponse(read_chunks(target, True), media_type=kind, headers=headers)

    def _index(request: Request, directory: Path | None, relative: str) -> Response:
        build = build_for(ctx, relative) if relative else None
        facts = console_title(directory) if directory is not None else {}
        title = {
            "job": build.job if build else facts.get("job", ""),
            "change": (
                f"{build.change},{build.patchset}" if build and build.change is not None else ""
            ),
            "result": (build.result or "") if build else facts.get("result", ""),
        }
        crumbs = []
        parts = relative.split("/") if relative else []
        for i, part in enumerate(parts):
            crumbs.append((display(part), href("/".join(parts[: i + 1])) + "/"))
        return templates.TemplateResponse(
            request,
            "logs_index.html",
            {
                "crumbs": crumbs,
                "entries": listing(directory, relative) if directory is not None else [],
                "build": build,
                "title": title,
                "parent": href("/".join(parts[:-1])) + "/" if parts else None,
            },
        )

    def _html_view(request: Request, path: Path, relative: str, gz: bool) -> Response:
        page = templates.get_template("log_view.html").render(
            {
                "request": request,
                "relative": display(relative),
                "raw": href(relative),
                "name": display(relative.rsplit("/", 1)[-1]),
                "lines": Markup("<!--gk-lines-->"),
            }
        )
        head, tail = page.split("<!--gk-lines-->", 1)

        def body() -> Iterator[bytes]:
            yield head.encode()
            for piece in html_lines(read_chunks(path, gz)):
                yield piece.encode()
            yield tail.encode()

        return StreamingResponse(body(), media_type="text/html; charset=utf-8")

    return [
        Route("/logs", lambda request: RedirectResponse(PREFIX, status_code=301)),
        Route("/logs/{path:path}", serve, methods=["GET", "HEAD"]),
    ]
