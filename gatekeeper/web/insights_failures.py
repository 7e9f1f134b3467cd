"""Known failures: ``/insights/failures`` and ``/api/insights/failures``.

Per signature of the site's ``failures/``, the failed builds it was found in
per day over a window (``?days=``, default 7), and the failed builds no
signature explains (what elastic-recheck called uncategorised), each linked
to its build page and its logs. Read-only; every string from a build or a
signature file is escaped by the template.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from gatekeeper.errors import ConfigError
from gatekeeper.insights.known_failures import (
    DAY,
    FailedBuild,
    SignatureHits,
    day_of,
    hits_per_day,
    uncategorised,
)
from gatekeeper.insights.signatures import SignatureSet, load_signatures
from gatekeeper.model.outside import shown
from gatekeeper.web.context import WebContext
from gatekeeper.web.templating import templates

DEFAULT_DAYS = 7
MAX_DAYS = 90
#: Uncategorised builds listed (newest first).
UNCATEGORISED_LIMIT = 200
#: Up to this many days, every day of the window is a column; beyond, only
#: the days with hits.
EVERY_DAY_UP_TO = 14


class BadWindowError(ValueError):
    """``days`` is not a whole number from 1 to MAX_DAYS."""


def parse_days(value: str | None) -> int:
    """:raises BadWindowError:"""
    if not value:
        return DEFAULT_DAYS
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_DAYS:
        raise BadWindowError(f"days must be a whole number from 1 to {MAX_DAYS}")
    return int(value)


@dataclass(frozen=True)
class Row:
    """One signature's line of the table."""

    id: str
    description: str
    bug: str
    hits: SignatureHits


def _signatures(ctx: WebContext) -> tuple[SignatureSet, str]:
    """The site's signatures, and why they could not be read ("" when they could)."""
    directory = ctx.site.failures_dir
    if directory is None:
        return SignatureSet(), ""
    try:
        return load_signatures(directory), ""
    except ConfigError as exc:
        return SignatureSet(), shown(exc, 500)


def _safe_link(url: str) -> str:
    """``url`` when it is an http(s) link, else "" (a link is never a script)."""
    return url if url.startswith(("http://", "https://")) else ""


def _view(ctx: WebContext, days: int) -> dict[str, Any]:
    now = time.time()
    signatures, problem = _signatures(ctx)
    rows = []
    for hits in hits_per_day(ctx.db, days, now):
        signature = signatures.get(hits.signature)
        rows.append(
            Row(
                hits.signature,
                signature.description if signature else "(no longer in failures/)",
                _safe_link(signature.bug) if signature else "",
                hits,
            )
        )
    window = [day_of(now - (days - 1 - i) * DAY) for i in range(days)]
    if days > EVERY_DAY_UP_TO:
        seen = {day for row in rows for day in row.hits.days}
        window = [day for day in window if day in seen]
    return {
        "days": days,
        "rows": rows,
        "columns": window,
        "uncategorised": uncategorised(ctx.db, days, UNCATEGORISED_LIMIT, now),
        "known": len(signatures),
        "problem": problem,
    }


def _build_json(build: FailedBuild, base_url: str) -> dict[str, Any]:
    return {
        "uuid": build.uuid,
        "job": build.job,
        "project": build.project,
        "branch": build.branch,
        "change": build.change,
        "patchset": build.patchset,
        "pipeline": build.pipeline,
        "result": build.result,
        "provider": build.provider,
        "ended_at": build.ended_at,
        "log_url": build.log_url,
        "build_url": f"{base_url}build/{build.uuid}",
    }


def routes(ctx: WebContext) -> list[BaseRoute]:
    def page(request: Request) -> Response:
        try:
            days = parse_days(request.query_params.get("days"))
        except BadWindowError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        view = _view(ctx, days)
        view["log_link"] = _safe_link
        return templates.TemplateResponse(request, "insights_failures.html", view)

    def api(request: Request) -> Response:
        try:
            days = parse_days(request.query_params.get("days"))
        except BadWindowError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        view = _view(ctx, days)
        body = {
            "days": days,
            "signatures": [
                {
                    "id": row.id,
                    "description": row.description,
                    "bug": row.bug,
                    "total": row.hits.total,
                    "per_day": row.hits.days,
                    "last_build": row.hits.last_build,
                }
                for row in view["rows"]
            ],
            "uncategorised": [_build_json(b, ctx.base_url) for b in view["uncategorised"]],
        }
        return JSONResponse(body)

    return [
        Route("/insights/failures", page),
        Route("/api/insights/failures", api),
    ]
