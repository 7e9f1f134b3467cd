"""Operator requests to a running scheduler, carried by Gearman.

The scheduler process registers ``gatekeeper:enqueue``, ``gatekeeper:dequeue``,
``gatekeeper:promote``, ``gatekeeper:status`` and ``gatekeeper:audit`` on the
site's Gearman servers; the ``gatekeeper`` commands of the same names submit
a job there and print the answer. Gearman already joins every part of a
site, so operators need no other port. Over TLS (the default) the Gearman
server also lets only scheduler certificates answer and only operator and
scheduler certificates ask (``dispatch.tls.RoleAcl``).

Reaching Gearman is not enough to operate the queues: every request but
``status`` carries an operator token (:mod:`gatekeeper.dispatch.tokens`),
checked before anything is done, and every request, done or refused, is
written to the audit log (:class:`gatekeeper.db.audit.AuditLog`). Whatever a
request holds reaches log lines only through
:func:`~gatekeeper.model.outside.shown`.

Arguments and answers are JSON: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``. The arguments are the request's own plus
``token`` and ``expires`` (a Unix time after which the scheduler refuses it:
the operator was told it failed, so it must not happen later).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gear

from gatekeeper.db.audit import AuditLog, Outcome
from gatekeeper.dispatch import wire
from gatekeeper.dispatch.certs import TlsFiles
from gatekeeper.dispatch.tls import gear_kwargs
from gatekeeper.dispatch.tokens import Caller, allows, verify
from gatekeeper.errors import (
    DispatchError,
    GatekeeperError,
    OperationError,
    RequestError,
    TokenError,
)
from gatekeeper.model.outside import shown

log = logging.getLogger(__name__)

__all__ = ["FUNCTIONS", "MAX_REQUEST", "NEEDS", "AdminWorker", "Request", "call", "parse_request"]

PREFIX = "gatekeeper:"
#: The role each function needs. ``status`` needs none: it shows what the
#: Gerrit comments and the (read-only) web show anyway, and a site's
#: dashboards poll it; the audit log names people, so it is for admins.
NEEDS: dict[str, str | None] = {
    "enqueue": "operator",
    "dequeue": "operator",
    "promote": "operator",
    "status": None,
    "audit": "admin",
}
FUNCTIONS = tuple(NEEDS)
#: The arguments each function takes (all required) and their JSON types.
ARGS: dict[str, dict[str, type]] = {
    "enqueue": {"pipeline": str, "project": str, "change": str},
    "dequeue": {"pipeline": str, "project": str, "change": str},
    "promote": {"pipeline": str, "changes": list},
    "status": {},
    "audit": {"limit": int},
}
#: Bytes of arguments a request may have: a real one is a few hundred.
MAX_REQUEST = 64 * 1024
# Entries the audit function returns at most.
AUDIT_MAX = 500
# Characters of a request's arguments kept in a log line.
SHOWN = 300
# Seconds an operator waits past a request's expiry for the scheduler's
# answer (which it sends by the expiry) to arrive.
ANSWER_GRACE = 2.0

# Takes the request's JSON arguments and the Unix time after which it must
# not be acted on (None: no limit); returns what json.dumps can write.
Handler = Callable[[dict[str, Any], float | None], object]


# What a JWT looks like (base64url header starting '{"', two dots): never
# written to a log line or the audit log, even inside a malformed request.
_TOKEN = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*")


def redacted(text: str) -> str:
    """``text`` with anything that looks like a token replaced by ``<token>``."""
    return _TOKEN.sub("<token>", text)


@dataclass(frozen=True)
class Request:
    """An operator request as it arrived, taken apart (not yet authorized)."""

    function: str
    args: dict[str, Any]
    token: str | None
    expires: float | None

    def describe(self) -> str:
        """The arguments as one JSON text, for the audit log."""
        return json.dumps(self.args, sort_keys=True)


def parse_request(function: str, raw: bytes) -> Request:
    """Take an operator request apart; nothing here trusts its content.

    :raises RequestError: too large, not a JSON object, a token or expiry
        of the wrong type, or an unknown function (the arguments' shape is
        :func:`check_args`, once the token is checked).
    """
    if len(raw) > MAX_REQUEST:
        raise RequestError(f"the request is {len(raw)} bytes; at most {MAX_REQUEST} are accepted")
    try:
        args = json.loads(raw.decode("utf-8") or "{}")
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: a few kilobytes of "[" nest deeper than json can read.
        raise RequestError(f"the arguments are not JSON: {shown(exc)}") from exc
    if not isinstance(args, dict):
        raise RequestError("the arguments must be a JSON object")
    token = args.pop("token", None)
    if token is not None and not isinstance(token, str):
        raise RequestError("'token' must be a string")
    expires = args.pop("expires", None)
    if expires is not None and (
        isinstance(expires, bool)
        or not isinstance(expires, int | float)
        or not math.isfinite(expires)
    ):
        raise RequestError("'expires' must be a Unix time")
    if function not in NEEDS:
        raise RequestError(f"unknown request '{shown(function)}'")
    return Request(function, args, token, expires)


def check_args(request: Request) -> None:
    """:raises RequestError: the arguments are not the ones ``request.function`` takes."""
    wanted = ARGS[request.function]
    given = request.args
    extra = sorted(set(given) - set(wanted))
    missing = sorted(set(wanted) - set(given))
    if extra or missing:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"unknown {', '.join(shown(k, 40) for k in extra[:5])}"] if extra else []
        raise RequestError(f"{request.function}: {'; '.join(parts)}")
    for key, kind in wanted.items():
        value = given[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise RequestError(f"{request.function}: {key!r} must be a {kind.__name__}")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise RequestError(f"{request.function}: {key!r} must be a list of strings")
    if request.function == "audit" and not 0 < given["limit"] <= AUDIT_MAX:
        raise RequestError(f"audit: 'limit' must be 1 to {AUDIT_MAX}")


class AdminWorker:
    """Answers operator requests. One thread of its own; ``start``/``stop``
    are called from the main thread. ``handlers`` map a function name (without
    the prefix) to a callable taking the request's arguments; ``secret``
    signs the operator tokens; ``audit`` records every request; ``tls`` is
    the scheduler's certificate (None: plain TCP)."""

    def __init__(
        self,
        name: str,
        servers: list[tuple[str, int]],
        handlers: dict[str, Handler],
        secret: bytes,
        audit: AuditLog,
        tls: TlsFiles | None = None,
    ) -> None:
        self.name = name
        self.tls = tls
        self.servers = list(servers)
        self.handlers = dict(handlers)
        self.secret = secret
        self.audit = audit
        self._stop = threading.Event()
        self._gear: gear.TextWorker | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        worker = wire.TextWorker(client_id=f"{self.name}-admin")
        for host, port in self.servers:
            worker.addServer(host, port, **gear_kwargs(self.tls))
        for function in self.handlers:
            worker.registerFunction(PREFIX + function)
        self._gear = worker
        self._thread = threading.Thread(target=self._run, name="admin", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._gear is not None
        while not self._stop.is_set():
            try:
                job = self._gear.getJob()
            except gear.InterruptedError:
                continue
            except Exception:
                log.exception("admin: waiting for a request failed")
                self._stop.wait(1.0)
                continue
            try:
                job.sendWorkComplete(json.dumps(self.handle(job.name, job.binary_arguments)))
            except Exception as exc:
                log.error("admin: answering %s failed: %s", shown(job.name), shown(exc))

    def handle(self, name: str, raw: bytes) -> dict[str, Any]:
        """The answer to one request: parsed, its token checked, run, audited.

        Never raises: whatever arrives gets an answer, and the handler runs
        only for a request whose token allows it.
        """
        function = name[len(PREFIX) :] if name.startswith(PREFIX) else name
        caller: Caller | None = None
        anonymous = "anonymous"
        target = redacted(raw[: SHOWN * 2].decode("utf-8", "replace"))
        outcome: Outcome = "ok"
        try:
            request = parse_request(function, raw)
            target = redacted(request.describe())
            if request.token is not None:
                # Until it is verified, nothing it claims is believed.
                anonymous = "unverified token"
            caller = self._identify(request)
            self._authorize(request, caller)
            check_args(request)
            if request.expires is not None and time.time() > request.expires:
                raise RequestError("the request expired before a scheduler took it")
            handler = self.handlers.get(function)
            if handler is None:
                raise RequestError(f"this scheduler does not serve '{shown(function)}'")
        except OperationError as exc:
            answer: dict[str, Any] = {"ok": False, "error": str(exc)}
            outcome = "refused"
        else:
            try:
                answer = {"ok": True, "result": handler(request.args, request.expires)}
            except (GatekeeperError, ValueError, TypeError) as exc:
                answer = {"ok": False, "error": str(exc)}
                outcome = "error"
            except Exception as exc:  # a bug: still answer, so the operator is not left waiting
                log.error(
                    "admin: %s failed: %s", shown(function), shown(traceback.format_exc(), 4000)
                )
                answer = {"ok": False, "error": f"internal error: {exc!r}"}
                outcome = "error"
        self._record(
            function, caller or Caller(anonymous, ""), target, outcome, answer.get("error", "")
        )
        return answer

    def _identify(self, request: Request) -> Caller | None:
        """Who sent ``request``, by its token; None without one.

        :raises TokenError: a token this site did not sign, or that expired.
        """
        return None if request.token is None else verify(self.secret, request.token)

    def _authorize(self, request: Request, caller: Caller | None) -> None:
        """:raises TokenError: ``caller`` may not do what ``request`` asks."""
        needed = NEEDS[request.function]
        if needed is None:
            return
        if caller is None:
            raise TokenError(
                f"{request.function} needs an operator token "
                "(gatekeeper admin token --user NAME, then --token or GATEKEEPER_TOKEN)"
            )
        if not allows(caller.role, needed):
            raise TokenError(
                f"{request.function} needs the {needed} role; the token has {caller.role}"
            )

    def _record(
        self, function: str, caller: Caller, target: str, outcome: Outcome, error: str
    ) -> None:
        """Log the request on one line and write it to the audit log."""
        actor, role = caller.user, caller.role
        level = logging.INFO if outcome == "ok" else logging.WARNING
        log.log(
            level,
            "admin: %s by %s%s: %s %s%s",
            shown(function, 40),
            shown(actor, 80),
            f" ({role})" if role else "",
            outcome,
            shown(target, SHOWN),
            f": {shown(error)}" if error else "",
        )
        try:
            self.audit.record(actor, role, function, target, outcome, error)
        except Exception as exc:
            # Its message may quote the row (outside text): shown, never raw.
            log.error("admin: could not write the audit log: %s", shown(exc, 500))

    def stop(self) -> None:
        self._stop.set()
        if self._gear is not None:
            self._gear.stopWaitingForJobs()
            self._gear.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)


