"""Build history: ``/builds`` and ``/api/builds`` (filtered, newest first,
paged by offset and limit), a buildset page per queue item, and a page per
build with its parameters, console and log tree.

Filters are exact matches on the build row and live in the URL, so a
filtered list is a link to share. Every value shown came from a job, a
change or a worker: the templates escape it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Select, func, select
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from gatekeeper.db.tables import BuildRecord
from gatekeeper.web import logs
from gatekeeper.web.context import WebContext
from gatekeeper.web.templating import templates

#: The filters /builds and /api/builds take, each an exact match.
FILTERS = ("project", "pipeline", "job", "change", "branch", "result", "provider", "label", "node")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: Console lines shown on a build page (the end of it: read it from the bottom).
CONSOLE_LINES = 5000

_COLUMNS = {
    "project": BuildRecord.project,
    "pipeline": BuildRecord.pipeline,
    "job": BuildRecord.job,
    "change": BuildRecord.change,
    "branch": BuildRecord.branch,
    "result": BuildRecord.result,
    "provider": BuildRecord.provider,
    "label": BuildRecord.label,
    "node": BuildRecord.node,
}


class BadQueryError(ValueError):
    """A filter or paging value that cannot be used."""


def parse_query(params: Mapping[str, str]) -> tuple[dict[str, str], int, int]:
    """The filters given (empty ones dropped), offset and limit.

    :raises BadQueryError: ``change``, ``offset`` or ``limit`` is not a number.
    """
    filters = {k: params[k].strip() for k in FILTERS if params.get(k, "").strip()}
    if "change" in filters and not filters["change"].isdigit():
        raise BadQueryError("change must be a number")
    try:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or DEFAULT_LIMIT)
    except ValueError as exc:
        raise BadQueryError("offset and limit must be numbers") from exc
    if offset < 0 or limit < 1:
        raise BadQueryError("offset must be 0 or more and limit 1 or more")
    return filters, offset, min(limit, MAX_LIMIT)


def _filtered(query: Select[Any], filters: Mapping[str, str]) -> Select[Any]:
    for key, value in filters.items():
        column = _COLUMNS[key]
        query = query.where(column == (int(value) if key == "change" else value))
    return query


def search(
    ctx: WebContext, filters: Mapping[str, str], offset: int, limit: int
) -> list[BuildRecord]:
    """Builds matching ``filters``, newest first; ties broken by uuid, so
    pages neither repeat nor skip a build."""
    query = _filtered(select(BuildRecord), filters)
    query = query.order_by(BuildRecord.dispatched_at.desc(), BuildRecord.uuid.desc())
    with ctx.db.session() as session:
        return list(session.scalars(query.offset(offset).limit(limit)))


def count(ctx: WebContext, filters: Mapping[str, str]) -> int:
    query = _filtered(select(func.count()).select_from(BuildRecord), filters)
    with ctx.db.session() as session:
        return int(session.scalar(query) or 0)


def parameters(record: BuildRecord) -> dict[str, str]:
    try:
        value = json.loads(record.parameters or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def duration(record: BuildRecord) -> float | None:
    if record.start_time is None or record.end_time is None:
        return None
    return record.end_time - record.start_time


def wait(record: BuildRecord) -> float | None:
    """From dispatch to start: Gearman's queue and the wait for a node."""
    return None if record.start_time is None else record.start_time - record.dispatched_at


def image_age(record: BuildRecord) -> float | None:
    """How old the node's image was when the build started."""
    if record.image_built_at is None or record.start_time is None:
        return None
    return max(0.0, record.start_time - record.image_built_at)


def as_json(record: BuildRecord, base_url: str) -> dict[str, object]:
    return {
        "uuid": record.uuid,
        "job": record.job,
        "project": record.project,
        "branch": record.branch,
        "change": record.change,
        "patchset": record.patchset,
        "pipeline": record.pipeline,
        "item_uuid": record.item_uuid,
        "attempt": record.attempt,
        "result": record.result,
        "node": record.node,
        "provider": record.provider,
        "label": record.label,
        "region": record.region,
        "availability_zone": record.availability_zone,
        "image": record.image,
        "image_built_at": record.image_built_at,
        "image_age": image_age(record),
        "worker": record.worker,
        "dispatched_at": record.dispatched_at,
        "start_time": record.start_time,
        "end_time": record.end_time,
        "duration": duration(record),
        "wait": wait(record),
        "log_url": record.log_url,
        "url": f"{base_url}build/{record.uuid}",
    }


