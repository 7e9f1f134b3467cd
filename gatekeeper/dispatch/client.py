"""Submits builds to Gearman and turns WORK_* packets into scheduler events."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import gear

from gatekeeper.dispatch import protocol
from gatekeeper.errors import DispatchError
from gatekeeper.model.results import BuildCompleted, BuildStarted, ResultEvent

log = logging.getLogger(__name__)

PRECEDENCE = {
    "high": gear.PRECEDENCE_HIGH,
    "normal": gear.PRECEDENCE_NORMAL,
    "low": gear.PRECEDENCE_LOW,
}


class _Client(gear.Client):
    """gear calls these from its poll thread; they only post events."""

    def __init__(self, owner: BuildDispatcher) -> None:
        super().__init__(client_id="gatekeeper-scheduler")
        self.owner = owner

    def handleWorkData(self, packet: Any) -> Any:  # noqa: N802 - gear's name
        job = super().handleWorkData(packet)
        self.owner._on_data(job)
        return job

    def handleWorkComplete(self, packet: Any) -> Any:  # noqa: N802
        job = super().handleWorkComplete(packet)
        self.owner._on_complete(job)
        return job

    def handleWorkFail(self, packet: Any) -> Any:  # noqa: N802
        job = super().handleWorkFail(packet)
        self.owner._on_lost(job, "worker reported WORK_FAIL")
        return job

    def handleWorkException(self, packet: Any) -> Any:  # noqa: N802
        job = super().handleWorkException(packet)
        self.owner._on_lost(job, f"worker raised: {job.exception!r}")
        return job

    def handleDisconnect(self, job: Any) -> Any:  # noqa: N802
        self.owner._on_lost(job, "gearman server connection lost")
        return job


class BuildDispatcher:
    """Owned by the scheduler thread; gear's callbacks run in gear's thread.

    ``sink`` receives :class:`BuildStarted` and :class:`BuildCompleted`
    events; the scheduler applies them in its own thread.
    """

    def __init__(self, servers: list[tuple[str, int]], sink: Callable[[ResultEvent], None]) -> None:
        self.sink = sink
        self._client = _Client(self)
        for host, port in servers:
            self._client.addServer(host, port)
        self._jobs: dict[str, gear.TextJob] = {}
        self._workers: dict[str, str] = {}
        self._lock = threading.Lock()

    def wait_for_server(self, timeout: float = 30.0) -> None:
        """:raises DispatchError: no Gearman server answered in time."""
        try:
            self._client.waitForServer(timeout)
        except gear.TimeoutError as exc:
            raise DispatchError(f"no gearman server answered within {timeout}s") from exc

    def submit(
        self, uuid: str, params: dict[str, str], spec: protocol.JobSpec, precedence: str = "normal"
    ) -> None:
        """:raises DispatchError: no server took the job."""
        job = gear.TextJob(
            protocol.build_function(spec.name), protocol.encode_build(params, spec), unique=uuid
        )
        with self._lock:
            self._jobs[uuid] = job
        try:
            self._client.submitJob(
                job, precedence=PRECEDENCE.get(precedence, gear.PRECEDENCE_NORMAL)
            )
        except gear.GearmanError as exc:
            with self._lock:
                self._jobs.pop(uuid, None)
            raise DispatchError(f"gearman refused {spec.name}: {exc}") from exc

    def cancel(self, uuid: str) -> bool:
        """Ask the worker running ``uuid`` to abort it; False if it has not started."""
        with self._lock:
            worker = self._workers.get(uuid)
        if not worker:
            return False
        stop = gear.TextJob(protocol.stop_function(worker), f'{{"uuid": "{uuid}"}}')
        try:
            self._client.submitJob(stop, precedence=gear.PRECEDENCE_HIGH)
        except gear.GearmanError as exc:
            log.warning("could not send stop for %s to %s: %s", uuid, worker, exc)
            return False
        return True

    def shutdown(self) -> None:
        self._client.shutdown()

    # -- gear's thread ------------------------------------------------------
    def _uuid(self, job: Any) -> str:
        unique = job.unique
        return unique.decode() if isinstance(unique, bytes) else str(unique or "")

    def _on_data(self, job: Any) -> None:
        uuid = self._uuid(job)
        if uuid not in self._jobs:
            return
        try:
            data = protocol.decode_start(job.data[-1])
        except (DispatchError, IndexError) as exc:
            log.error("build %s: %s", uuid, exc)
            return
        with self._lock:
            self._workers[uuid] = data.worker
        self.sink(BuildStarted(uuid=uuid, data=data))

    def _on_complete(self, job: Any) -> None:
        uuid = self._uuid(job)
        with self._lock:
            known = self._jobs.pop(uuid, None)
            self._workers.pop(uuid, None)
        if known is None:
            return
        try:
            data = protocol.decode_complete(job.data[-1])
        except (DispatchError, IndexError) as exc:
            log.error("build %s: %s", uuid, exc)
            data = protocol.CompleteData(uuid=uuid, result="LOST", error=str(exc))
        self.sink(BuildCompleted(uuid=uuid, data=data))

    def _on_lost(self, job: Any, why: str) -> None:
        uuid = self._uuid(job)
        with self._lock:
            known = self._jobs.pop(uuid, None)
            self._workers.pop(uuid, None)
        if known is None:
            return
        log.error("build %s lost: %s", uuid, why)
        self.sink(
            BuildCompleted(
                uuid=uuid, data=protocol.CompleteData(uuid=uuid, result="LOST", error=why)
            )
        )