def call(
    servers: list[tuple[str, int]],
    function: str,
    args: Mapping[str, object],
    timeout: float = 60.0,
    token: str | None = None,
    tls: TlsFiles | None = None,
) -> object:
    """Ask the site's scheduler; return its result. ``tls`` is the operator's
    certificate (None: plain TCP).

    The request goes only to a Gearman server where some scheduler has
    registered ``function``: Gearman would keep it queued for ever otherwise
    (Debian's gearmand even after this client is gone).

    :raises OperationError: ``function`` is not an operator function, or the
        request is larger than a scheduler accepts (nothing was sent).
    :raises DispatchError: no Gearman server, no scheduler serving
        ``function``, or no answer in time.
    :raises GatekeeperError: the scheduler refused (its reason is the message).
    """
    if function not in NEEDS:
        raise OperationError(
            f"unknown operator function '{shown(function)}' (known: {', '.join(FUNCTIONS)})"
        )
    expires = time.time() + timeout
    request: dict[str, object] = {**args, "expires": expires}
    if token is not None:
        request["token"] = token
    body = json.dumps(request)
    if len(body.encode()) > MAX_REQUEST:
        raise OperationError(
            f"the request is larger than the {MAX_REQUEST} bytes a scheduler accepts"
        )
    client = _connected(servers, min(timeout, 10.0), tls)
    try:
        serving = _serving(client, PREFIX + function)
        if not serving:
            where = ", ".join(f"{h}:{p}" for h, p in servers)
            raise DispatchError(
                f"no scheduler serves {function} at {where} "
                "(is a gatekeeper scheduler running against these Gearman servers?)"
            )
        if len(serving) < len(client.active_connections):
            # gear submits to any connected server: keep only those that serve it.
            client.shutdown()
            client = _connected(serving, min(timeout, 10.0), tls)
        job = gear.TextJob(PREFIX + function, body)
        client.submitJob(job, timeout=timeout)
        finished = threading.Event()
        # A scheduler that took the request answers by its expiry (with an
        # error if it could not act in time): wait that long and a little
        # more for the answer to travel, so the operator hears why.
        deadline = time.monotonic() + (expires - time.time()) + ANSWER_GRACE
        while not job.complete and time.monotonic() < deadline:
            finished.wait(0.05)
        if not job.complete:
            # Its expiry makes a scheduler that takes it later refuse it.
            raise DispatchError(f"no scheduler answered {function} within {timeout:.0f}s")
        if job.failure or not job.data:
            raise DispatchError(f"{function} failed in the scheduler")
        answer = json.loads(job.data[-1])
    finally:
        client.shutdown()
    if not isinstance(answer, dict) or not answer.get("ok"):
        error = answer.get("error") if isinstance(answer, dict) else None
        raise GatekeeperError(str(error or "the scheduler refused"))
    return answer.get("result")


