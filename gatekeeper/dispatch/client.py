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
  is (gear reconnects by itself), for at most ``resubmit_wait`` seconds;
- a packet not from the worker the build was handed to (given a
  ``verifier``): a Gearman server passes WORK_DATA and WORK_COMPLETE on from
  any connection that names the job's handle, so each is checked in the
  dispatcher's thread (see :meth:`BuildDispatcher._check_start`). A refused
  start is ignored; a refused result ends the Gearman job (the server has
  forgotten it), so the build is submitted again, without counting an
  attempt, and the worker that had started it (if one had) is told to stop.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import gear

from gatekeeper.dispatch import protocol, wire
from gatekeeper.dispatch.certs import Identity, TlsFiles
from gatekeeper.dispatch.signing import Kind, ResultVerifier, claimed_identity
from gatekeeper.dispatch.tls import gear_kwargs
from gatekeeper.errors import DispatchError, ResultRefusedError
from gatekeeper.model.build import BuildResult
from gatekeeper.model.outside import shown
from gatekeeper.model.results import (
    BuildCompleted,
    BuildStarted,
    CompleteData,
    ResultEvent,
    StartData,
)

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
# Results that let a change pass: never believed from a worker that was not
# seen to start the build (a build that never got a node cannot have passed).
PASSING = frozenset({BuildResult.SUCCESS, BuildResult.SKIPPED})
# Refused results after which a build ends ERROR: a worker whose certificate
# another CA issued would otherwise have its every result refused and the
# build run again for ever. It costs the change its run, never a false pass.
REFUSED_LIMIT = 5


class _Client(wire.Client):
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
    #: The attempt named in the current Gearman job's arguments (what the
    #: worker signs; ``attempt`` moves on when gearmand hands the job on).
    sent_attempt: int = 1
    #: The worker whose signed start was believed, for the current job.
    identity: Identity | None = None
    #: Results refused so far (they use up no attempt; see REFUSED_LIMIT).
    refused: int = 0


