"""``/insights/providers``: does a job fail more often on one node provider?

Per job and for all jobs together, over ``?days=N`` (default: the site's
``insights.providers.days``; ``?job=J`` for one job): each provider's runs,
failures, failure rate with its Wilson interval, and whether Fisher's exact
test, Holm-corrected, flags it as significantly worse than the others
(:mod:`gatekeeper.insights.providers`). ``/api/insights/providers`` is the
same as JSON. Read-only; job and provider names are escaped on render.
"""

from __future__ import annotations

import asyncio
import math

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from gatekeeper.insights.providers import ProviderReport, provider_report
from gatekeeper.web.context import WebContext
from gatekeeper.web.templating import templates

#: The longest window a request may ask for (the query is bounded by it).
MAX_DAYS = 366.0


def routes(ctx: WebContext) -> list[BaseRoute]:
    config = ctx.site.insights.providers

    def parse(request: Request) -> tuple[float, str | None] | str:
        """``(days, job)`` from the query, or why it is refused."""
        text = request.query_params.get("days") or ""
        try:
            days = float(text) if text else config.days
        except ValueError:
            return "days must be a number"
        if not (math.isfinite(days) and 0 < days <= MAX_DAYS):
            return f"days must be more than 0 and at most {MAX_DAYS:g}"
        return days, request.query_params.get("job") or None

    async def report(days: float, job: str | None) -> ProviderReport:
        # The database is synchronous: off the event loop.
        return await asyncio.to_thread(
            provider_report, ctx.db, days, job, config.level, config.min_runs
        )

    async def page(request: Request) -> Response:
        asked = parse(request)
        if isinstance(asked, str):
            return PlainTextResponse(asked + "\n", status_code=400)
        days, job = asked
        return templates.TemplateResponse(
            request,
            "insights_providers.html",
            {"report": await report(days, job), "job": job or ""},
        )

    async def api(request: Request) -> Response:
        asked = parse(request)
        if isinstance(asked, str):
            return JSONResponse({"error": asked}, status_code=400)
        return JSONResponse((await report(*asked)).as_json())

    return [
        Route("/insights/providers", page),
        Route("/api/insights/providers", api),
    ]
