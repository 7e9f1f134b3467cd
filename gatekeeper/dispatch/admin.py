"""Operator requests to a running scheduler, carried by Gearman.

The scheduler process registers ``gatekeeper:enqueue``, ``gatekeeper:dequeue``,
``gatekeeper:promote`` and ``gatekeeper:status`` on the site's Gearman
servers; the ``gatekeeper`` commands of the same names submit a job there
and print the answer. Gearman already joins every part of a site, so
operators need no other port, from any host that reaches Gearman. Over TLS
(the default) the Gearman server lets only scheduler certificates answer
and only operator and scheduler certificates ask (``dispatch.tls.RoleAcl``).

Arguments and answers are JSON: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import gear

from gatekeeper.dispatch.certs import TlsFiles
from gatekeeper.dispatch.tls import gear_kwargs
from gatekeeper.errors import DispatchError, GatekeeperError

log = logging.getLogger(__name__)

__all__ = ["FUNCTIONS", "AdminWorker", "call"]

FUNCTIONS = ("enqueue", "dequeue", "promote", "status")
PREFIX = "gatekeeper:"

# Takes the request's JSON arguments; returns what json.dumps can write.
Handler = Callable[[dict[str, Any]], object]


class AdminWorker:
    """Answers operator requests. One thread of its own; ``start``/``stop``
    are called from the main thread. ``handlers`` map a function name (without
    the prefix) to a callable taking the request's arguments; ``tls`` is the
    scheduler's certificate (None: plain TCP)."""

    def __init__(
        self,
        name: str,
        servers: list[tuple[str, int]],
        handlers: dict[str, Handler],
        tls: TlsFiles | None = None,
    ) -> None:
        self.name = name
        self.tls = tls
        self.servers = list(servers)
        self.handlers = dict(handlers)
        self._stop = threading.Event()
        self._gear: gear.TextWorker | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        worker = gear.TextWorker(client_id=f"{self.name}-admin")
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
                self._answer(job)
            except Exception:
                log.exception("admin: answering %s failed", job.name)

    def _answer(self, job: gear.TextWorkerJob) -> None:
        function = job.name[len(PREFIX) :]
        handler = self.handlers.get(function)
        try:
            if handler is None:
                raise DispatchError(f"unknown request {job.name}")
            args = json.loads(job.arguments or "{}")
            if not isinstance(args, dict):
                raise DispatchError("arguments must be a JSON object")
            # A request nobody answered in time stays queued in Gearman; the
            # operator was told it failed, so it must not happen later.
            expires = args.pop("expires", None)
            if isinstance(expires, int | float) and time.time() > expires:
                raise DispatchError("the request expired before a scheduler took it")
            answer: dict[str, Any] = {"ok": True, "result": handler(args)}
            log.info("admin: %s %s: done", function, job.arguments)
        except (GatekeeperError, ValueError, TypeError) as exc:
            answer = {"ok": False, "error": str(exc)}
            log.warning("admin: %s %s: %s", function, job.arguments, exc)
        except Exception as exc:  # a bug: still answer, so the operator is not left waiting
            log.exception("admin: %s %s failed", function, job.arguments)
            answer = {"ok": False, "error": f"internal error: {exc!r}"}
        job.sendWorkComplete(json.dumps(answer))

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
    tls: TlsFiles | None = None,
) -> object:
    """Ask the site's scheduler; return its result. ``tls`` is the operator's
    certificate (None: plain TCP).

    :raises DispatchError: no Gearman server, or no scheduler answered in time.
    :raises GatekeeperError: the scheduler refused (its reason is the message).
    """
    client = gear.Client(client_id="gatekeeper-cli")
    try:
        for host, port in servers:
            client.addServer(host, port, **gear_kwargs(tls))
        try:
            client.waitForServer(min(timeout, 10.0))
        except gear.TimeoutError as exc:
            where = ", ".join(f"{h}:{p}" for h, p in servers)
            raise DispatchError(f"no Gearman server answers at {where}") from exc
        request = {**args, "expires": time.time() + timeout}
        job = gear.TextJob(PREFIX + function, json.dumps(request))
        client.submitJob(job, timeout=timeout)
        finished = threading.Event()
        waited = 0.0
        while not job.complete and waited < timeout:
            finished.wait(0.05)
            waited += 0.05
        if not job.complete:
            raise DispatchError(
                f"no scheduler answered {function} within {timeout:.0f}s "
                "(is a gatekeeper scheduler running against these Gearman servers?)"
            )
        if job.failure or not job.data:
            raise DispatchError(f"{function} failed in the scheduler")
        answer = json.loads(job.data[-1])
    finally:
        client.shutdown()
    if not answer.get("ok"):
        raise GatekeeperError(answer.get("error", "the scheduler refused"))
    return answer.get("result")