class BuildDispatcher:
    """Owned by the scheduler thread; gear's callbacks run in gear's thread;
    resubmissions, registration checks and database writes run in a thread
    of its own (gear's thread must never wait for a server's answer).

    ``sink`` receives :class:`BuildStarted` and :class:`BuildCompleted`
    events; the scheduler applies them in its own thread. ``builds``, when
    given, records each build's ``attempt``. ``verifier``, when given (a site
    with certificates), decides whose packets are believed; without it every
    packet is, as on an ``insecure`` site. ``tls`` is the scheduler's
    certificate (None: plain TCP).
    """

    def __init__(
        self,
        servers: list[tuple[str, int]],
        sink: Callable[[ResultEvent], None],
        builds: BuildStore | None = None,
        registration_grace: float = 5.0,
        resubmit_wait: float = 300.0,
        startup_grace: float = RETRY_REGISTRATION_GRACE,
        verifier: ResultVerifier | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.sink = sink
        self.verifier = verifier
        self._refused = 0
        self.builds = builds
        self.registration_grace = registration_grace
        self.resubmit_wait = resubmit_wait
        self.startup_grace = startup_grace
        #: monotonic time since when some Gearman server has been connected.
        self._connected_since: float | None = None
        self._client = _Client(self)
        # The scheduler's certificate; the status requests share these connections.
        for host, port in servers:
            self._client.addServer(host, port, **gear_kwargs(tls))
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

    def handle(self, uuid: str) -> bytes | None:
        """The Gearman handle of the build's current job (None: not in Gearman)."""
        with self._lock:
            build = self._builds.get(uuid)
            job = build.job if build is not None else None
        return job.handle if job is not None else None

    @property
    def refused_results(self) -> int:
        """Packets about builds refused since start (each is in the audit log)."""
        with self._lock:
            return self._refused

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
            build.sent_attempt, build.identity = spec.attempt, None
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

    def _send_stop(self, uuid: str, worker: str, handle: bytes | None = None) -> bool:
        """Ask ``worker`` to abort ``uuid``; only the run of the Gearman job
        ``handle`` when given, so a stop meant for a refused run cannot abort
        the same build submitted again and handed to the same worker."""
        request: dict[str, str] = {"uuid": uuid}
        if handle:
            request["handle"] = handle.decode("utf-8", "replace")
        stop = gear.TextJob(protocol.stop_function(worker), json.dumps(request))
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
            log.error("build %s: %s", build.uuid, shown(exc))
            return
        if self.verifier is None:
            self._started(build, data)
            return
        # Checked in the dispatcher's thread: it reads and writes the builds
        # table, which gear's thread must not wait on. The text was decoded
        # here: job.data grows with the next packet.
        self._actions.put(lambda: self._check_start(job, data))
        self._wake.set()

    def _started(self, build: _Build, data: StartData) -> None:
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
            log.error("build %s: %s", build.uuid, shown(exc))
            data = CompleteData(uuid=build.uuid, result="LOST", error=str(exc))
        if self.verifier is None:
            self._completed(build, data)
            return
        self._actions.put(lambda: self._check_complete(job, data))
        self._wake.set()

    def _completed(self, build: _Build, data: CompleteData) -> None:
        with self._lock:
            if self._builds.get(build.uuid) is not build:
                return
            del self._builds[build.uuid]
        self.sink(BuildCompleted(uuid=build.uuid, data=data))

    # -- whose packets are believed (the dispatcher's thread) ----------------

    def _check_start(self, job: gear.Job, data: StartData) -> None:
        """Believe a start signed by a worker of this site for this build and
        attempt, which the builds table shows that worker claimed (the worker
        writes its row before it sends the start); record who it is."""
        assert self.verifier is not None
        found = self._find(job)
        if found is None:
            return
        build = found[0]
        try:
            identity = self.verifier.verify(data, build.uuid, build.sent_attempt)
            if self.builds is not None and not self._row_claimed(build.uuid, identity, data):
                raise ResultRefusedError(
                    f"the builds table does not show {shown(data.worker, 64)} "
                    f"starting it on {shown(data.node, 64)}"
                )
        except ResultRefusedError as exc:
            self._refuse(build, job, data, Kind.START, str(exc))
            return
        with self._lock:
            build.identity = identity
        log.info("build %s started by %s", build.uuid, identity)
        self._started(build, data)

    def _row_claimed(self, uuid: str, identity: Identity, data: StartData) -> bool:
        assert self.builds is not None
        try:
            return self.builds.worker_verified(
                uuid, str(identity), data.worker, data.node, data.started_at
            )
        except Exception as exc:
            log.exception("build %s: could not check the builds table", uuid)
            raise ResultRefusedError(f"the builds table could not be checked: {exc}") from exc

    def _check_complete(self, job: gear.Job, data: CompleteData) -> None:
        """Believe a result signed by the worker whose start was believed, and
        that the builds table agrees ran it; or, from a worker of this site,
        a result that cannot pass a change, for a build nobody started (no
        node: NODE_FAILURE, ABORTED, ...)."""
        assert self.verifier is not None
        found = self._find(job)
        if found is None:
            return
        build = found[0]
        try:
            identity = self.verifier.verify(data, build.uuid, build.sent_attempt)
            with self._lock:
                handed_to = build.identity
            if handed_to is None:
                if BuildResult.read(data.result) in PASSING:
                    raise ResultRefusedError(
                        f"{data.result} for a build no worker was seen to start"
                    )
            elif identity != handed_to:
                raise ResultRefusedError(f"the build was handed to {handed_to}")
            elif self.builds is not None:
                self._row_agrees(build.uuid, identity, data)
        except ResultRefusedError as exc:
            self._refuse(build, job, data, Kind.COMPLETE, str(exc))
            return
        self._completed(build, data)

    def _row_agrees(self, uuid: str, identity: Identity, data: CompleteData) -> None:
        """:raises ResultRefusedError: the row names another run of the build."""
        assert self.builds is not None
        try:
            record = self.builds.get(uuid)
        except Exception as exc:
            log.exception("build %s: could not read the builds table", uuid)
            raise ResultRefusedError(f"the builds table could not be read: {exc}") from exc
        if record is None:
            raise ResultRefusedError("the build has no row in the builds table")
        if record.worker_identity != str(identity):
            raise ResultRefusedError(
                f"the builds table says {shown(record.worker_identity or 'nobody', 64)} runs it"
            )
        if record.worker != data.worker or record.start_time != data.started_at:
            raise ResultRefusedError("the builds table records another run of the build")

    def _refuse(
        self, build: _Build, job: gear.Job, data: StartData | CompleteData, kind: Kind, why: str
    ) -> None:
        """Log, count and audit a packet not believed. A refused result has
        ended the Gearman job: the build is submitted again (the attempt it
        was on is not used up: the worker did not fail), and the worker that
        had started it, whose answer can no longer arrive, is told to stop.
        """
        claimed = claimed_identity(data)
        actor = shown(claimed, 200) if claimed is not None else "unknown"
        role = str(claimed.role) if claimed is not None else ""
        why = shown(why, 500)
        with self._lock:
            self._refused += 1
        log.warning("build %s: refused its %s from %s: %s", build.uuid, kind, actor, why)
        if self.builds is not None:
            try:
                self.builds.refused(build.uuid, actor, role, f"{kind}: {why}", time.time())
            except Exception:
                log.exception("build %s: could not audit a refused %s", build.uuid, kind)
        if kind is Kind.START:
            # The job in Gearman is still whoever's it is: its result decides.
            return
        with self._lock:
            if build.job is not job or self._builds.get(build.uuid) is not build:
                return
            rightful = build.worker if build.identity is not None else ""
            refused_handle = job.handle
            build.job, build.identity = None, None
            build.retry, build.record_attempt = True, True
            build.refused += 1
            given_up = build.refused >= REFUSED_LIMIT
        if rightful:
            self._send_stop(build.uuid, rightful, refused_handle)
        if given_up:
            self._finish(
                build, BuildResult.ERROR, f"{build.refused} results refused; the last: {why}"
            )
            return
        log.warning(
            "build %s: submitting it again (attempt %d of %d; the refused result does not count)",
            build.uuid,
            build.attempt,
            build.attempts,
        )
        self._park(build)

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
