"""Operator actions from a browser: sign in with an operator token, then
enqueue (recheck), dequeue and promote changes, hold and release nodes.

Signing in is pasting a token ``gatekeeper admin token`` made; it is checked
with the site's secret by :func:`gatekeeper.dispatch.tokens.verify` (the one
check the scheduler's admin worker makes) and kept in an HttpOnly,
SameSite=Strict cookie that expires with it. Without it every page stays
read-only: no buttons are drawn and every action is refused.

Every POST must come from a page of this site (its Origin, else its
Referer, names this origin) and carry the session's CSRF token: an HMAC of
the session's token under the site's secret, so it needs no server state
and a forged form from elsewhere cannot know it. The sign-in form, having
no session yet, carries a random value also set as a cookie (double submit).

Queue actions are operator requests sent with the user's token through the
scheduler's admin worker (:data:`gatekeeper.web.context.Operate`), so the
token is checked and the audit row written there exactly as for the CLI.
Node holds run :mod:`gatekeeper.pool.holds`, as ``gatekeeper nodes hold``
does, and are audited here with the same columns.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gatekeeper.db.audit import AuditLog, Outcome
from gatekeeper.db.nodes import NodeStore
from gatekeeper.dispatch.tokens import Caller, allows, verify
from gatekeeper.errors import GatekeeperError, TokenError
from gatekeeper.model.outside import shown
from gatekeeper.pool.holds import hold_node, release_node
from gatekeeper.pool.providers.base import public_key_line
from gatekeeper.web.context import WebContext
from gatekeeper.web.templating import templates

log = logging.getLogger(__name__)

__all__ = ["COOKIE", "CSRF_FIELD", "Session", "routes", "session"]

#: The cookie holding the signed-in operator's token.
COOKIE = "gk_operator"
#: The sign-in form's double-submit cookie.
LOGIN_COOKIE = "gk_login"
#: The cookie naming the flash message to show on the next page.
FLASH_COOKIE = "gk_flash"
#: The form field every POST carries its CSRF token in.
CSRF_FIELD = "csrf"
# The role every action here needs.
NEEDED = "operator"
# Bytes a form may have: a public key and a reason fit many times over.
FORM_MAX = 32 * 1024
# Characters of a hold's reason: it is shown in 'nodes list' and on /nodes.
REASON_MAX = 500
# Flash messages kept for pages not yet shown (oldest dropped first).
FLASH_KEPT = 256
# How long an action waits for the scheduler (s).
OPERATE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Session:
    """A signed-in operator: who, their token, the CSRF token of this session."""

    caller: Caller
    token: str
    csrf: str
    expires: float


def _csrf(secret: bytes, token: str) -> str:
    return hmac.new(secret, b"gatekeeper-web-csrf\0" + token.encode(), hashlib.sha256).hexdigest()


def _expiry(token: str) -> float:
    """The ``exp`` of a token :func:`verify` has accepted (read, not checked)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return float(claims["exp"])


def _signed_in(secret: bytes | None, token: str | None) -> Session | None:
    if secret is None or not token:
        return None
    try:
        caller = verify(secret, token)
    except TokenError:
        return None
    return Session(caller, token, _csrf(secret, token), _expiry(token))


def session(request: Request) -> Session | None:
    """The signed-in operator of ``request``, if its cookie holds a current
    token this site signed; None otherwise (read-only)."""
    ctx: WebContext | None = getattr(request.app.state, "ctx", None)
    if ctx is None:
        return None
    return _signed_in(ctx.secret, request.cookies.get(COOKIE))


class Flashes:
    """Messages waiting to be shown once, by a random id a cookie names: a
    link cannot make the page say something this site did not."""

    def __init__(self) -> None:
        self._kept: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def add(self, text: str, kind: str) -> str:
        key = secrets.token_urlsafe(16)
        self._kept[key] = (shown(text, 500), kind)
        while len(self._kept) > FLASH_KEPT:
            self._kept.popitem(last=False)
        return key

    def take(self, key: str | None) -> dict[str, str] | None:
        found = self._kept.pop(key, None) if key else None
        return None if found is None else {"text": found[0], "kind": found[1]}


# One per process: the event loop is its only user.
FLASHES = Flashes()


def template_context(request: Request) -> dict[str, Any]:
    """What base.html needs on every page: who is signed in, the CSRF
    token for their forms, whether sign-in is offered, the flash message."""
    ctx: WebContext | None = getattr(request.app.state, "ctx", None)
    current = session(request)
    return {
        "operator": current.caller if current else None,
        "csrf": current.csrf if current else "",
        "signin": ctx is not None and ctx.secret is not None,
        "flash": FLASHES.take(request.cookies.get(FLASH_COOKIE)),
    }


