"""The scheduler thread: the only code that changes queue state.

Other threads only ``put`` events. Each pass drains management events
first, then build results (they may finish items), then triggers; then it
processes every pipeline until nothing changes.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from gatekeeper.config.layout import Layout
from gatekeeper.config.layout_schema import PipelineConfig
from gatekeeper.db.builds import BuildStore, RanOn
from gatekeeper.dispatch.client import BuildDispatcher
from gatekeeper.errors import GatekeeperError, OperationError
from gatekeeper.gerrit.ledger import EventLedger
from gatekeeper.gerrit.source import GerritSource
from gatekeeper.model.build import Build, BuildResult
from gatekeeper.model.events import TriggerEvent
from gatekeeper.model.metrics import NO_METRICS, Metrics
from gatekeeper.model.outside import shown
from gatekeeper.model.results import BuildCompleted, BuildStarted, CompleteData, ResultEvent
from gatekeeper.scheduler.context import SchedulerContext
from gatekeeper.scheduler.dependent import DependentPipelineManager
from gatekeeper.scheduler.mail import MailQueue
from gatekeeper.scheduler.manager import PipelineManager
from gatekeeper.scheduler.merger import MergeQueue
from gatekeeper.scheduler.reporter import Reporter, ReportQueue
from gatekeeper.scheduler.restore import HEARTBEAT_STALE, RestoreSummary, restore_queues
from gatekeeper.scheduler.routing import Router

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often re-attached builds are looked up in the database (seconds).
ATTACHED_POLL = 2.0


class Scheduler:
    """Owns every pipeline's queue. Runs in its own thread (``start``)."""

    def __init__(
        self,
        layout: Layout,
        source: GerritSource,
        dispatcher: BuildDispatcher,
        builds: BuildStore,
        reporter: Reporter,
        zuul_url: str,
        log_url: str,
        local_workers: frozenset[str] = frozenset(),
        merger: MergeQueue | None = None,
        metrics: Metrics = NO_METRICS,
        flaky_note: Callable[[str], str] | None = None,
        mail: MailQueue | None = None,
    ) -> None:
        self.context = SchedulerContext(
            layout, source, dispatcher, builds, reporter, zuul_url, log_url
        )
        self.context.merger = merger
        self.context.mail = mail
        self.context.metrics = metrics
        self.context.flaky_note = flaky_note
        self.context.post = self.put_management
        self.context.reports = ReportQueue(reporter, self.put_management)
        self.context.reports.metrics = metrics
        self.context.manager_named = self._manager_named
        self._set_managers([make_manager(p, self.context) for p in layout.pipelines])
        #: When the layout in use was loaded (epoch seconds): at start, then
        #: at every reconfigure.
        self.last_reconfigured = time.time()
        self._triggers: queue.Queue[TriggerEvent] = queue.Queue()
        self._results: queue.Queue[ResultEvent] = queue.Queue()
        self._management: queue.Queue[Callable[[], None]] = queue.Queue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = threading.Lock()
        # Workers running in this process: a build recorded as theirs from
        # before a restart is not running any more.
        self.local_workers = local_workers
        # Builds re-attached after a restart: their results are read from the
        # database (the Gearman client that submitted them is gone).
        self._attached: dict[str, Build] = {}
        self._attached_polled = 0.0
        self.restored: RestoreSummary | None = None
        #: Set by the app: the Gerrit event ledger, so an event seen on the
        #: stream and again in a catch-up is acted on once.
        self.ledger: EventLedger | None = None

    # -- called from any thread ------------------------------------------
    def put_trigger(self, event: TriggerEvent) -> None:
        self._triggers.put(event)
        self._wake.set()

    def put_result(self, event: ResultEvent) -> None:
        self._results.put(event)
        self._wake.set()

    def put_management(self, action: Callable[[], None]) -> None:
        self._management.put(action)
        self._wake.set()

    def call(self, action: Callable[[], T], timeout: float = 60.0) -> T:
        """Run ``action`` in the scheduler thread; return its result or raise its error.

        :raises OperationError: the scheduler did not get to it within ``timeout``.
        """
        done = threading.Event()
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append((True, action()))
            except BaseException as exc:  # handed back to the caller's thread
                outcome.append((False, exc))
            finally:
                done.set()

        self.put_management(run)
        if not done.wait(timeout):
            raise OperationError(f"the scheduler did not answer within {timeout:.0f}s")
        ok, value = outcome[0]
        if not ok:
            raise value
        return cast(T, value)

    def reconfigure(self, layout: Layout) -> threading.Event:
        """Switch to ``layout`` in the scheduler thread; the event is set when done.

        Queued items stay queued, in order, in the pipelines of the same name;
        their jobs are chosen again under the new layout, and builds of jobs
        they no longer run are cancelled. Items of a pipeline the new layout
        lacks are dequeued (their builds cancelled).
        """
        done = threading.Event()

        def switch() -> None:
            try:
                self._reconfigure(layout)
            finally:
                done.set()

        self.put_management(switch)
        return done

    def start(self) -> None:
        # Before any event: the queues as they were when the last run stopped.
        self.put_management(self._restore)
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.context.reports.stop()
        if self.context.mail is not None:
            self.context.mail.stop()
        close = getattr(self.context.reporter, "close", None)
        if close is not None:
            close()

    def is_settled(self) -> bool:
        """Nothing queued, nothing being processed, no report out, and every
        pipeline empty."""
        with self._busy:
            # Reports first: an outcome is posted before its report stops
            # counting, so it is then seen in the management queue.
            return (
                self.context.reports.idle()
                and self._triggers.empty()
                and self._results.empty()
                and self._management.empty()
                and all(not m.items for m in self.managers)
            )

    def queue_lengths(self) -> dict[str, int]:
        """Events waiting for the scheduler thread, by kind (approximate: a view)."""
        return {
            "trigger": self._triggers.qsize(),
            "result": self._results.qsize(),
            "management": self._management.qsize(),
        }

    def snapshot(self) -> dict[str, list[str]]:
        """Pipeline name -> items, for status output (read without locks: a view)."""
        return {m.name: [str(i) for i in list(m.items)] for m in self.managers}

    # -- the scheduler thread ----------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            with self._busy:
                try:
                    self._run_once()
                except Exception:
                    log.exception("scheduler pass failed")

    def _run_once(self) -> None:
        while not self._management.empty():
            action = self._management.get()
            try:
                action()
            except Exception:
                log.exception("management action failed")
        while not self._results.empty():
            self._handle_result(self._results.get())
        self._poll_attached()
        while not self._triggers.empty():
            event = self._triggers.get()
            try:
                self._handle_trigger(event)
            except GatekeeperError as exc:
                log.error("event %s could not be processed: %s", event, shown(exc))
            except Exception:
                log.exception("event %s could not be processed", event)
        for _ in range(100):
            changed = False
            for manager in self.managers:
                try:
                    changed = manager.process() or changed
                except Exception:
                    log.exception("pipeline %s failed to process", manager.name)
            if not changed:
                break

    def _restore(self) -> None:
        self.restored = restore_queues(self.context, self.managers, self.attach, self.local_workers)

    def attach(self, build: Build) -> None:
        """Watch a build that runs elsewhere through its database record."""
        self._attached[build.uuid] = build

    def _poll_attached(self) -> None:
        """Results of re-attached builds, and the loss of those whose worker died."""
        now = time.time()
        if not self._attached or now - self._attached_polled < ATTACHED_POLL:
            return
        self._attached_polled = now
        for uuid in list(self._attached):
            record = self.context.builds.get(uuid)
            attached = self._attached.pop(uuid)
            if record is None:
                continue
            if (record.worker_identity, record.worker, record.start_time) != (
                attached.worker_identity,
                attached.worker,
                attached.started_at,
            ):
                # The row was cleared or names another run since: what it
                # says now is not the run this scheduler re-attached to.
                log.warning("build %s: its row names another run; running it again", uuid[:7])
                found = self._find_build(uuid)
                if found is not None:
                    found[0].forget_build(found[1])
                continue
            if record.result is None:
                self._attached[uuid] = attached
            if record.result is not None:
                data = CompleteData(
                    uuid=uuid,
                    result=record.result,
                    url=record.log_url,
                    node=record.node,
                    provider=record.provider,
                    worker=record.worker,
                    started_at=record.start_time,
                    ended_at=record.end_time,
                )
                self._handle_result(BuildCompleted(uuid=uuid, data=data))
            elif record.heartbeat is None or now - record.heartbeat > HEARTBEAT_STALE:
                self._attached.pop(uuid)
                log.warning("build %s: its worker stopped answering; running it again", uuid[:7])
                found = self._find_build(uuid)
                if found is not None:
                    manager, build = found
                    manager.forget_build(build)

    def _reconfigure(self, layout: Layout) -> None:
        previous = {m.name: m for m in self.managers}
        # Zuul's rule: a reconfiguration enables every disabled pipeline.
        self.context.pipeline_states.reset()
        self.context.layout = layout
        self.context.router = Router(layout)
        managers = []
        for pipeline in layout.pipelines:
            manager = make_manager(pipeline, self.context)
            old = previous.pop(pipeline.name, None)
            if isinstance(old, DependentPipelineManager) and isinstance(
                manager, DependentPipelineManager
            ):
                manager.inherit(old)
            if old is not None:
                for item in old.items:
                    manager.adopt(item)
            managers.append(manager)
        for gone in previous.values():
            for item in list(gone.items):
                log.warning("pipeline %s is not in the new layout: dequeued %s", gone.name, item)
                gone.remove(item, cancel=True)
        self._set_managers(managers)
        self.last_reconfigured = time.time()
        log.info(
            "reconfigured: %d pipelines, %d projects, %d items kept",
            len(layout.pipelines),
            len(layout.projects),
            sum(len(m.items) for m in managers),
        )

    def _handle_trigger(self, event: TriggerEvent) -> None:
        if self.ledger is not None and not self.ledger.first_time(event):
            return
        log.info("event received: %s", describe_event(event))
        self.context.metrics.event(event.type)
        for manager in self.managers:
            manager.dequeue_obsoleted(event)
        # Routed once for every pipeline; the change is asked of Gerrit at
        # most once, and only when some pipeline's trigger fired.
        lookup = functools.partial(self.context.source.change_for_event, event)
        for decision in self.context.router.decisions(event, lookup):
            self._by_name[decision.pipeline].consider(decision, event)
        if self.ledger is not None:
            self.ledger.acted_on(event)

    def _manager_named(self, name: str) -> PipelineManager | None:
        return self._by_name.get(name)

    def _set_managers(self, managers: list[PipelineManager]) -> None:
        self.managers = managers
        self._by_name = {m.name: m for m in managers}

    def _find_build(self, uuid: str) -> tuple[PipelineManager, Build] | None:
        for manager in self.managers:
            build = manager.find_build(uuid)
            if build is not None:
                return manager, build
        return None

    def _handle_result(self, event: ResultEvent) -> None:
        found = self._find_build(event.uuid)
        if isinstance(event, BuildStarted):
            start = event.data
            self.context.builds.started(
                event.uuid,
                start.node,
                start.provider,
                start.worker,
                start.started_at,
                start.url,
                RanOn.of(start),
            )
            if found is None:
                return
            manager, build = found
            build.started_at, build.node = start.started_at, start.node
            build.provider, build.worker, build.url = start.provider, start.worker, start.url
            log.info(
                "build %s started on node %s (%s) by %s",
                build,
                start.node,
                start.provider,
                start.worker,
            )
            wait = start.started_at - build.dispatched_at
            self.context.metrics.build_started(manager.name, build.job, self._label(build), wait)
            if build.canceled:
                self.context.dispatcher.cancel(build.uuid)
            return
        if isinstance(event, BuildCompleted):
            data = event.data
            result = BuildResult.read(data.result)
            end = data.ended_at or time.time()
            if found is None and result == BuildResult.CANCELED:
                # The worker confirms a cancel the scheduler already recorded.
                return
            self.context.builds.completed(
                event.uuid, result.value, end, data.url, data.node, data.provider
            )
            if found is None:
                log.debug("result for unknown or dequeued build %s: %s", event.uuid, result)
                return
            manager, build = found
            if build.canceled:
                return
            build.result = result
            build.ended_at = end
            build.started_at = data.started_at or build.started_at or end
            build.url = data.url or build.url
            build.node = data.node or build.node
            build.conflict = data.conflict
            build.node_wait = data.node_wait
            if data.error:
                log.warning("build %s: %s", build, data.error)
            log.info("build %s completed: %s", build, result.value)
            provider = data.provider or build.provider
            self.context.metrics.build_finished(
                manager.name, build.job, result.value, provider, self._label(build), build.duration
            )
            manager.on_build_completed(build)

    def _label(self, build: Build) -> str:
        """The node label the build's job runs on now (for metrics)."""
        return self.context.layout.job(build.job).node or ""


def make_manager(pipeline: PipelineConfig, context: SchedulerContext) -> PipelineManager:
    """The manager a pipeline's ``manager:`` names."""
    if pipeline.dependent:
        return DependentPipelineManager(pipeline, context)
    return PipelineManager(pipeline, context)


def describe_event(event: TriggerEvent) -> str:
    parts = [event.type, event.project]
    if event.change is not None:
        parts.append(event.change_key)
    elif event.ref:
        parts.append(event.ref)
    if event.account is not None and event.account.username:
        parts.append(f"by {event.account.username}")
    votes = [f"{a.label}{a.value:+d}" for a in event.changed_approvals()]
    if votes:
        parts.append(" ".join(votes))
    return " ".join(parts)
