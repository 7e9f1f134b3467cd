"""The status page (``/``, ``/change/N,P``) and Zuul v2.5's ``/status.json``.

The scheduler is asked for its snapshot at most once a second however many
clients poll (:class:`StatusCache`); every client gets the same bytes with
an ETag, so a page that already has them gets a 304.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gatekeeper.errors import GatekeeperError
from gatekeeper.model.outside import shown
from gatekeeper.web.context import WebContext
from gatekeeper.web.templating import templates
from gatekeeper.web.zuul_status import matching_items, to_zuul

log = logging.getLogger(__name__)

__all__ = ["EXPIRY", "StatusCache", "routes"]

#: How long one status.json is served before the scheduler is asked again (s).
EXPIRY = 1.0


@dataclass(frozen=True)
class Rendered:
    """One status.json, ready to serve."""

    status: dict[str, Any]
    body: bytes
    etag: str
    built: float


class StatusCache:
    """The latest status.json, rebuilt lazily when older than ``expiry``.

    Used from the event loop; the snapshot itself is asked for in a worker
    thread (over Gearman or a call into the scheduler thread, both block).
    """

    def __init__(self, ctx: WebContext, expiry: float = EXPIRY) -> None:
        self.ctx = ctx
        self.expiry = expiry
        self._latest: Rendered | None = None
        self._lock = asyncio.Lock()

    def _build(self) -> Rendered:
        status = to_zuul(self.ctx.live(), self.ctx.base_url)
        body = json.dumps(status, separators=(",", ":")).encode()
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        return Rendered(status, body, etag, time.time())

    async def get(self) -> Rendered:
        """The current status.json.

        :raises GatekeeperError: the scheduler could not be asked.
        """
        latest = self._latest
        if latest is not None and time.time() - latest.built < self.expiry:
            return latest
        async with self._lock:
            # Whoever waited on the lock finds what the first one built.
            latest = self._latest
            if latest is None or time.time() - latest.built >= self.expiry:
                latest = await asyncio.to_thread(self._build)
                self._latest = latest
            return latest


def _headers(rendered: Rendered, expiry: float) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": "*",
        "Cache-Control": f"public, max-age={max(1, round(expiry))}",
        "Last-Modified": formatdate(rendered.built, usegmt=True),
        "Expires": formatdate(rendered.built + expiry, usegmt=True),
        "ETag": rendered.etag,
    }


def _not_modified(request: Request, rendered: Rendered) -> bool:
    """Whether the client's copy is current (RFC 9110: If-None-Match wins)."""
    match = request.headers.get("if-none-match")
    if match is not None:
        tags = {t.strip().removeprefix("W/") for t in match.split(",")}
        return rendered.etag in tags or "*" in tags
    since = request.headers.get("if-modified-since")
    if since:
        try:
            return int(rendered.built) <= parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False
    return False


def _unavailable(exc: GatekeeperError) -> Response:
    log.warning("status: the scheduler could not be asked: %s", shown(str(exc)))
    return JSONResponse(
        {"error": f"the scheduler could not be asked: {exc}"},
        status_code=503,
        headers={"Access-Control-Allow-Origin": "*", "Retry-After": "5"},
    )


def routes(ctx: WebContext, cache: StatusCache | None = None) -> list[BaseRoute]:
    status_cache = cache or StatusCache(ctx)

    async def status_json(request: Request) -> Response:
        try:
            rendered = await status_cache.get()
        except GatekeeperError as exc:
            return _unavailable(exc)
        headers = _headers(rendered, status_cache.expiry)
        if _not_modified(request, rendered):
            return Response(status_code=304, headers=headers)
        return Response(rendered.body, media_type="application/json", headers=headers)

    async def change_json(request: Request) -> Response:
        try:
            rendered = await status_cache.get()
        except GatekeeperError as exc:
            return _unavailable(exc)
        headers = _headers(rendered, status_cache.expiry)
        del headers["ETag"]  # the whole status's tag, not this list's
        items = matching_items(rendered.status, request.path_params["change"])
        if not items:
            return JSONResponse(
                {"error": "no such change in any pipeline"}, status_code=404, headers=headers
            )
        return JSONResponse(items, headers=headers)

    async def page(request: Request) -> Response:
        return templates.TemplateResponse(
            request, "status.html", {"change": request.path_params.get("change", "")}
        )

    return [
        Route("/", page),
        Route("/change/{change:str}", page),
        Route("/status", status_json),
        Route("/status.json", status_json),
        Route("/status/change/{change:str}", change_json),
    ]