def _connected(servers: list[tuple[str, int]], timeout: float, tls: TlsFiles | None) -> gear.Client:
    """A client connected to at least one of ``servers`` (with the operator's
    certificate ``tls``; None: plain TCP).

    :raises DispatchError: none answered within ``timeout``.
    """
    client = wire.Client(client_id="gatekeeper-cli")
    for host, port in servers:
        client.addServer(host, port, **gear_kwargs(tls))
    try:
        client.waitForServer(timeout)
    except gear.TimeoutError as exc:
        client.shutdown()
        where = ", ".join(f"{h}:{p}" for h, p in servers)
        raise DispatchError(f"no Gearman server answers at {where}") from exc
    return client


def _serving(client: gear.Client, name: str) -> list[tuple[str, int]]:
    """The connected servers where some worker has registered ``name``
    (by their ``status``; a server that does not answer it does not count)."""
    serving = []
    for conn in list(client.active_connections):
        request = gear.StatusAdminRequest()
        try:
            conn.sendAdminRequest(request, timeout=5.0)
        except (gear.GearmanError, gear.TimeoutError, OSError) as exc:
            log.warning("could not ask %s:%d for its status: %s", conn.host, conn.port, exc)
            continue
        for line in (request.response or b"").decode("utf-8", "replace").splitlines():
            fields = line.split("\t")
            if len(fields) == 4 and fields[0] == name and fields[3].strip().isdigit():
                if int(fields[3]) > 0:
                    serving.append((conn.host, conn.port))
    return serving
