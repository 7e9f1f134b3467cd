"""The Gearman side of a worker: take ``build:<job>`` jobs, answer ``stop:<name>``.

Each build slot has its own Gearman connection (a ``gear.TextWorker``), so a
slot asks for a job only when it is free and the server hands builds to
whichever worker host has a free slot. ``stop:<name>`` has a connection of
its own so a stop is answered even when every slot is busy.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import gear

from gatekeeper.dispatch.protocol import (
    CompleteData,
    StartData,
    build_function,
    decode_build,
    encode,
    stop_function,
)
from gatekeeper.errors import DispatchError
from gatekeeper.worker.executor import BuildExecutor

log = logging.getLogger(__name__)

# How long stop() lets aborted builds report before closing connections.
STOP_GRACE = 30.0


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
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.name = name
        self.servers = list(servers)
        self.job_names = list(job_names)
        self.executor = executor
        self.concurrency = concurrency
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        # Stop events of the builds running now, by build uuid.
        self._builds: dict[str, threading.Event] = {}
        self._gear: list[gear.TextWorker] = []
        self._stop_gear: gear.TextWorker | None = None
        self._threads: list[threading.Thread] = []

    @property
    def running_builds(self) -> list[str]:
        with self._lock:
            return list(self._builds)

    def _connect(self, client_id: str, functions: list[str]) -> gear.TextWorker:
        worker = gear.TextWorker(client_id=client_id)
        for host, port in self.servers:
            worker.addServer(host, port)
        for function in functions:
            worker.registerFunction(function)
        return worker

    def start(self) -> None:
        """Connect to every server and start taking jobs."""
        functions = [build_function(job) for job in self.job_names]
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
        for thread in self._threads:
            thread.start()
        log.info("worker %s started: %d slots for %s", self.name, self.concurrency, self.job_names)

    def set_jobs(self, job_names: list[str]) -> None:
        """Register ``build:<job>`` for exactly these jobs from now on (a new layout)."""
        # TextWorker encodes names in registerFunction, but setFunctions takes bytes.
        functions = [gear.FunctionRecord(build_function(job).encode()) for job in job_names]
        with self._lock:
            self.job_names = list(job_names)
            for gw in self._gear:
                gw.setFunctions(functions)
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

    def stop(self) -> None:
        """Stop taking jobs, abort running builds, let them report, disconnect."""
        self._stop.set()
        for gw in self._gear:
            for job in self.job_names:
                try:
                    gw.unRegisterFunction(build_function(job))
                except Exception:
                    log.debug("unregistering %s failed", job, exc_info=True)
        with self._lock:
            for event in self._builds.values():
                event.set()
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
        log.info("worker %s stopped", self.name)

    # -- threads -------------------------------------------------------------

    def _build_loop(self, gw: gear.TextWorker) -> None:
        while not self._stop.is_set():
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
        """Run the build and send exactly one WORK_COMPLETE or WORK_EXCEPTION."""
        uuid = ""
        stop = threading.Event()
        try:
            params, spec = decode_build(job.arguments)
            uuid = params.get("ZUUL_UUID", "")
            with self._lock:
                self._builds[uuid] = stop
                if self._stop.is_set():
                    stop.set()
            log.info("build %s of %s started", uuid, spec.name)

            def on_start(data: StartData) -> None:
                job.sendWorkData(encode(data))

            result: CompleteData = self.executor.run(params, spec, self.name, stop, on_start)
        except Exception as exc:
            log.exception("build %s (%s) broke the worker", uuid, job.name)
            job.sendWorkException(f"{type(exc).__name__}: {exc}")
            return
        finally:
            with self._lock:
                if uuid and self._builds.get(uuid) is stop:
                    del self._builds[uuid]
        log.info("build %s finished: %s", uuid, result.result)
        job.sendWorkComplete(encode(result))

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
            uuid = str(json.loads(job.arguments)["uuid"])
        except (ValueError, KeyError, TypeError) as exc:
            job.sendWorkException(f"malformed stop request: {exc}")
            return
        with self._lock:
            event = self._builds.get(uuid)
            if event is not None:
                event.set()
        log.info("stop request for build %s: %s", uuid, "aborting" if event else "not running here")
        job.sendWorkComplete(json.dumps({"uuid": uuid, "stopped": event is not None}))
