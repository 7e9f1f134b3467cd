"""The Gearman side of a worker: take ``build:<job>`` jobs, answer ``stop:<name>``.

Each build slot has its own Gearman connection (a ``gear.TextWorker``), so a
slot asks for a job only when it is free and the server hands builds to
whichever worker host has a free slot. ``stop:<name>`` has a connection of
its own so a stop is answered even when every slot is busy.

gear reconnects to a server that went away and registers the functions
again. A build whose connection was lost cannot report any more (the
dispatcher has already submitted it again), so it is aborted.

What runs where is also written to the builds table (worker, node, start
time; result, end time, log URL) and a heartbeat thread refreshes the
``heartbeat`` of every running build, so a restarted scheduler can tell a
build still running from a dead one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import gear

from gatekeeper.db.builds import RanOn
from gatekeeper.dispatch import wire
from gatekeeper.dispatch.certs import TlsFiles
from gatekeeper.dispatch.protocol import build_function, decode_build, encode, stop_function
from gatekeeper.dispatch.signing import ResultSigner
from gatekeeper.dispatch.tls import gear_kwargs
from gatekeeper.errors import DispatchError
from gatekeeper.model.build import BuildResult
from gatekeeper.model.results import CompleteData, StartData
from gatekeeper.worker.archive import safe_log_dir
from gatekeeper.worker.console import ConsoleServer
from gatekeeper.worker.executor import CONSOLE, BuildExecutor

if TYPE_CHECKING:
    from gatekeeper.db.builds import BuildStore

log = logging.getLogger(__name__)

_Data = TypeVar("_Data", StartData, CompleteData)

# How long stop() lets aborted builds report before closing connections.
STOP_GRACE = 30.0


class _GearWorker(wire.TextWorker):
    """Tells the Worker when a connection drops (gear's connection thread)."""

    def __init__(self, client_id: str, owner: Worker) -> None:
        super().__init__(client_id=client_id)
        self.owner = owner

    def _lostConnection(self, conn: gear.Connection) -> None:  # noqa: N802 - gear's name
        super()._lostConnection(conn)
        self.owner._on_lost_connection(conn)


def _handle_text(job: gear.TextWorkerJob) -> str:
    handle = job.handle
    return handle.decode("utf-8", "replace") if isinstance(handle, bytes) else str(handle)


@dataclass
class _Running:
    """One build running in a slot."""

    stop: threading.Event
    job: gear.TextWorkerJob
    #: Set once the build started and was recorded (the run's identity).
    started_at: float | None = None
    #: Why it is being stopped by the worker itself, if it is.
    lost: str = ""
    #: Its Gearman connection dropped: nothing may be sent for it any more.
    #: (gear reconnects the same connection object to the restarted server,
    #: where the job's handle may name another job by now.)
    disconnected: bool = False


class Worker:
    """A worker process's Gearman face. Owns one thread per build slot and
    one for stop requests; ``start()``/``stop()`` are called from the main thread.
    """

    def __init__(
        self,
        name: str,
        servers: list[tuple[str, int]],
        job_names: list[str],
        executor: BuildExecutor,
        concurrency: int,
        builds: BuildStore | None = None,
        heartbeat: float = 5.0,
        signer: ResultSigner | None = None,
        tls: TlsFiles | None = None,
        consoles: ConsoleServer | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.builds = builds
        #: Signs each start and result with this worker's key (None: an
        #: insecure site, whose scheduler believes any packet).
        self.signer = signer
        #: Serves the running builds' consoles to the web (None: not served);
        #: started and stopped with the worker.
        self.consoles = consoles
        self.heartbeat_interval = heartbeat
        # The worker's certificate, on every connection (None: plain TCP).
        self.tls = tls
        self.name = name
        self.servers = list(servers)
        self.job_names = list(job_names)
        self.executor = executor
        self.concurrency = concurrency
        self._stop = threading.Event()
        # Set when the worker stops taking builds (before running ones end).
        self._draining = threading.Event()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        # The builds running now, by build uuid.
        self._builds: dict[str, _Running] = {}
        self._gear: list[gear.TextWorker] = []
        self._stop_gear: gear.TextWorker | None = None
        self._threads: list[threading.Thread] = []

    @property
    def running_builds(self) -> list[str]:
        with self._lock:
            return list(self._builds)

    def _connect(self, client_id: str, functions: list[str]) -> gear.TextWorker:
        worker = _GearWorker(client_id, self)
        for host, port in self.servers:
            worker.addServer(host, port, **gear_kwargs(self.tls))
        for function in functions:
            worker.registerFunction(function)
        return worker

    def start(self) -> None:
        """Connect to every server and start taking jobs."""
        functions = [build_function(job) for job in self.job_names]
        if self.consoles is not None:
            self.consoles.start()
        for slot in range(self.concurrency):
            gw = self._connect(f"{self.name}-{slot}", functions)
            self._gear.append(gw)
            self._threads.append(
                threading.Thread(
                    target=self._build_loop,
                    args=(gw,),
                    name=f"worker-{self.name}-{slot}",
                    daemon=True,
                )
            )
        self._stop_gear = self._connect(f"{self.name}-stop", [stop_function(self.name)])
        self._threads.append(
            threading.Thread(
                target=self._stop_loop,
                args=(self._stop_gear,),
                name=f"worker-{self.name}-stop",
                daemon=True,
            )
        )
        self._threads.append(
            threading.Thread(
                target=self._heartbeat_loop, name=f"heartbeat-{self.name}", daemon=True
            )
        )
        for thread in self._threads:
            thread.start()
        log.info("worker %s started: %d slots for %s", self.name, self.concurrency, self.job_names)

    def set_jobs(self, job_names: list[str]) -> None:
        """Register ``build:<job>`` for exactly these jobs from now on (a new layout)."""
        # Only what changed: gearmand takes running jobs back from a worker
        # that resets its abilities (setFunctions) or unregisters their function.
        with self._lock:
            added = [j for j in job_names if j not in self.job_names]
            removed = [j for j in self.job_names if j not in job_names]
            self.job_names = list(job_names)
            for gw in self._gear:
                for job in removed:
                    gw.unRegisterFunction(build_function(job))
                for job in added:
                    # What setFunctions does per function: registerFunction
                    # would also reset the connection states outside gear's
                    # job lock, and a slot could stop being offered jobs.
                    name = build_function(job).encode()
                    gw.functions[name] = gear.FunctionRecord(name)
                    gw._sendCanDo(name)
        log.info("worker %s now takes %s", self.name, self.job_names)

    def wait_for_server(self, timeout: float) -> None:
        """Block until every connection reaches a server.

        :raises DispatchError: one did not connect within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        for gw in [*self._gear, *([self._stop_gear] if self._stop_gear else [])]:
            try:
                gw.waitForServer(max(0.0, deadline - time.monotonic()))
            except gear.TimeoutError as exc:
                raise DispatchError(
                    f"worker {self.name}: no Gearman server within {timeout}s"
                ) from exc

    def stop(self, grace: float = 0.0) -> None:
        """Stop taking builds; let running ones go on for up to ``grace``
        seconds, then abort them; let them report; disconnect.

        A build aborted here is recorded ABORTED in the builds table and
        ends in Gearman with WORK_FAIL, so that a scheduler still running
        gives it to another worker.
        """
        # The functions stay registered until the connections close: gearmand
        # takes a running job back from a worker that sends CANT_DO for it.
        # A slot not waiting for a job is never given one.
        self._draining.set()
        for gw in self._gear:
            try:
                gw.stopWaitingForJobs()
            except Exception:
                log.debug("interrupting a build slot failed", exc_info=True)
        with self._lock:
            deadline = time.monotonic() + grace
            if self._busy:
                log.info(
                    "worker %s stopping: %d builds may run %.0fs more", self.name, self._busy, grace
                )
            while self._busy and time.monotonic() < deadline:
                self._idle.wait(deadline - time.monotonic())
        self._stop.set()
        with self._lock:
            for running in self._builds.values():
                running.lost = running.lost or "the worker is stopping"
                running.stop.set()
            deadline = time.monotonic() + STOP_GRACE
            while self._busy and time.monotonic() < deadline:
                self._idle.wait(deadline - time.monotonic())
        connections = [*self._gear, *([self._stop_gear] if self._stop_gear else [])]
        for gw in connections:
            # While gear's poll thread still runs, so that a GRAB_JOB answer can
            # still arrive: gear.shutdown() alone waits 5 s on a connection
            # left waiting for one, then drops it without closing its socket.
            try:
                gw.stopWaitingForJobs()
            except Exception:
                log.exception("interrupting a Gearman connection failed")
        for gw in connections:
            try:
                gw.shutdown()
            except Exception:
                log.exception("shutting down a Gearman connection failed")
            for conn in list(gw.inactive_connections):
                conn.disconnect()
        for thread in self._threads:
            thread.join(timeout=STOP_GRACE)
        if self.consoles is not None:
            self.consoles.stop()
        log.info("worker %s stopped", self.name)

    # -- threads -------------------------------------------------------------

    def _build_loop(self, gw: gear.TextWorker) -> None:
        while not self._draining.is_set():
            try:
                job = gw.getJob()
            except gear.InterruptedError:
                continue
            except Exception:
                log.exception("getting a job failed")
                self._stop.wait(1.0)
                continue
            with self._lock:
                self._busy += 1
            try:
                self._handle_build(job)
            except Exception:
                log.exception("handling %s failed", job.name)
            finally:
                with self._lock:
                    self._busy -= 1
                    self._idle.notify_all()

    def _handle_build(self, job: gear.TextWorkerJob) -> None:
        """Run the build and send exactly one WORK_COMPLETE, WORK_FAIL or WORK_EXCEPTION."""
        uuid = ""
        attempt = 1
        running = _Running(threading.Event(), job)
        try:
            params, spec = decode_build(job.arguments)
            # Signed as the attempt the arguments name: the one the
            # dispatcher sent and checks the signature against.
            attempt = spec.attempt
            uuid = params.get("ZUUL_UUID", "")
            self._serve_console(uuid, params)
            with self._lock:
                self._builds[uuid] = running
                if self._stop.is_set():
                    running.lost = "the worker is stopping"
                    running.stop.set()
            log.info("build %s of %s started (attempt %d)", uuid, spec.name, spec.attempt)

            def on_start(data: StartData) -> None:
                # The database first: whoever learns of the start from
                # Gearman may look there.
                if self._record_start(data):
                    running.started_at = data.started_at
                job.sendWorkData(encode(self._signed(data, attempt)))

            result: CompleteData = self.executor.run(
                params, spec, self.name, running.stop, on_start
            )
        except Exception as exc:
            log.exception("build %s (%s) broke the worker", uuid, job.name)
            self._send(job, "exception", f"{type(exc).__name__}: {exc}")
            return
        finally:
            with self._lock:
                if uuid and self._builds.get(uuid) is running:
                    del self._builds[uuid]
            if uuid and self.consoles is not None:
                self.consoles.ended(uuid)
        if running.started_at is not None:
            self._record_end(running.started_at, result)
        if running.disconnected:
            log.info("build %s ended %s after its gearman connection was lost", uuid, result.result)
            return
        if running.lost and result.result == BuildResult.ABORTED:
            # Not a verdict on the change: the dispatcher runs it again.
            log.info("build %s aborted: %s", uuid, running.lost)
            self._send(job, "fail", "")
            return
        log.info("build %s finished: %s", uuid, result.result)
        self._send(job, "complete", encode(self._signed(result, attempt)))

    def _serve_console(self, uuid: str, params: dict[str, str]) -> None:
        """Let the web read the build's console.txt where the executor writes it."""
        if self.consoles is None or not uuid:
            return
        try:
            log_dir = safe_log_dir(self.executor.log_root, params.get("LOG_PATH", ""))
        except ValueError:
            return  # the executor refuses the build and says why
        self.consoles.running(uuid, log_dir / CONSOLE)

    def _signed(self, data: _Data, attempt: int) -> _Data:
        return self.signer.sign(data, attempt) if self.signer is not None else data

    def _send(self, job: gear.TextWorkerJob, kind: str, text: str) -> None:
        try:
            if kind == "complete":
                job.sendWorkComplete(text)
            elif kind == "fail":
                job.sendWorkFail()
            else:
                job.sendWorkException(text)
        except Exception as exc:
            # The connection is gone: the dispatcher saw it go and has
            # submitted the build again; the builds table has the result.
            log.warning("could not report %s to gearman: %s", job.unique, exc)

    def _record_start(self, data: StartData) -> bool:
        if self.builds is None:
            return False
        try:
            return self.builds.worker_started(
                data.uuid,
                self.name,
                data.node,
                data.provider,
                data.started_at,
                data.url,
                console_address=self.consoles.address if self.consoles is not None else "",
                where=RanOn.of(data),
            )
        except Exception:
            log.exception("build %s: could not record its start", data.uuid)
            return False

    def _record_end(self, started_at: float, result: CompleteData) -> None:
        assert self.builds is not None
        try:
            self.builds.worker_completed(
                result.uuid,
                self.name,
                started_at,
                result.result,
                result.ended_at or time.time(),
                result.url,
            )
        except Exception:
            log.exception("build %s: could not record its result", result.uuid)

    def _on_lost_connection(self, conn: gear.Connection) -> None:
        """gear's thread: abort the builds that came over ``conn``."""
        with self._lock:
            for uuid, running in self._builds.items():
                if running.job.connection is conn and not running.stop.is_set():
                    log.warning("build %s: its gearman connection was lost; aborting it", uuid)
                    running.lost = "its gearman connection was lost"
                    running.disconnected = True
                    running.stop.set()

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_interval):
            if self.builds is None:
                continue
            with self._lock:
                uuids = [u for u, r in self._builds.items() if r.started_at is not None]
            try:
                self.builds.heartbeat(self.name, uuids, time.time())
            except Exception:
                log.exception("worker %s: heartbeat failed", self.name)

    def _stop_loop(self, gw: gear.TextWorker) -> None:
        while not self._stop.is_set():
            try:
                job = gw.getJob()
            except gear.InterruptedError:
                continue
            except Exception:
                log.exception("getting a stop job failed")
                self._stop.wait(1.0)
                continue
            try:
                self._handle_stop(job)
            except Exception:
                log.exception("handling %s failed", job.name)

    def _handle_stop(self, job: gear.TextWorkerJob) -> None:
        try:
            request = json.loads(job.arguments)
            uuid = str(request["uuid"])
            # Only this Gearman job's run, when named: the build may have
            # been submitted again (and handed back here) since.
            handle = request.get("handle")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            job.sendWorkException(f"malformed stop request: {exc}")
            return
        with self._lock:
            running = self._builds.get(uuid)
            if running is not None and handle is not None and _handle_text(running.job) != handle:
                running = None
            event = running.stop if running is not None else None
            if event is not None:
                event.set()
        log.info("stop request for build %s: %s", uuid, "aborting" if event else "not running here")
        job.sendWorkComplete(json.dumps({"uuid": uuid, "stopped": event is not None}))
