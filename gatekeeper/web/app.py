"""The ASGI application: every page module's routes, the static files, and
the headers every response carries."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gatekeeper.errors import GatekeeperError
from gatekeeper.web import (
    actions,
    builds,
    console,
    insights_flaky,
    insights_providers,
    logs,
    metrics,
    pool,
    status,
)
from gatekeeper.web.context import WebContext
from gatekeeper.web.templating import STATIC

# No inline script or style, nothing from another origin, no framing: what a
# commit subject or a log line smuggles into a page cannot run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [
                    (name, value) for name, value in SECURITY_HEADERS if name not in present
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


def _health_routes(ctx: WebContext) -> list[BaseRoute]:
    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        # Ready when the database answers and the scheduler can be asked.
        try:
            ctx.db.ping()
            ctx.live()
        except GatekeeperError as exc:
            return JSONResponse({"status": "unavailable", "why": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    return [Route("/health/live", live), Route("/health/ready", ready)]


def make_app(ctx: WebContext) -> Starlette:
    routes: list[BaseRoute] = [
        *_health_routes(ctx),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]
    # Each page module adds its routes here: routes.extend(<module>.routes(ctx)).
    routes.extend(pool.routes(ctx))
    routes.extend(metrics.routes(ctx))
    routes.extend([*builds.routes(ctx), *logs.routes(ctx)])
    routes.extend(status.routes(ctx))
    routes.extend(actions.routes(ctx))
    routes.extend(console.routes(ctx))
    routes.extend(insights_flaky.routes(ctx))
    routes.extend(insights_providers.routes(ctx))
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
    app.state.ctx = ctx
    return app
