"""The scheduler thread never asks Gearman which jobs are registered: the
"status" request waits on the network, so only the dispatcher's thread sends it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import gear
import pytest

from gatekeeper.dispatch import protocol
from gatekeeper.dispatch.client import BuildDispatcher

pytestmark = pytest.mark.timeout(30)


def test_submit_leaves_the_status_request_to_the_dispatchers_thread() -> None:
    dispatcher = BuildDispatcher([], lambda event: None)
    asked_from: list[str] = []

    def status() -> dict[str, int]:
        asked_from.append(threading.current_thread().name)
        return {}

    dispatcher._status = status  # type: ignore[method-assign]
    try:
        spec = protocol.JobSpec(
            name="unit", run="true", node="", logs=[], timeout=60.0, projects=[]
        )
        dispatcher.submit("b" * 32, {}, spec)
        # Nothing known about the workers yet: the build waits for the
        # dispatcher's thread instead of the caller asking Gearman.
        assert dispatcher.waiting == ["b" * 32]
        assert threading.current_thread().name not in asked_from
    finally:
        dispatcher.shutdown()


def test_submits_and_stops_go_out_from_the_dispatchers_thread() -> None:
    """Even for a job Gearman is known to have workers for, the caller (the
    scheduler thread) hands the build over and returns: a Gearman server that
    is slow to answer SUBMIT_JOB must hold up the dispatcher, not the
    scheduler. A stop request goes the same way."""
    server = gear.Server(0)
    worker = gear.TextWorker("unit-worker")
    dispatcher: BuildDispatcher | None = None
    try:
        worker.addServer("127.0.0.1", server.port)
        worker.waitForServer()
        worker.registerFunction(protocol.build_function("unit"))
        dispatcher = BuildDispatcher([("127.0.0.1", server.port)], lambda event: None)
        dispatcher.wait_for_server(10)
        sent_from: list[str] = []
        stopped_from: list[str] = []
        send, send_stop = dispatcher._send, dispatcher._send_stop

        def spy_send(build: Any) -> None:
            sent_from.append(threading.current_thread().name)
            send(build)

        def spy_stop(uuid: str, worker_name: str) -> bool:
            stopped_from.append(threading.current_thread().name)
            return send_stop(uuid, worker_name)

        dispatcher._send = spy_send  # type: ignore[method-assign]
        dispatcher._send_stop = spy_stop  # type: ignore[method-assign]
        spec = protocol.JobSpec(
            name="unit", run="true", node="", logs=[], timeout=60.0, projects=[]
        )
        # The first build makes the dispatcher learn that "unit" has a worker;
        # the second is submitted while that is known.
        for sent, uuid in enumerate(("c" * 32, "d" * 32), start=1):
            dispatcher.submit(uuid, {}, spec)
            _wait_until(lambda n=sent: len(sent_from) >= n, f"build {sent} sent")
        # A build this dispatcher did not submit (one re-attached after a
        # restart) is stopped through the worker named in its record.
        dispatcher.cancel("e" * 32, worker="unit-worker")
        _wait_until(lambda: bool(stopped_from), "the stop sent")
        assert sent_from == ["dispatch", "dispatch"]
        assert stopped_from == ["dispatch"]
    finally:
        if dispatcher is not None:
            dispatcher.shutdown()
        worker.shutdown()
        server.shutdown()


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout:.0f}s for {what}"
        pause.wait(0.01)