def log_dir(ctx: WebContext, record: BuildRecord) -> tuple[Path, str] | None:
    """The build's log directory under the log root, and its path there."""
    root = ctx.site.log_root
    assert root is not None
    relative = parameters(record).get("LOG_PATH", "").strip("/")
    if not relative and record.log_url.startswith(ctx.site.log_url):
        relative = record.log_url[len(ctx.site.log_url) :].strip("/")
    if not relative:
        return None
    found = logs.confined(root, relative)
    return None if found is None or not found.is_dir() else (found, relative)


def gerrit_url(ctx: WebContext, record: BuildRecord) -> str:
    gerrit = ctx.site.gerrit
    if gerrit is None or not gerrit.web_url or record.change is None:
        return ""
    return f"{gerrit.web_url.rstrip('/')}/#/c/{record.change}/{record.patchset or ''}"


def routes(ctx: WebContext) -> list[BaseRoute]:
    def bad(why: str) -> Response:
        return PlainTextResponse(f"{why}\n", status_code=400)

    def builds_page(request: Request) -> Response:
        try:
            filters, offset, limit = parse_query(request.query_params)
        except BadQueryError as exc:
            return bad(str(exc))
        rows = search(ctx, filters, offset, limit + 1)
        more = len(rows) > limit

        def page(at: int) -> str:
            return "/builds?" + urlencode({**filters, "offset": at, "limit": limit})

        return templates.TemplateResponse(
            request,
            "builds.html",
            {
                "builds": rows[:limit],
                "total": count(ctx, filters),
                "filters": filters,
                "names": FILTERS,
                "offset": offset,
                "newer": page(max(0, offset - limit)) if offset else "",
                "older": page(offset + limit) if more else "",
                "duration": duration,
            },
        )

    def builds_api(request: Request) -> Response:
        try:
            filters, offset, limit = parse_query(request.query_params)
        except BadQueryError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400, headers=_CORS)
        rows = search(ctx, filters, offset, limit)
        return JSONResponse([as_json(r, ctx.base_url) for r in rows], headers=_CORS)

    def build_api(request: Request) -> Response:
        with ctx.db.session() as session:
            record = session.get(BuildRecord, request.path_params["uuid"])
        if record is None:
            return JSONResponse({"error": "no such build"}, status_code=404, headers=_CORS)
        body = as_json(record, ctx.base_url)
        body["parameters"] = parameters(record)
        return JSONResponse(body, headers=_CORS)

    def buildset_page(request: Request) -> Response:
        item = request.path_params["uuid"]
        with ctx.db.session() as session:
            query = (
                select(BuildRecord)
                .where(BuildRecord.item_uuid == item)
                .order_by(BuildRecord.dispatched_at, BuildRecord.attempt, BuildRecord.uuid)
            )
            rows = list(session.scalars(query))
        if not rows:
            return PlainTextResponse("no builds for that item\n", status_code=404)
        return templates.TemplateResponse(
            request,
            "buildset.html",
            {"item": item, "builds": rows, "first": rows[0], "duration": duration},
        )

    def build_page(request: Request) -> Response:
        with ctx.db.session() as session:
            record = session.get(BuildRecord, request.path_params["uuid"])
        if record is None:
            return PlainTextResponse("no such build\n", status_code=404)
        found = log_dir(ctx, record)
        console = None
        entries: list[tuple[int, logs.Entry]] = []
        relative = ""
        if found is not None:
            directory, relative = found
            if (directory / logs.CONSOLE).is_file():
                console = logs.tail_html(directory / logs.CONSOLE, CONSOLE_LINES)
            entries = logs.tree(directory, relative)
        return templates.TemplateResponse(
            request,
            "build.html",
            {
                "build": record,
                "parameters": sorted(parameters(record).items()),
                "gerrit_url": gerrit_url(ctx, record),
                "duration": duration(record),
                "wait": wait(record),
                "image_age": image_age(record),
                "console": console,
                "console_href": logs.href(f"{relative}/{logs.CONSOLE}") if relative else "",
                "log_href": logs.href(relative) + "/" if relative else "",
                "entries": entries,
            },
        )

    return [
        Route("/builds", builds_page),
        Route("/api/builds", builds_api),
        Route("/api/build/{uuid}", build_api),
        Route("/buildset/{uuid}", buildset_page),
        Route("/build/{uuid}", build_page),
    ]


# Other sites' dashboards read the build history.
_CORS = {"access-control-allow-origin": "*"}
