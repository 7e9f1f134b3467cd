"""The live console: ``/build/<uuid>/console`` as Server-Sent Events.

For a running build the web dials the worker that runs it, at the address
the worker recorded on the build row (:mod:`gatekeeper.model.console`), and
relays the console line by line as it is written, as Zuul's finger gateway
relays its executors' streams; the worker may be on another host. The uuid
in the URL only selects a row: the web dials no address that a build row
does not hold, so it is no proxy to anywhere else. A build that ended (or
whose worker no longer answers) is served from its archived console.txt.

Events: ``source`` (``live`` or ``archive``), then one message per console
line, then ``end`` (the build's result, when the row has one). Lines are
data, never markup: the page's script sets them as text.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gatekeeper.db.tables import BuildRecord
from gatekeeper.model.console import OK, is_build_uuid, split_address
from gatekeeper.model.outside import shown
from gatekeeper.web import builds, logs
from gatekeeper.web.context import WebContext

log = logging.getLogger(__name__)

#: Bytes read at a time, from the worker or the archive.
CHUNK = 65536
#: A line longer than this is sent in pieces (a page holds no megabyte line).
LINE_LIMIT = 65536
#: Seconds to reach the worker and hear its answer.
DIAL_TIMEOUT = 5.0
#: Seconds of silence after which a comment is sent, so proxies keep the
#: stream open.
KEEPALIVE = 15.0


class _UnavailableError(Exception):
    """The worker did not serve the console (gone, refused, unreachable)."""


def event(data: str, name: str = "") -> bytes:
    # SSE ends a line at \r or \n: a console line is one message of one line.
    text = data.replace("\r", "").replace("\n", "")
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {text}\n\n".encode()


class _Lines:
    """Bytes in, whole decoded lines out (a line split across reads waits
    for its end; invalid UTF-8 shows as the replacement character)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, data: bytes, final: bool = False) -> Iterator[str]:
        text = self._partial + self._decoder.decode(data, final)
        *lines, self._partial = text.split("\n")
        yield from lines
        while len(self._partial) > LINE_LIMIT:
            yield self._partial[:LINE_LIMIT]
            self._partial = self._partial[LINE_LIMIT:]
        if final and self._partial:
            yield self._partial
            self._partial = ""


async def _live(address: str, uuid: str) -> AsyncIterator[bytes]:
    """The console from the worker at ``address``, until the build ends.

    :raises _UnavailableError: before anything was yielded, when the worker
        cannot be reached or does not serve that build.
    """
    where = split_address(address)
    if where is None:
        raise _UnavailableError(f"bad console address {shown(address)}")
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*where), DIAL_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise _UnavailableError(str(exc)) from exc
    try:
        try:
            writer.write(f"{uuid}\n".encode())
            status = await asyncio.wait_for(reader.readline(), DIAL_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise _UnavailableError(str(exc)) from exc
        if status != OK:
            raise _UnavailableError(shown(status.decode("utf-8", "replace")))
        lines = _Lines()
        yield event("live", "source")
        while True:
            try:
                data = await asyncio.wait_for(reader.read(CHUNK), KEEPALIVE)
            except TimeoutError:
                yield b": still running\n\n"
                continue
            except OSError as exc:
                log.info("console of %s from %s broke: %s", uuid, shown(address), exc)
                data = b""
            for line in lines.feed(data, final=not data):
                yield event(line)
            if not data:
                return
    finally:
        # Also when the browser went away: the worker's reader ends with it.
        writer.close()


def _read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


async def _archived(ctx: WebContext, record: BuildRecord) -> AsyncIterator[bytes]:
    yield event("archive", "source")
    found = await run_in_threadpool(builds.log_dir, ctx, record)
    if found is None:
        return
    path = found[0] / logs.CONSOLE
    if not path.is_file():
        return
    chunks = _read_chunks(path)
    lines = _Lines()
    while True:
        chunk = await run_in_threadpool(next, chunks, b"")
        for line in lines.feed(chunk, final=not chunk):
            yield event(line)
        if not chunk:
            return


def routes(ctx: WebContext) -> list[BaseRoute]:
    def load(uuid: str) -> BuildRecord | None:
        with ctx.db.session() as session:
            return session.get(BuildRecord, uuid)

    async def events(record: BuildRecord) -> AsyncIterator[bytes]:
        uuid = record.uuid
        if record.result is None and record.console_address:
            try:
                async for chunk in _live(record.console_address, uuid):
                    yield chunk
                latest = await run_in_threadpool(load, uuid)
                record = latest or record
                yield event(record.result or "", "end")
                return
            except _UnavailableError as exc:
                log.info("no live console for %s: %s", uuid, exc)
        async for chunk in _archived(ctx, record):
            yield chunk
        yield event(record.result or "", "end")

    async def console(request: Request) -> Response:
        uuid = request.path_params["uuid"]
        record = await run_in_threadpool(load, uuid) if is_build_uuid(uuid) else None
        if record is None:
            return PlainTextResponse("no such build\n", status_code=404)
        return StreamingResponse(
            events(record),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    return [Route("/build/{uuid}/console", console)]
