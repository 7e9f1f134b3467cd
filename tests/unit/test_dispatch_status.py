"""The scheduler thread never asks Gearman which jobs are registered: the
"status" request waits on the network, so only the dispatcher's thread sends it."""

from __future__ import annotations

import threading

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