templates.context_processors.append(template_context)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(ctx: WebContext, request: Request) -> bool:
    """Whether the POST came from a page of this site: its Origin header,
    else its Referer, names this origin (the one asked, or ``web.url``'s).
    Neither: refused (every browser sends Origin on a form POST)."""
    allowed = {_origin(str(request.base_url)), _origin(ctx.base_url)}
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower() in allowed
    referer = request.headers.get("referer")
    return referer is not None and _origin(referer) in allowed


def _local(path: str) -> str:
    """``path`` if it is a path on this site, else ``/``: a redirect never
    leaves it."""
    if path.startswith("/") and not path.startswith("//") and path.isprintable():
        if "\\" not in path and not urlsplit(path).netloc:
            return path
    return "/"


def _secure(ctx: WebContext) -> bool:
    return ctx.base_url.lower().startswith("https:")


def _back(ctx: WebContext, to: str, text: str, kind: str) -> Response:
    response = RedirectResponse(_local(to), status_code=303)
    response.set_cookie(
        FLASH_COOKIE,
        FLASHES.add(text, kind),
        max_age=60,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(ctx),
    )
    return response


async def _form(request: Request) -> dict[str, str] | Response:
    """The POSTed form's fields (the last of each name).

    Only ``application/x-www-form-urlencoded`` (what the pages' forms send;
    read here with the standard library: no multipart parser needed), at
    most :data:`FORM_MAX` bytes, with its length said up front.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return PlainTextResponse("a form must be application/x-www-form-urlencoded", 415)
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > FORM_MAX:
        return PlainTextResponse(f"a form is at most {FORM_MAX} bytes", status_code=413)
    body = await request.body()
    try:
        pairs = parse_qsl(body[:FORM_MAX].decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return PlainTextResponse("the form is not UTF-8 URL-encoded fields", status_code=400)
    return dict(pairs)


def _refused(status: int, why: str, request: Request) -> Response:
    log.warning("web: %s %s refused: %s", request.method, shown(request.url.path, 80), why)
    return PlainTextResponse(f"refused: {why}", status_code=status)


def routes(ctx: WebContext) -> list[BaseRoute]:
    audit = AuditLog(ctx.db)
    nodes = NodeStore(ctx.db)

    async def guarded(request: Request) -> tuple[Session, dict[str, str]] | Response:
        """The operator and form of an action POST, or why it is refused."""
        current = session(request)
        if current is None:
            return _refused(401, "sign in with an operator token first (/login)", request)
        if not same_origin(ctx, request):
            return _refused(403, "the form was not sent from this site", request)
        form = await _form(request)
        if isinstance(form, Response):
            return form
        if not hmac.compare_digest(form.get(CSRF_FIELD, ""), current.csrf):
            return _refused(403, "the form's CSRF token is missing or wrong; reload", request)
        if not allows(current.caller.role, NEEDED):
            return _refused(403, f"this needs the {NEEDED} role", request)
        return current, form

    async def login_page(request: Request, error: str = "", status: int = 200) -> Response:
        nonce = secrets.token_urlsafe(24)
        response = templates.TemplateResponse(
            request,
            "login.html",
            {
                "login_csrf": nonce,
                "error": error,
                "next": _local(request.query_params.get("next", "/")),
            },
            status_code=status,
        )
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=600,
            path="/login",
            httponly=True,
            samesite="strict",
            secure=_secure(ctx),
        )
        return response

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return await login_page(request)
        if ctx.secret is None:
            return _refused(403, "this web has no operator token secret", request)
        if not same_origin(ctx, request):
            return _refused(403, "the form was not sent from this site", request)
        form = await _form(request)
        if isinstance(form, Response):
            return form
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not hmac.compare_digest(form.get(CSRF_FIELD, ""), nonce):
            return _refused(403, "the sign-in form's CSRF token is missing or wrong", request)
        token = form.get("token", "").strip()
        try:
            caller = verify(ctx.secret, token)
        except TokenError as exc:
            return await login_page(request, str(exc), status=401)
        log.info("web: %s (%s) signed in", shown(caller.user, 80), caller.role)
        response = _back(ctx, form.get("next", "/"), f"signed in as {caller.user}", "ok")
        response.set_cookie(
            COOKIE,
            token,
            max_age=max(1, int(_expiry(token) - time.time())),
            path="/",
            httponly=True,
            samesite="strict",
            secure=_secure(ctx),
        )
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(request: Request) -> Response:
        checked = await guarded(request)
        if isinstance(checked, Response):
            return checked
        response = _back(ctx, "/", "signed out", "ok")
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    def operation(function: str) -> Any:
        async def act(request: Request) -> Response:
            checked = await guarded(request)
            if isinstance(checked, Response):
                return checked
            current, form = checked
            back = form.get("next", "/")
            pipeline, change = form.get("pipeline", "").strip(), form.get("change", "").strip()
            args: dict[str, object] = {"pipeline": pipeline}
            if function == "promote":
                args["changes"] = change.split()
            else:
                args["project"] = form.get("project", "").strip()
                args["change"] = change
            if not all(args.values()):
                return _back(
                    ctx, back, f"{function}: give the pipeline, project and change", "error"
                )
            if ctx.operate is None:
                return _back(ctx, back, f"{function}: no scheduler to ask here", "error")
            operate = ctx.operate
            try:
                result = await asyncio.to_thread(operate, function, args, current.token)
            except GatekeeperError as exc:
                return _back(ctx, back, f"{function} {change}: {exc}", "error")
            return _back(ctx, back, f"{function} {change}: {result}", "ok")

        return act

    def record(current: Session, action: str, target: str, outcome: Outcome, detail: str) -> None:
        try:
            audit.record(current.caller.user, current.caller.role, action, target, outcome, detail)
        except Exception as exc:
            log.error("web: could not write the audit log: %s", shown(exc, 500))

    async def hold(request: Request) -> Response:
        checked = await guarded(request)
        if isinstance(checked, Response):
            return checked
        current, form = checked
        back = form.get("next", "/nodes")
        ident, reason = form.get("node", "").strip(), form.get("reason", "").strip()
        hours_text, key_text = form.get("hours", "").strip(), form.get("ssh_key", "")
        target = json.dumps(
            {
                "node": ident,
                "reason": reason,
                "hours": hours_text,
                "ssh_key": bool(key_text.strip()),
            },
            sort_keys=True,
        )

        def act() -> str:
            if not ident:
                raise GatekeeperError("hold: which node?")
            if not reason or len(reason) > REASON_MAX or not reason.isprintable():
                raise GatekeeperError(
                    f"hold: a reason is 1 to {REASON_MAX} printable characters on one line"
                )
            try:
                hours = ctx.site.pool.hold_failed_hours if not hours_text else float(hours_text)
            except ValueError as exc:
                raise GatekeeperError("hold: hours must be a number (0: until released)") from exc
            if not 0 <= hours <= 24 * 365:
                raise GatekeeperError("hold: hours must be 0 (until released) to a year")
            key = public_key_line(key_text) if key_text.strip() else None
            held = hold_node(ctx.site, nodes, ident, hours * 3600 or None, reason, key)
            until = "until released" if held.hold_until is None else f"for {hours:g}h"
            login = f"; ssh {held.username}@{held.address} -p {held.port}" if key else ""
            return f"node {held.id} ({held.name}) held {until}{login}"

        try:
            done = await asyncio.to_thread(act)
        except GatekeeperError as exc:
            await asyncio.to_thread(record, current, "hold", target, "error", str(exc))
            return _back(ctx, back, str(exc), "error")
        await asyncio.to_thread(record, current, "hold", target, "ok", "")
        return _back(ctx, back, done, "ok")

    async def release(request: Request) -> Response:
        checked = await guarded(request)
        if isinstance(checked, Response):
            return checked
        current, form = checked
        back = form.get("next", "/nodes")
        ident = form.get("node", "").strip()
        target = json.dumps({"node": ident})
        try:
            node = await asyncio.to_thread(release_node, nodes, ident)
        except GatekeeperError as exc:
            await asyncio.to_thread(record, current, "release", target, "error", str(exc))
            return _back(ctx, back, f"release: {exc}", "error")
        await asyncio.to_thread(record, current, "release", target, "ok", "")
        return _back(ctx, back, f"node {node.id} ({node.name}) released: DELETE", "ok")

    post = ["POST"]
    return [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=post),
        Route("/action/enqueue", operation("enqueue"), methods=post),
        Route("/action/dequeue", operation("dequeue"), methods=post),
        Route("/action/promote", operation("promote"), methods=post),
        Route("/action/hold", hold, methods=post),
        Route("/action/release", release, methods=post),
    ]
