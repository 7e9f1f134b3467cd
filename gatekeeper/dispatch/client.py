"""Submits builds to Gearman and turns WORK_* packets into scheduler events.

The scheduler sees one :class:`BuildStarted` per attempt and exactly one
:class:`BuildCompleted` per build. In between, this module absorbs what goes
wrong on the way:

- the worker dies (WORK_FAIL, WORK_EXCEPTION; or gearmand hands the job to
  another worker, which shows as a second WORK_DATA) or the Gearman server
  holding the job goes away: the same build (same uuid, same parameters) is
  submitted again, up to the job's ``attempts``, then it is RETRY_LIMIT;
- no worker has registered ``build:<job>`` on any server: the build waits
  ``registration_grace`` seconds (longer for a build being run again, and
  in the first ``startup_grace`` seconds of a connection to Gearman, while
  workers may still be connecting) and is then NOT_REGISTERED, instead of
  waiting in Gearman forever;
- no server is up: submissions wait, in the dispatcher's thread, until one
  is (gear reconnects by itself), for at most ``resubmit_wait`` seconds.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import gear

from gatekeeper.dispatch import protocol
from gatekeeper.errors import DispatchError
from gatekeeper.model.build import BuildResult
from gatekeeper.model.results import BuildCompleted, BuildStarted, CompleteData, ResultEvent

if TYPE_CHECKING:
    from gatekeeper.db.builds import BuildStore

log = logging.getLogger(__name__)

PRECEDENCE = {
    "high": gear.PRECEDENCE_HIGH,
    "normal": gear.PRECEDENCE_NORMAL,
    "low": gear.PRECEDENCE_LOW,
}

# How long the answer to gear's "status" admin command is trusted.
REGISTRY_TTL = 2.0
# Seconds to wait for a server's answer to SUBMIT_JOB or "status".
SUBMIT_TIMEOUT = 10.0
# How often the dispatcher's thread looks at builds waiting to be submitted.
POLL = 0.2
# A build being run again waits at least this long for a worker to register:
# the workers were there a moment ago and may be reconnecting (gear tries
# every 2 s) to a server that restarted.
RETRY_REGISTRATION_GRACE = 30.0


class _Client(gear.Client):
    """gear calls these from its poll thread; they only post events.

    Each returns the job the packet is about: the very ``gear.TextJob`` that
    was submitted (gear keeps it by handle on the connection).
    """

    def __init__(self, owner: BuildDispatcher) -> None:
        super().__init__(client_id="gatekeeper-scheduler")
        self.owner = owner

    def handleWorkData(self, packet: gear.Packet) -> gear.Job:  # noqa: N802 - gear's name
        job = super().handleWorkData(packet)
        self.owner._on_data(job)
        return job

    def handleWorkComplete(self, packet: gear.Packet) -> gear.Job:  # noqa: N802
        job = super().handleWorkComplete(packet)
        self.owner._on_complete(job)
        return job

    def handleWorkFail(self, packet: gear.Packet) -> gear.Job:  # noqa: N802
        job = super().handleWorkFail(packet)
        self.owner._on_failed(job, "worker reported WORK_FAIL", started_only=False)
        return job

    def handleWorkException(self, packet: gear.Packet) -> gear.Job:  # noqa: N802
        job = super().handleWorkException(packet)
        self.owner._on_failed(job, f"worker raised: {job.exception!r}", started_only=False)
        return job

    def handleDisconnect(self, job: gear.Job) -> gear.Job:  # noqa: N802
        # A job still queued on the server that went away was not tried: it
        # is submitted again without using up an attempt.
        self.owner._on_failed(job, "gearman server connection lost", started_only=True)
        return job


@dataclass
class _Build:
    """One build from submit() to its single BuildCompleted."""

    uuid: str
    params: dict[str, str]
    spec: protocol.JobSpec
    precedence: str
    attempts: int
    attempt: int = 1
    job: gear.TextJob | None = None
    #: WORK_DATA came for the current Gearman job.
    started: bool = False
    worker: str = ""
    #: monotonic time it began waiting for a server or a registered worker.
    waiting_since: float | None = None
    #: monotonic time a connected server was first seen without its worker.
    unregistered_since: float | None = None
    #: It is being run again (its first submission reached a worker or a server).
    retry: bool = False
    #: The builds table must be told about a new attempt before it is submitted.
    record_attempt: bool = False


class BuildDispatcher:
    """Owned by the scheduler thread; gear's callbacks run in gear's thread;
    resubmissions, registration checks and database writes run in a thread
    of its own (gear's thread must never wait for a server's answer).

    ``sink`` receives :class:`BuildStarted` and :class:`BuildCompleted`
    events; the scheduler applies them in its own thread. ``builds``, when
    given, records each build's ``attempt``.
    """

    def __init__(
        self,
        servers: list[tuple[str, int]],
        sink: Callable[[ResultEvent], None],
        builds: BuildStore | None = None,
        registration_grace: float = 5.0,
        resubmit_wait: float = 300.0,
        startup_grace: float = RETRY_REGISTRATION_GRACE,
    ) -> None:
        self.sink = sink
        self.builds = builds
        self.registration_grace = registration_grace
        self.resubmit_wait = resubmit_wait
        self.startup_grace = startup_grace
        #: monotonic time since when some Gearman server has been connected.
        self._connected_since: float | None = None
        self._client = _Client(self)
        for host, port in servers:
            self._client.addServer(host, port)
        self._lock = threading.Lock()
        self._builds: dict[str, _Build] = {}
        self._pending: list[str] = []
        self._held = False
        self._actions: queue.Queue[Callable[[], object]] = queue.Queue()
        # Per thread: the builds held back by ``deferred`` (None outside it).
        self._local = threading.local()
        self._registry: dict[str, int] = {}
        self._registry_at = -REGISTRY_TTL
        self._registry_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatch", daemon=True)
        self._thread.start()

    def wait_for_server(self, timeout: float = 30.0) -> None:
        """:raises DispatchError: no Gearman server answered in time."""
        try:
            self._client.waitForServer(timeout)
        except gear.TimeoutError as exc:
            raise DispatchError(f"no gearman server answered within {timeout}s") from exc

    def submit(
        self,
        uuid: str,
        params: dict[str, str],
        spec: protocol.JobSpec,
        precedence: str = "normal",
        attempts: int = 3,
    ) -> None:
        """Hand a build to Gearman, or keep it until a worker registers its job.

        :raises DispatchError: no server took the job.
        """
        build = _Build(uuid, dict(params), spec, precedence, max(1, attempts))
        with self._lock:
            self._builds[uuid] = build
        deferred: list[_Build] | None = getattr(self._local, "deferred", None)
        if deferred is not None:
            deferred.append(build)
            return
        self._submit_now(build, park_on_error=False)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold this thread's submits until the block ends, then send them.

        The gate records a walk's builds in one transaction: submitting only
        after it commits means a crash in between leaves records of builds
        never sent (a restart runs them again), not builds running that no
        record knows, and a worker never writes progress to a row not yet
        committed. A deferred submit that Gearman refuses waits for a
        server, as a resubmission does. A build cancelled inside the block
        is not sent. When the block raises, its builds are still sent: the
        scheduler holds them as started, and a build nobody runs would
        never end.
        """
        if getattr(self._local, "deferred", None) is not None:
            yield
            return
        self._local.deferred = []
        try:
            yield
        finally:
            builds, self._local.deferred = self._local.deferred, None
            for build in builds:
                with self._lock:
                    current = self._builds.get(build.uuid) is build
                if current:
                    self._submit_now(build, park_on_error=True)

    def _submit_now(self, build: _Build, park_on_error: bool) -> None:
        """:raises DispatchError: no server took the job (unless ``park_on_error``)."""
        with self._lock:
            held = self._held
        # Only what is already known: asking Gearman ("status") waits on the
        # network, which the scheduler thread must not; the dispatcher's
        # thread asks for a build parked here, and submits it.
        if held or not self._known_registered(protocol.build_function(build.spec.name)):
            self._park(build)
            return
        try:
            self._send(build)
        except DispatchError as exc:
            if park_on_error:
                log.warning("build %s: %s; trying again", build.uuid, exc)
                self._park(build)
                return
            with self._lock:
                self._builds.pop(build.uuid, None)
            raise

    def cancel(self, uuid: str, worker: str = "") -> bool:
        """Ask the worker running ``uuid`` to abort it; False if it has not started.

        A build waiting to be submitted again is dropped (nothing reports it).
        ``worker`` names the worker of a build this dispatcher did not submit
        (one a restarted scheduler re-attached to through the database).
        """
        with self._lock:
            build = self._builds.get(uuid)
        if build is None:
            return self._send_stop(uuid, worker) if worker else False
        with self._lock:
            if build.job is None:
                self._builds.pop(uuid, None)
                return False
            worker = build.worker if build.started else ""
        if not worker:
            return False
        return self._send_stop(uuid, worker)

    def hold(self) -> None:
        """Submit nothing more (the daemon is stopping); builds submitted from
        now on stay with the dispatcher, and are forgotten by :meth:`shutdown`."""
        with self._lock:
            self._held = True

    @property
    def waiting(self) -> list[str]:
        """Builds not in Gearman now: waiting for a server, a worker, or a retry."""
        with self._lock:
            return [uuid for uuid, b in self._builds.items() if b.job is None]

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=SUBMIT_TIMEOUT + 5)
        self._client.shutdown()

    # -- submitting (scheduler's or dispatcher's thread) ----------------------

    def _send(self, build: _Build) -> None:
        """:raises DispatchError: no server took the job."""
        spec = replace(build.spec, attempt=build.attempt)
        job = gear.TextJob(
            protocol.build_function(spec.name),
            protocol.encode_build(build.params, spec),
            unique=build.uuid,
        )
        with self._lock:
            build.job, build.started, build.worker = job, False, ""
        try:
            self._client.submitJob(
                job,
                precedence=PRECEDENCE.get(build.precedence, gear.PRECEDENCE_NORMAL),
                timeout=SUBMIT_TIMEOUT,
            )
        except (gear.GearmanError, gear.NoConnectedServersError) as exc:
            with self._lock:
                if build.job is job:
                    build.job = None
            raise DispatchError(f"gearman refused {spec.name}: {exc}") from exc

    def _park(self, build: _Build) -> None:
        """Keep ``build`` for the dispatcher's thread to submit."""
        with self._lock:
            build.job, build.started = None, False
            if build.waiting_since is None:
                build.waiting_since = time.monotonic()
            if build.uuid not in self._pending:
                self._pending.append(build.uuid)
        self._wake.set()

    def _send_stop(self, uuid: str, worker: str) -> bool:
        stop = gear.TextJob(protocol.stop_function(worker), f'{{"uuid": "{uuid}"}}')
        try:
            self._client.submitJob(stop, precedence=gear.PRECEDENCE_HIGH, timeout=SUBMIT_TIMEOUT)
        except (gear.GearmanError, gear.NoConnectedServersError) as exc:
            log.warning("could not send stop for %s to %s: %s", uuid, worker, exc)
            return False
        return True

    def _known_workers(self, function: str) -> int | None:
        """Workers for ``function`` by the last answer, None if it is stale;
        never asks Gearman (any thread)."""
        with self._registry_lock:
            if time.monotonic() - self._registry_at > REGISTRY_TTL:
                return None
            return self._registry.get(function, 0)

    def _known_registered(self, function: str) -> bool:
        """Whether the last answer, if still fresh, says some worker can run ``function``."""
        return bool(self._known_workers(function))

    def _registered(self, function: str, refresh: bool) -> bool:
        """Whether some worker on some connected server can run ``function``.

        Asks the servers when the last answer is stale (the dispatcher's
        thread only: it waits up to ``SUBMIT_TIMEOUT`` per server). When the
        servers cannot be asked, the answer is yes: a build is better left
        waiting in Gearman than failed for nothing.
        """
        known = self._known_workers(function)
        if known is not None and not (refresh and known == 0):
            return known > 0
        try:
            registry = self._status()
        except (gear.GearmanError, gear.TimeoutError, OSError) as exc:
            log.warning("could not ask gearman which jobs are registered: %s", exc)
            return True
        with self._registry_lock:
            # Not held while asking: a reader never waits on the network.
            self._registry, self._registry_at = registry, time.monotonic()
        log.debug("workers per function: %s", registry)
        return registry.get(function, 0) > 0

    def _status(self) -> dict[str, int]:
        """Workers per function, summed over the connected servers."""
        workers: dict[str, int] = {}
        for conn in list(self._client.active_connections):
            request = gear.StatusAdminRequest()
            conn.sendAdminRequest(request, timeout=SUBMIT_TIMEOUT)
            for function, count in protocol.parse_status(request.response or b"").items():
                workers[function] = workers.get(function, 0) + count
        return workers

    # -- the dispatcher's thread --------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._run_once()
            except Exception:
                log.exception("dispatcher: retrying builds failed")
            self._wake.wait(POLL)
            self._wake.clear()

    def _run_once(self) -> None:
        if not self._client.active_connections:
            self._connected_since = None
        elif self._connected_since is None:
            self._connected_since = time.monotonic()
        while True:
            try:
                action = self._actions.get_nowait()
            except queue.Empty:
                break
            try:
                action()
            except Exception:
                log.exception("dispatcher: an action failed")
        with self._lock:
            if self._held:
                return
            pending = [self._builds[u] for u in self._pending if u in self._builds]
            self._pending = []
        for build in pending:
            if self._stop.is_set():
                self._park(build)
                continue
            self._try_submit(build)

    def _try_submit(self, build: _Build) -> None:
        assert build.waiting_since is not None
        waited = time.monotonic() - build.waiting_since
        function = protocol.build_function(build.spec.name)
        if not self._client.active_connections:
            self._connected_since = None
            build.unregistered_since = None
            if waited > self.resubmit_wait:
                self._finish(build, BuildResult.LOST, "no gearman server to submit to")
            else:
                self._park(build)
            return
        if not self._registered(function, refresh=True):
            now = time.monotonic()
            if build.unregistered_since is None:
                build.unregistered_since = now
            grace = self.registration_grace
            if build.retry:
                grace = max(grace, RETRY_REGISTRATION_GRACE)
            connected = self._connected_since if self._connected_since is not None else now
            if now - connected < self.startup_grace:
                grace = max(grace, self.startup_grace)
            if now - build.unregistered_since > grace:
                log.warning("build %s: no worker registered %s", build.uuid, function)
                self._finish(build, BuildResult.NOT_REGISTERED, f"no worker registered {function}")
            else:
                self._park(build)
            return
        if build.record_attempt:
            self._record_attempt(build.uuid, build.attempt, clear=True)
            build.record_attempt = False
        try:
            self._send(build)
        except DispatchError as exc:
            log.warning("build %s: %s; trying again", build.uuid, exc)
            if waited > self.resubmit_wait:
                self._finish(build, BuildResult.LOST, str(exc))
            else:
                self._park(build)
            return
        build.waiting_since = build.unregistered_since = None
        log.info("build %s submitted (attempt %d of %d)", build.uuid, build.attempt, build.attempts)

    def _record_attempt(self, uuid: str, attempt: int, clear: bool) -> None:
        if self.builds is None:
            return
        try:
            self.builds.retried(uuid, attempt, clear)
        except Exception:
            log.exception("build %s: could not record attempt %d", uuid, attempt)

    def _finish(self, build: _Build, result: BuildResult, why: str) -> None:
        with self._lock:
            if self._builds.get(build.uuid) is not build:
                return
            del self._builds[build.uuid]
        log.error("build %s: %s after %d attempts: %s", build.uuid, result, build.attempt, why)
        data = CompleteData(uuid=build.uuid, result=result.value, worker=build.worker, error=why)
        self.sink(BuildCompleted(uuid=build.uuid, data=data))

    # -- gear's thread ------------------------------------------------------

    def _find(self, job: gear.Job) -> tuple[_Build, gear.TextJob] | None:
        """The build whose current Gearman job is ``job``, and ``job`` as the
        TextJob it was submitted as (its unique is the build's uuid)."""
        if not isinstance(job, gear.TextJob):
            return None  # not submitted by this dispatcher, which sends only TextJobs
        with self._lock:
            build = self._builds.get(job.unique or "")
        if build is None or build.job is not job:
            return None  # finished, or a packet for an attempt given up on
        return build, job

    def _on_data(self, job: gear.Job) -> None:
        found = self._find(job)
        if found is None:
            return
        build, job = found
        try:
            data = protocol.decode_start(job.data[-1])
        except (DispatchError, IndexError) as exc:
            log.error("build %s: %s", build.uuid, exc)
            return
        with self._lock:
            requeued = build.started
            if requeued:
                # gearmand gave the job to another worker after the first died.
                build.attempt += 1
            build.started, build.worker = True, data.worker
        if requeued:
            if build.attempt > build.attempts:
                build.attempt = build.attempts
                uuid, worker = build.uuid, data.worker
                self._actions.put(lambda: self._send_stop(uuid, worker))
                self._wake.set()
                self._finish(build, BuildResult.RETRY_LIMIT, "the worker died on every attempt")
                return
            uuid, attempt = build.uuid, build.attempt
            self._actions.put(lambda: self._record_attempt(uuid, attempt, clear=False))
            self._wake.set()
            log.warning("build %s: restarted by gearman, attempt %d", build.uuid, attempt)
        data.attempt = build.attempt
        self.sink(BuildStarted(uuid=build.uuid, data=data))

    def _on_complete(self, job: gear.Job) -> None:
        found = self._find(job)
        if found is None:
            return
        build, job = found
        try:
            data = protocol.decode_complete(job.data[-1])
        except (DispatchError, IndexError) as exc:
            log.error("build %s: %s", build.uuid, exc)
            data = CompleteData(uuid=build.uuid, result="LOST", error=str(exc))
        with self._lock:
            if self._builds.get(build.uuid) is not build:
                return
            del self._builds[build.uuid]
        self.sink(BuildCompleted(uuid=build.uuid, data=data))

    def _on_failed(self, job: gear.Job, why: str, started_only: bool) -> None:
        found = self._find(job)
        if found is None:
            return
        build = found[0]
        with self._lock:
            tried = build.started or not started_only
            last = tried and build.attempt >= build.attempts
            if not last:
                if tried:
                    build.attempt += 1
                    build.record_attempt = True
                build.job, build.retry = None, True
        if last:
            self._finish(build, BuildResult.RETRY_LIMIT, why)
            return
        log.warning(
            "build %s lost (%s): submitting attempt %d of %d",
            build.uuid,
            why,
            build.attempt,
            build.attempts,
        )
        self._park(build)
