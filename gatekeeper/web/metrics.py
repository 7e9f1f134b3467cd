"""``/metrics`` for Prometheus: the app's own registry when it runs in this
process; otherwise (``gatekeeper web`` on its own) the levels the database
knows. Events counted in another process reach Prometheus through that
process, or through statsd."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gatekeeper.db.nodes import NodeStore
from gatekeeper.insights.providers import ProviderWatch
from gatekeeper.metrics import PrometheusMetrics
from gatekeeper.model.metrics import Census
from gatekeeper.web.context import WebContext


def routes(ctx: WebContext) -> list[BaseRoute]:
    registry = ctx.metrics
    if registry is None:
        census = Census(
            nodes=NodeStore(ctx.db).census,
            max_servers={p.name: p.max_servers for p in ctx.site.providers},
            provider_rates=ProviderWatch.for_site(ctx.db, ctx.site.insights.providers).rates,
        )
        registry = PrometheusMetrics(census).registry

    async def metrics(request: Request) -> Response:
        # The census reads the database: off the event loop.
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics)]
