"""A pipeline's queue: what enters it, which builds run, when it reports.

Both managers test each item on its own change; a dependent (gate)
pipeline additionally reports with the submit its reporters ask for and
treats a change Gerrit would not merge as a merge failure.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from gatekeeper.dispatch import protocol
from gatekeeper.errors import DispatchError, GatekeeperError, GerritError, OperationError
from gatekeeper.model.build import Build, BuildResult
from gatekeeper.model.change import Change, QueueItem
from gatekeeper.model.events import TriggerEvent
from gatekeeper.scheduler.dependencies import DependencyCycleError, needed_changes
from gatekeeper.scheduler.params import build_params, call_parameter_function
from gatekeeper.scheduler.report import compose_message

if TYPE_CHECKING:
    from gatekeeper.scheduler.routing import Decision
    from gatekeeper.scheduler.scheduler import SchedulerContext

log = logging.getLogger(__name__)


class PipelineManager:
    """One pipeline. Called only from the scheduler thread."""

    def __init__(self, pipeline: Any, context: SchedulerContext) -> None:
        self.pipeline = pipeline
        self.name: str = pipeline.name
        self.context = context
        self.items: list[QueueItem] = []

    @property
    def dependent(self) -> bool:
        return bool(self.pipeline.manager == "dependent")

    # -- entering and leaving --------------------------------------------
    def dequeue_obsoleted(self, event: TriggerEvent) -> None:
        """A new patchset or an abandon makes queued items pointless."""
        if event.change is None:
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
            log.warning("%s: change %s: %s", self.name, event.change, decision.reason)
            return
        if not decision.enqueue:
            log.info("%s not enqueued in %s: %s", change, self.name, decision.reason)
            return
        self.enqueue_with_needs(change, decision.selection, event.received_at)

    def _needs(self, change: Change) -> list[Change] | None:
        """The open changes ``change`` needs, or None (reported) when they loop or
        are outdated."""
        if change.is_ref or self.pipeline.ignore_dependencies:
            return []
        try:
            return needed_changes(self.context.source, change)
        except OperationError as exc:
            log.warning("%s not enqueued in %s: %s", change, self.name, exc)
            if isinstance(exc, DependencyCycleError):
                self._tell(change, f"This change was not enqueued in {self.name}: {exc}.")
            return None

    def _tell(self, change: Change, message: str) -> None:
        """A message on the change, without votes."""
        try:
            self.context.reporter.report(change, message + "\n", {}, False)
        except GerritError as exc:
            log.error("could not comment on %s: %s", change, exc)

    def enqueue_with_needs(
        self, change: Change, selection: Any, received_at: float | None = None
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
        self, change: Change, selection: Any, received_at: float | None = None
    ) -> QueueItem | None:
        """Add ``change`` at the end of the queue with the jobs ``selection`` chose.

        Returns the new item, or None when the change is already queued.
        """
        if self.find(change) is not None:
            log.info("%s is already in %s", change, self.name)
            return None
        item = QueueItem(change=change, pipeline=self.name, event_received_at=received_at)
        item.job_trees = list(selection.trees)
        self.items.append(item)
        self.context.queue.added(item)
        skipped = selection.skipped
        log.info(
            "enqueued %s in %s%s",
            change,
            self.name,
            f" (not running {', '.join(sorted(skipped))})" if skipped else "",
        )
        self._report_start(item)
        return item

    def select(self, change: Change) -> Any:
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
        self.items.append(item)

    def _cancel(self, build: Build) -> None:
        build.canceled = True
        self.context.dispatcher.cancel(build.uuid, build.worker)
        self.context.builds.completed(build.uuid, BuildResult.CANCELED.value, time.time())

    def remove(self, item: QueueItem, cancel: bool) -> None:
        if cancel:
            for build in item.builds.values():
                if not build.done:
                    self._cancel(build)
        item.dequeued = True
        if item in self.items:
            self.items.remove(item)
        self.context.queue.removed(item)

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
            self.context.queue.lose([record])
        for item in self.items:
            if item.builds.get(build.job) is build:
                del item.builds[build.job]

    def on_build_completed(self, build: Build) -> None:
        """Nothing to do now: :meth:`process` picks up what this unblocks."""

    # -- the work ----------------------------------------------------------
    def process(self) -> bool:
        changed = False
        for item in list(self.items):
            changed = self._launch_ready_jobs(item, item.needed) or changed
            if self._item_finished(item):
                self.context.queue.reporting(item)
                try:
                    self._report(item)
                except Exception:
                    # Never keep an item whose report broke: it would be retried forever.
                    log.exception("reporting %s in %s failed", item.change, self.name)
                self.remove(item, cancel=False)
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
                        self._dispatch(item, tree.name, ahead or [])
                        changed = True
                    continue
                if build.done:
                    walk(list(tree.children), build.result == BuildResult.SUCCESS)
                elif tree.children:
                    # Parent still running: children wait.
                    pass

        walk(self._job_trees(item), None)
        return changed

    def _dispatch(self, item: QueueItem, job_name: str, ahead: list[Change]) -> None:
        layout = self.context.layout
        job = layout.job(job_name)
        build = Build(job=job_name, item_uuid=item.uuid, voting=bool(job.voting))
        item.builds[job_name] = build
        change = item.change
        params = build_params(change, ahead, self.name, job_name, build.uuid, self.context.zuul_url)
        if item.zuul_ref and self.context.merger is not None:
            # The merger's state: the same commits for every build of the item.
            params["ZUUL_REF"] = item.zuul_ref
            params["ZUUL_URL"] = self.context.merger.merger.url
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
                self._record(build, change)
                self.context.builds.completed(build.uuid, build.result.value, build.ended_at)
                return
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
        self._record(build, change)
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
            return
        log.info(
            "build dispatched: %s %s for %s in %s", job_name, build.uuid[:7], change, self.name
        )

    def _record(self, build: Build, change: Change) -> None:
        self.context.builds.dispatched(
            build.uuid,
            build.job,
            change.project,
            None if change.is_ref else change.number,
            None if change.is_ref else change.patchset,
            self.name,
            build.dispatched_at,
            item_uuid=build.item_uuid,
        )

    def _item_finished(self, item: QueueItem) -> bool:
        # An item whose every job was filtered out (branch, files, skip-if)
        # is finished at once, and passes: nothing it runs failed.
        return item.all_builds_done(self._all_jobs(item))

    def _item_passed(self, item: QueueItem) -> bool:
        return all(b.result == BuildResult.SUCCESS for b in item.builds.values() if b.voting)

    # -- reporting ---------------------------------------------------------
    def _report_start(self, item: QueueItem) -> None:
        action = getattr(self.pipeline, "start", None)
        if not _gerrit_options(action) or item.change.is_ref:
            return
        message = getattr(self.pipeline, "start_message", None) or f"Starting {self.name} jobs."
        self._send(item, action, message, allow_submit=False)

    def own_conflict(self, item: QueueItem) -> str:
        """Why the item's own change does not merge, if a build found it so."""
        key = f"{item.change.project} {item.change.key}"
        for build in item.builds.values():
            if build.result == BuildResult.MERGER_FAILURE and build.conflict == key:
                return f"{key} does not merge onto {item.change.branch}"
        return ""

    def _report(self, item: QueueItem) -> None:
        conflict = self.own_conflict(item)
        if conflict:
            self._report_merge_failure(item, conflict)
            return
        passed = self._item_passed(item)
        action = self.pipeline.success if passed else self.pipeline.failure
        headline = self.pipeline.success_message if passed else self.pipeline.failure_message
        headline = headline or ("Build succeeded." if passed else "Build failed.")
        footer = getattr(self.pipeline, "footer_message", "") or ""
        message = compose_message(headline, self.name, item, self._all_jobs(item), footer)
        log.info(
            "reporting %s in %s: %s", item.change, self.name, "SUCCESS" if passed else "FAILURE"
        )
        if item.change.is_ref:
            # A ref update has no change in Gerrit to review: the log and the
            # build records are its report.
            for line in message.splitlines()[2:]:
                log.info("%s in %s: %s", item.change, self.name, line)
            return
        submitted = self._send(item, action, message, allow_submit=True)
        if submitted and not self._is_merged(item.change):
            self._report_merge_failure(item, "Gerrit did not merge the change")

    def _send(self, item: QueueItem, action: Any, message: str, allow_submit: bool) -> bool:
        """Send one review; returns whether it asked Gerrit to submit."""
        options = _gerrit_options(action)
        if options is None:
            return False
        submit = allow_submit and bool(options.get("submit"))
        labels = {k: int(v) for k, v in options.items() if k != "submit"}
        try:
            self.context.reporter.report(item.change, message, labels, submit)
        except GerritError as exc:
            item.report_error = str(exc)
            if submit:
                self._report_merge_failure(item, str(exc))
            else:
                log.error("could not report %s in %s: %s", item.change, self.name, exc)
            return False
        item.reported = True
        return submit

    def _is_merged(self, change: Change) -> bool:
        try:
            current = self.context.source.get_change(change.number)
        except GatekeeperError as exc:
            log.error("could not read back %s after submit: %s", change, exc)
            return False
        merged = current is not None and current.is_merged
        if merged:
            change.status = "MERGED"
            log.info("change merged: %s", change)
        return merged

    def _report_merge_failure(self, item: QueueItem, why: str) -> None:
        item.merge_failed = True
        log.warning("merge failure for %s in %s: %s", item.change, self.name, why)
        action = getattr(self.pipeline, "merge_failure", None) or self.pipeline.failure
        headline = (
            getattr(self.pipeline, "merge_failure_message", None)
            or "This change was unable to be automatically merged with the current "
            "state of the repository. Please rebase your change and upload a new "
            "patchset."
        )
        options = _gerrit_options(action)
        if options is None:
            return
        labels = {k: int(v) for k, v in options.items() if k != "submit"}
        try:
            self.context.reporter.report(item.change, headline.rstrip() + "\n", labels, False)
        except GerritError as exc:
            log.error("could not report merge failure of %s: %s", item.change, exc)


def _same(a: Change, b: Change) -> bool:
    """The same change at the same patchset, or the same ref at the same revision."""
    if a.is_ref or b.is_ref:
        return a.is_ref and b.is_ref and a.ref == b.ref and a.new_rev == b.new_rev
    return a.number == b.number and a.patchset == b.patchset


def _gerrit_options(action: Any) -> dict[str, Any] | None:
    """The ``gerrit:`` part of a reporter action, or None if it has none."""
    if action is None:
        return None
    if action is None or action.gerrit is None:
        return None
    return {**action.votes, "submit": action.submit}
