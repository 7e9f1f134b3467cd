"""``/insights``, the index of why builds fail, and ``/insights/flaky`` with
its JSON twin ``/api/insights/flaky``: each job's flaky rate and the flaky
incidents (a failure, then a pass on the same patch set and the same changes
ahead; see :mod:`gatekeeper.insights.flaky` for what is compared and why).

``?days=N`` (default 7) is the window, ``?job=J`` keeps one job; both live
in the URL so a filtered page is a link to share. Job and project names came
from the layout and Gerrit: the templates escape them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from gatekeeper.insights.flaky import DEFAULT_DAYS, FlakyReport, Incident, Run, flaky_report
from gatekeeper.web import logs
from gatekeeper.web.context import WebContext
from gatekeeper.web.templating import templates

#: The widest window a page reads (a year of builds is already many rows).
MAX_DAYS = 366.0
#: The most incidents the page lists (the newest); the JSON has them all.
PAGE_INCIDENTS = 500

#: The pages the index links to, with what each answers. Others' pages are
#: listed here as they are added.
PAGES = [
    (
        "/insights/providers",
        "Providers",
        "Failure rates per node provider, and whether one differs from the others.",
    ),
    (
        "/insights/flaky",
        "Flaky jobs",
        "Jobs that failed and then passed on unchanged code (a recheck on the same "
        "patch set and changes ahead), with their rates and incidents.",
    ),
    (
        "/insights/failures",
        "Known failures",
        "Recognised failures per signature per day, and the failed builds no signature explains.",
    ),
]


class BadQueryError(ValueError):
    """A ``days`` or ``job`` value that cannot be used."""


def parse_query(params: Mapping[str, str]) -> tuple[float, str | None]:
    """The window in days and the job, if one was asked for.

    :raises BadQueryError: ``days`` is not a number in (0, MAX_DAYS].
    """
    text = params.get("days", "").strip()
    try:
        days = float(text) if text else DEFAULT_DAYS
    except ValueError as exc:
        raise BadQueryError("days must be a number") from exc
    if not math.isfinite(days) or days <= 0 or days > MAX_DAYS:
        raise BadQueryError(f"days must be more than 0 and at most {MAX_DAYS:g}")
    job = params.get("job", "").strip() or None
    return days, job


def logs_href(run: Run) -> str:
    """The run's log directory under ``/logs/``, "" when unknown."""
    return logs.href(run.log_path) + "/" if run.log_path else ""


def _run_json(run: Run, base_url: str) -> dict[str, Any]:
    return {
        "uuid": run.uuid,
        "result": run.result,
        "dispatched_at": run.dispatched_at,
        "end_time": run.end_time,
        "provider": run.provider,
        "region": run.region,
        "availability_zone": run.availability_zone,
        "node": run.node,
        "url": f"{base_url}build/{run.uuid}",
        "logs": f"{base_url.rstrip('/')}{logs_href(run)}" if run.log_path else "",
    }


def _incident_json(incident: Incident, base_url: str) -> dict[str, Any]:
    return {
        "job": incident.job,
        "project": incident.project,
        "pipeline": incident.pipeline,
        "change": incident.change,
        "patchset": incident.patchset,
        "changes": incident.state,
        "when": incident.when,
        "failed": [_run_json(run, base_url) for run in incident.failed],
        "passed": _run_json(incident.passed, base_url),
    }


def as_json(report: FlakyReport, base_url: str) -> dict[str, Any]:
    return {
        "days": report.days,
        "since": report.since,
        "truncated": report.truncated,
        "jobs": [
            {
                "job": rate.job,
                "runs": rate.runs,
                "failures": rate.failures,
                "flaky_failures": rate.flaky_failures,
                "incidents": rate.incidents,
                "rate": rate.rate,
            }
            for rate in report.rates
        ],
        "incidents": [_incident_json(i, base_url) for i in report.incidents],
    }


def routes(ctx: WebContext) -> list[BaseRoute]:
    async def read(days: float, job: str | None) -> FlakyReport:
        # The database is synchronous: off the event loop.
        return await asyncio.to_thread(flaky_report, ctx.db, days, job)

    async def index_page(request: Request) -> Response:
        return templates.TemplateResponse(request, "insights_index.html", {"pages": PAGES})

    async def flaky_page(request: Request) -> Response:
        try:
            days, job = parse_query(request.query_params)
        except BadQueryError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=400)
        report = await read(days, job)
        return templates.TemplateResponse(
            request,
            "insights_flaky.html",
            {
                "report": report,
                "incidents": report.incidents[:PAGE_INCIDENTS],
                "days": days,
                "job": job,
                "logs_href": logs_href,
            },
        )

    async def flaky_api(request: Request) -> Response:
        try:
            days, job = parse_query(request.query_params)
        except BadQueryError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400, headers=_CORS)
        report = await read(days, job)
        return JSONResponse(as_json(report, ctx.base_url), headers=_CORS)

    return [
        Route("/insights", index_page),
        Route("/insights/flaky", flaky_page),
        Route("/api/insights/flaky", flaky_api),
    ]


# Other sites' dashboards read it, as they read /api/builds.
_CORS = {"access-control-allow-origin": "*"}
