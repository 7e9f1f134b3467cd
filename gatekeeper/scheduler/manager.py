"""A pipeline's queue: what enters it, which builds run, when it reports.

Both managers test each item on its own change; a dependent (gate)
pipeline additionally reports with the submit its reporters ask for and
treats a change Gerrit would not merge as a merge failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gatekeeper.dispatch import protocol
from gatekeeper.errors import DispatchError, OperationError
from gatekeeper.model.build import Build, BuildResult
from gatekeeper.model.change import Change, QueueItem
from gatekeeper.model.events import TriggerEvent
from gatekeeper.model.outside import shown
from gatekeeper.scheduler.dependencies import DependencyCycleError, needed_changes
from gatekeeper.scheduler.params import build_params, call_parameter_function, swift_params
from gatekeeper.scheduler.reporter import ReportOutcome
from gatekeeper.scheduler.reports import Report, ReportComposer, stored_facts

if TYPE_CHECKING:
    from gatekeeper.config.layout_schema import PipelineConfig
    from gatekeeper.scheduler.context import SchedulerContext
    from gatekeeper.scheduler.job_filter import JobSelection
    from gatekeeper.scheduler.routing import Decision

log = logging.getLogger(__name__)

#: The events that make a queued item of their change pointless.
_OBSOLETING = frozenset({"patchset-created", "change-abandoned"})


class PipelineManager:
    """One pipeline. Called only from the scheduler thread."""

    def __init__(self, pipeline: PipelineConfig, context: SchedulerContext) -> None:
        self.pipeline = pipeline
        self.name: str = pipeline.name
        self.context = context
        self._items: list[QueueItem] = []
        #: The run of failed reports (disable-after-consecutive-failures).
        self.health = context.pipeline_states.of(pipeline)
        mail = context.mail.report if context.mail is not None else None
        self.compose = ReportComposer(
            pipeline,
            self.health,
            mail,
            flaky=context.flaky_note,
            jobs=context.layout.job,
            facts=stored_facts(context.builds),
        )

    @property
    def items(self) -> list[QueueItem]:
        """The pipeline's items in order. Read-only: items enter through
        :meth:`enqueue` or :meth:`append` and leave through :meth:`remove`."""
        return self._items

    def append(self, item: QueueItem) -> None:
        """Put ``item`` at the end, as it is (a restored or adopted item)."""
        self._items.append(item)

    def _discard(self, item: QueueItem) -> None:
        if item in self._items:
            self._items.remove(item)

    @property
    def dependent(self) -> bool:
        return bool(self.pipeline.manager == "dependent")

    # -- entering and leaving --------------------------------------------
    def dequeue_obsoleted(self, event: TriggerEvent) -> None:
        """A new patchset or an abandon makes queued items pointless."""
        # Only these two obsolete anything: every other event (most are
        # comments) must not pay for a look at every queued item.
        if event.change is None or event.type not in _OBSOLETING:
            return
        for item in list(self.items):
            if item.change.number != event.change or item.change.project != event.project:
                continue
            obsolete = event.type == "change-abandoned" or (
                event.type == "patchset-created"
                and self.pipeline.dequeue_on_new_patchset
                and event.patchset is not None
                and item.change.patchset < event.patchset
            )
            if obsolete:
                log.info("dequeued %s from %s: %s", item.change, self.name, event.type)
                self.remove(item, cancel=True)

    def consider(self, decision: Decision, event: TriggerEvent) -> None:
        """Act on this pipeline's :class:`Decision` on ``event`` (the scheduler
        routes each event once, for every pipeline)."""
        change = decision.change
        if change is None:
            log.warning("%s: change %s: %s", self.name, event.change, shown(decision.reason))
            return
        if not decision.enqueue:
            log.info("%s not enqueued in %s: %s", change, self.name, shown(decision.reason))
            return
        if self.enqueue_with_needs(change, decision.selection, event.received_at) is not None:
            self.context.metrics.event_enqueued(self.name, time.time() - event.created_on)

    def _needs(self, change: Change) -> list[Change] | None:
        """The open changes ``change`` needs, or None (reported) when they loop or
        are outdated."""
        if change.is_ref or self.pipeline.ignore_dependencies:
            return []
        try:
            return needed_changes(self.context.source, change)
        except OperationError as exc:
            log.warning("%s not enqueued in %s: %s", change, self.name, shown(exc))
            if isinstance(exc, DependencyCycleError):
                self._tell(change, f"This change was not enqueued in {self.name}: {exc}.")
            return None

    def _tell(self, change: Change, message: str) -> None:
        """A message on the change, without votes."""
        self._send(self.compose.notice(change, message))

    def enqueue_with_needs(
        self, change: Change, selection: JobSelection, received_at: float | None = None
    ) -> QueueItem | None:
        """Enqueue ``change``, to be tested with the open changes it needs."""
        needed = self._needs(change)
        if needed is None:
            return None
        item = self.enqueue(change, selection, received_at)
        if item is not None:
            item.needed = needed
            if needed:
                log.info("%s is tested with %s", change, ", ".join(str(c) for c in needed))
        return item

    def enqueue(
        self, change: Change, selection: JobSelection, received_at: float | None = None
    ) -> QueueItem | None:
        """Add ``change`` at the end of the queue with the jobs ``selection`` chose.

        Returns the new item, or None when the change is already queued.
        """
        if self.find(change) is not None:
            log.info("%s is already in %s", change, self.name)
            return None
        item = QueueItem(change=change, pipeline=self.name, event_received_at=received_at)
        item.job_trees = list(selection.trees)
        self.append(item)
        self.context.item_store.added(item)
        self.context.metrics.item_enqueued(self.name, change.project, len(self.items))
        skipped = selection.skipped
        log.info(
            "enqueued %s in %s%s",
            change,
            self.name,
            f" (not running {', '.join(sorted(skipped))})" if skipped else "",
        )
        self._report_start(item)
        if self.context.zuul_events is not None:
            self.context.zuul_events.enqueued(self.context.layout, change, self.name)
        return item

    def select(self, change: Change) -> JobSelection:
        """The jobs this pipeline runs for ``change`` (its branch and files)."""
        return self.context.router.select(
            change.project, self.name, change.branch, "", change.files
        )

    def find(self, change: Change) -> QueueItem | None:
        """The item of this change at this patchset (or this ref at this revision)."""
        for item in self.items:
            if _same(item.change, change):
                return item
        return None

    def adopt(self, item: QueueItem) -> None:
        """Take over ``item`` from this pipeline's manager of the previous layout.

        Its jobs are chosen again; builds of jobs it no longer runs are
        cancelled if running and forgotten either way, so they neither wait
        for nor count in its report.
        """
        change = item.change
        item.job_trees = list(self.select(change).trees)
        keep = {tree.name for root in item.job_trees for tree in root.walk()}
        for name, build in list(item.builds.items()):
            if name in keep:
                continue
            if not build.done:
                log.info("cancelling %s of %s: the job is gone from the layout", build, change)
                self._cancel(build)
            del item.builds[name]
        self.append(item)

    def _cancel(self, build: Build) -> None:
        build.canceled = True
        self.context.mutexes.release(build)
        self.context.dispatcher.cancel(build.uuid, build.worker)
        self.context.builds.completed(build.uuid, BuildResult.CANCELED.value, time.time())

    def remove(self, item: QueueItem, cancel: bool) -> None:
        if cancel:
            for build in item.builds.values():
                if not build.done:
                    self._cancel(build)
        item.dequeued = True
        self.context.mutexes.forget_item(item.uuid)
        self._discard(item)
        self.context.item_store.removed(item)
        resident = time.time() - item.enqueued_at
        self.context.metrics.item_dequeued(
            self.name, item.change.project, len(self.items), resident
        )

    def find_build(self, uuid: str) -> Build | None:
        for item in self.items:
            for build in item.builds.values():
                if build.uuid == uuid:
                    return build
        return None

    def forget_build(self, build: Build) -> None:
        """A build that will never report (its worker died while no scheduler
        listened): record it lost, free its node, and let the item run the job again."""
        record = self.context.builds.get(build.uuid)
        if record is not None:
            self.context.item_store.lose([record])
        self.context.mutexes.release(build)
        for item in self.items:
            if item.builds.get(build.job) is build:
                del item.builds[build.job]

    def on_build_completed(self, build: Build) -> None:
        """Free its mutex; :meth:`process` picks up what this unblocks."""
        self.context.mutexes.release(build)

    # -- the work ----------------------------------------------------------
    def process(self) -> bool:
        changed = False
        for item in list(self.items):
            if item.reporting:
                continue
            changed = self._launch_ready_jobs(item, item.needed) or changed
            if self._item_finished(item):
                self.context.item_store.reporting(item)
                self._begin_report(item, _leave(item))
                changed = True
        return changed

    def _job_trees(self, item: QueueItem) -> list[Any]:
        return list(item.job_trees)

    def job_names(self, item: QueueItem) -> list[str]:
        """Every job the item runs, parents before children."""
        return self._all_jobs(item)

    def _all_jobs(self, item: QueueItem) -> list[str]:
        names: list[str] = []

        def walk(trees: list[Any]) -> None:
            for tree in trees:
                names.append(tree.name)
                walk(list(tree.children))

        walk(self._job_trees(item))
        return names

    def _launch_ready_jobs(self, item: QueueItem, ahead: list[Change] | None = None) -> bool:
        """Dispatch every job of ``item`` whose parent succeeded (tested on top of ``ahead``)."""
        changed = False

        def walk(trees: list[Any], parent_ok: bool | None) -> None:
            nonlocal changed
            for tree in trees:
                build = item.builds.get(tree.name)
                if build is None:
                    if parent_ok is False:
                        build = Build(
                            job=tree.name, item_uuid=item.uuid, result=BuildResult.SKIPPED
                        )
                        item.builds[tree.name] = build
                        changed = True
                    elif parent_ok is None or parent_ok:
                        # A job waiting for its mutex changes nothing yet.
                        changed = self._dispatch(item, tree.name, ahead or []) or changed
                    continue
                if build.done:
                    walk(list(tree.children), build.result == BuildResult.SUCCESS)
                elif tree.children:
                    # Parent still running: children wait.
                    pass

        walk(self._job_trees(item), None)
        return changed

    def _dispatch(self, item: QueueItem, job_name: str, ahead: list[Change]) -> bool:
        """Start a build of ``job_name`` for ``item``; False (nothing done) while
        the job waits for its mutex."""
        layout = self.context.layout
        job = layout.job(job_name)
        mutexes = self.context.mutexes
        if job.mutex and not mutexes.free_for(job.mutex, item.uuid, job_name):
            return False
        build = Build(job=job_name, item_uuid=item.uuid, voting=bool(job.voting))
        item.builds[job_name] = build
        if job.mutex:
            mutexes.take(job.mutex, build)
        change = item.change
        params = build_params(change, ahead, self.name, job_name, build.uuid, self.context.zuul_url)
        if item.zuul_ref and self.context.merger is not None:
            # The merger's state: the same commits for every build of the item.
            params["ZUUL_REF"] = item.zuul_ref
            params["ZUUL_URL"] = self.context.merger.merger.url
        if job.swift and self.context.swift is not None:
            # Before the parameter function, which may change them (as in Zuul).
            params.update(swift_params(self.context.swift, job, change, self.name, params))
        if job.parameter_function:
            function = layout.functions.get(job.parameter_function)
            try:
                if function is None:
                    raise ValueError("is not loaded (was the layout loaded without includes?)")
                call_parameter_function(function, item, job, params)
            except ValueError as exc:
                log.error("parameter function %s of %s %s", job.parameter_function, job_name, exc)
                build.result = BuildResult.ERROR
                build.ended_at = time.time()
                self._record(build, change, job.node, params)
                self.context.builds.completed(build.uuid, build.result.value, build.ended_at)
                return True
        # The workspace holds every project the job runs for, and every
        # project a change under test (this one or one ahead) belongs to.
        projects = list(
            dict.fromkeys(
                [change.project, *(c.project for c in ahead), *layout.projects_for_job(job_name)]
            )
        )
        spec = protocol.JobSpec(
            name=job_name,
            run=job.run or "",
            node=job.node,
            logs=list(job.logs),
            timeout=float(job.timeout),
            projects=projects,
        )
        self._record(build, change, job.node, params)
        try:
            self.context.dispatcher.submit(
                build.uuid,
                params,
                spec,
                precedence=str(self.pipeline.precedence),
                attempts=job.attempts,
            )
        except DispatchError as exc:
            log.error("could not dispatch %s for %s: %s", job_name, change, exc)
            build.result = BuildResult.ERROR
            build.ended_at = time.time()
            self.context.builds.completed(build.uuid, build.result.value, build.ended_at)
            return True
        log.info(
            "build dispatched: %s %s for %s in %s", job_name, build.uuid[:7], change, self.name
        )
        return True

    def _record(self, build: Build, change: Change, label: str, params: Mapping[str, str]) -> None:
        self.context.builds.dispatched(
            build.uuid,
            build.job,
            change.project,
            None if change.is_ref else change.number,
            None if change.is_ref else change.patchset,
            self.name,
            build.dispatched_at,
            item_uuid=build.item_uuid,
            label=label,
            branch=change.branch,
            parameters=params,
        )

    def _item_finished(self, item: QueueItem) -> bool:
        # An item whose every job was filtered out (branch, files, skip-if)
        # is finished at once, and passes: nothing it runs failed.
        return item.all_builds_done(self._all_jobs(item))

    def _item_passed(self, item: QueueItem) -> bool:
        return all(b.result == BuildResult.SUCCESS for b in item.builds.values() if b.voting)

    # -- reporting ---------------------------------------------------------
    # Reports are composed here (by ``self.compose``) and sent by the
    # reporter's threads; the scheduler thread never waits on Gerrit. What a
    # report's outcome decides runs later, in the scheduler thread, from the
    # callback given to :meth:`_send`.

    def _send(
        self, report: Report | None, then: Callable[[ReportOutcome], None] | None = None
    ) -> None:
        """Hand ``report`` to the reporter; ``then(outcome)`` runs in the
        scheduler thread once it is known (by default: log a failure)."""
        if report is None:
            return
        self.context.reports.send(report, then or _log_failure)

    def _current(self) -> PipelineManager:
        """This pipeline's manager now: a reconfigure while a report was out
        handed the item to a new one, which may be of the other kind (its
        ``manager:`` changed); self if the pipeline is gone."""
        find = self.context.manager_named
        current = find(self.name) if find is not None else None
        return current if isinstance(current, PipelineManager) else self

    def _begin_report(self, item: QueueItem, then: Callable[[PipelineManager], None]) -> None:
        """Send ``item``'s report; it waits in its queue, "reporting", until
        the outcome is known, then ``then(manager)`` runs (once)."""
        item.reporting = True
        finished = False

        def finish() -> None:
            nonlocal finished
            if finished:
                return
            finished = True
            item.reporting = False
            then(self._current())

        try:
            self._report(item, finish)
        except Exception:
            # Never keep an item whose report broke: it would wait forever.
            log.exception("reporting %s in %s failed", item.change, self.name)
            finish()

    def _report_start(self, item: QueueItem) -> None:
        self._send(self.compose.start(item))

    def own_conflict(self, item: QueueItem) -> str:
        """Why the item's own change does not merge, if a build found it so."""
        key = f"{item.change.project} {item.change.key}"
        for build in item.builds.values():
            if build.result == BuildResult.MERGER_FAILURE and build.conflict == key:
                return f"{key} does not merge onto {item.change.branch}"
        return ""

    def _report(self, item: QueueItem, then: Callable[[], None]) -> None:
        """Send the item's result; ``then()`` runs in the scheduler thread when
        it is known (and, for a submit Gerrit did not merge, after the merge
        failure report)."""
        conflict = self.own_conflict(item)
        if conflict:
            self._report_merge_failure(item, conflict, then)
            return
        passed = self._item_passed(item)
        jobs = self._all_jobs(item)
        log.info(
            "reporting %s in %s: %s", item.change, self.name, "SUCCESS" if passed else "FAILURE"
        )
        # Composed before it counts: the failure that disables the pipeline
        # is still reported as usual. An item without jobs counts for
        # nothing, as in Zuul.
        report = self.compose.result(item, passed, jobs)
        if jobs:
            self.health.reported(passed)
        if item.change.is_ref:
            # A ref update has no change in Gerrit to review: the log, the
            # build records and any mail are its report.
            for line in self.compose.result_message(item, passed, jobs).splitlines()[2:]:
                log.info("%s in %s: %s", item.change, self.name, line)
            then()
            return
        if report is None:
            then()
            return

        def landed(outcome: ReportOutcome) -> None:
            item.reported = item.reported or outcome.sent
            if not outcome.sent and outcome.error:
                item.report_error = outcome.error
            if report.submit and outcome.merged:
                item.change.status = "MERGED"
                log.info("change merged: %s", item.change)
                if self.context.zuul_events is not None:
                    self.context.zuul_events.merged(self.context.layout, item.change)
            elif report.submit and outcome.merged is None:
                # Gerrit never answered, nor could be asked: the change may
                # have merged, so no merge-failure comment that could be
                # false. The queue goes on as if it had not (what is behind
                # is tested again without it), and the error is kept.
                item.merge_failed = True
                log.error(
                    "the report of %s in %s was not delivered; whether it merged is unknown: %s",
                    item.change,
                    self.name,
                    outcome.error,
                )
            elif report.submit and item.dequeued:
                # It left meanwhile (a new patchset, an abandon, an operator):
                # that is why Gerrit would not submit it, not a conflict.
                log.info(
                    "%s left %s while its report was out; not merged: %s",
                    item.change,
                    self.name,
                    outcome.error or "Gerrit did not merge the change",
                )
            elif report.submit:
                why = outcome.error or "Gerrit did not merge the change"
                # Gerrit's refusal (an unmet submit requirement) is the reason
                # the change's owner needs to read; a conflict's is the headline.
                self._current()._report_merge_failure(
                    item, why, then, reason=why if outcome.refused else ""
                )
                return
            elif outcome.error and not outcome.sent:
                log.error("could not report %s in %s: %s", item.change, self.name, outcome.error)
            then()

        self._send(report, landed)

    def _report_merge_failure(
        self, item: QueueItem, why: str, then: Callable[[], None], reason: str = ""
    ) -> None:
        item.merge_failed = True
        # Git's and Gerrit's own words: file names, subjects, several lines.
        log.warning("merge failure for %s in %s: %s", item.change, self.name, shown(why, 500))
        report = self.compose.merge_failure(item, reason)
        if report is None:
            then()
            return

        def landed(outcome: ReportOutcome) -> None:
            _log_failure(outcome)
            then()

        self._send(report, landed)


def _leave(item: QueueItem) -> Callable[[PipelineManager], None]:
    """What ends an independent item's report: it leaves its pipeline."""
    return lambda manager: manager.remove(item, cancel=False)


def _log_failure(outcome: ReportOutcome) -> None:
    """The default outcome handler: a report that was not sent is logged."""
    if not outcome.sent and outcome.error:
        report = outcome.report
        log.error(
            "could not send the %s report on %s%s: %s",
            report.kind,
            report.change,
            f" in {report.pipeline}" if report.pipeline else "",
            outcome.error,
        )


def _same(a: Change, b: Change) -> bool:
    """The same change at the same patchset, or the same ref at the same revision."""
    if a.is_ref or b.is_ref:
        # A timer's items have no revision: the project tells them apart.
        same_ref = a.ref == b.ref and a.new_rev == b.new_rev and a.project == b.project
        return a.is_ref and b.is_ref and same_ref
    return a.number == b.number and a.patchset == b.patchset
