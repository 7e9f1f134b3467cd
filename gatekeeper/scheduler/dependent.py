"""The gate: a dependent pipeline tests changes in the order they will merge.

Each change queue (:class:`~gatekeeper.scheduler.queues.ChangeQueue`) is a
line of items. Every item is tested on top of the items ahead of it that
are not failing, all at once, so a queue of passing changes merges at the
speed of one test run. When an item starts failing, the items behind it
that were tested on top of it are re-based (:meth:`ChangeQueue.rebase`):
their builds are stopped and run again without it. Only the item at the
head reports; a failing item waits until it gets there, so the items ahead
of it are never disturbed.

Only the first ``window`` items of a queue start builds. The window grows
when an item merges and shrinks when one fails, as the pipeline's
``window-*`` settings say, never below ``window-floor``.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING

from gatekeeper.config.layout_schema import PipelineConfig
from gatekeeper.errors import GatekeeperError
from gatekeeper.git.refs import ChangeRef
from gatekeeper.model.build import BuildResult
from gatekeeper.model.change import Change, MergeState, QueueItem
from gatekeeper.model.outside import shown
from gatekeeper.scheduler.job_filter import JobSelection
from gatekeeper.scheduler.manager import PipelineManager
from gatekeeper.scheduler.merger import MergeRequest, MergeResult
from gatekeeper.scheduler.queues import ChangeQueue, Rebase, build_change_queues, change_key
from gatekeeper.scheduler.triggers import check_requirements

if TYPE_CHECKING:
    from gatekeeper.scheduler.context import SchedulerContext

log = logging.getLogger(__name__)

__all__ = ["DependentPipelineManager"]

# How often a merge that fails without a conflict is tried before the item
# is reported, and how long apart.
MERGE_ATTEMPTS = 3
MERGE_RETRY_DELAY = 10.0

# A job's result that does not fail its item.
_PASSING = {BuildResult.SUCCESS, BuildResult.SKIPPED}


class DependentPipelineManager(PipelineManager):
    """One dependent pipeline. Called only from the scheduler thread."""

    def __init__(self, pipeline: PipelineConfig, context: SchedulerContext) -> None:
        super().__init__(pipeline, context)
        #: Its change queues, in the layout's order; each item is in one.
        self.change_queues = build_change_queues(context.layout, pipeline)
        #: Project -> its change queue, for the projects with jobs in this pipeline.
        self.queue_of = {p: q for q in self.change_queues for p in q.projects}
        self._queue_named = {q.name: q for q in self.change_queues}
        # Queues of a previous layout that this one lacks, with their window
        # and base: taken up if an item adopted from them still needs one.
        self._carried: dict[str, ChangeQueue] = {}
        # Every item, queue by queue: made again after an item enters or leaves.
        self._snapshot: list[QueueItem] | None = None
        # Changes this pipeline merged: what items behind needed is in the branch now.
        self._merged: set[int] = set()
        self._merged_keys: set[str] = set()

    def remember_merged(self, change: Change, key: str = "") -> str:
        """Note that ``change`` merged (its key: ``change_key`` unless given):
        what needed it, or was tested with it, is in the branch now."""
        if len(self._merged) > 100_000:
            self._merged.clear()
            self._merged_keys.clear()
        key = key or change_key(change)
        self._merged.add(change.number)
        self._merged_keys.add(key)
        return key

    def has_merged(self, key: str) -> bool:
        """Whether this pipeline merged the change ``key`` names (``change_key``)."""
        return key in self._merged_keys

    def inherit(self, old: DependentPipelineManager) -> None:
        """Carry what this pipeline knows over from its manager of the previous
        layout (a reconfigure): each queue's window and base, and which
        changes it merged, so the items it adopted are not reset for nothing."""
        previous = {**old._carried, **old._queue_named}
        for name, queue in previous.items():
            current = self._queue_named.get(name)
            if current is None:
                current = self._carried[name] = ChangeQueue(name, queue.projects, self.pipeline)
            current.carry_over(queue)
        self._merged |= old._merged
        self._merged_keys |= old._merged_keys

    # -- queues and windows ------------------------------------------------
    @property
    def items(self) -> list[QueueItem]:
        """Every item, queue by queue, each queue head first. Read-only: a
        snapshot, made again after an item enters or leaves."""
        if self._snapshot is None:
            self._snapshot = [item for queue in self.change_queues for item in queue.items]
        return self._snapshot

    def queue_for(self, project: str) -> ChangeQueue:
        """The change queue of ``project``'s items.

        A project without jobs here (they were taken out of the layout while
        its items were queued) has a queue of its own, named after it.
        """
        queue = self.queue_of.get(project) or self._queue_named.get(project)
        if queue is None:
            queue = self._carried.pop(project, None) or ChangeQueue(
                project, [project], self.pipeline
            )
            self.change_queues.append(queue)
            self._queue_named[project] = queue
        return queue

    def append(self, item: QueueItem) -> None:
        self.queue_for(item.change.project).items.append(item)
        self._snapshot = None

    def _discard(self, item: QueueItem) -> None:
        self.queue_for(item.change.project).discard(item)
        self._snapshot = None

    def adopt(self, item: QueueItem) -> None:
        """As :meth:`PipelineManager.adopt`; an item whose report is out goes
        to the head of its queue (a reconfigure may join queues, putting it
        behind the items of another queue): it may be merging now."""
        super().adopt(item)
        if item.reporting:
            self.queue_for(item.change.project).promote([])
            self._snapshot = None

    def promote(self, items: list[QueueItem]) -> None:
        """Move ``items`` to the head of their queues, in the order given."""
        by_queue: dict[ChangeQueue, list[QueueItem]] = {}
        for item in items:
            by_queue.setdefault(self.queue_for(item.change.project), []).append(item)
        for queue, mine in by_queue.items():
            queue.promote(mine)
        self._snapshot = None

    def window(self, queue: ChangeQueue) -> int:
        """How many items at the head of ``queue`` may run builds (0: no limit)."""
        return queue.window

    # -- entering, with what a change needs ----------------------------------
    def enqueue_with_needs(
        self, change: Change, selection: JobSelection, received_at: float | None = None
    ) -> QueueItem | None:
        """Enqueue ``change`` behind the open changes it needs, enqueuing those
        first when they may enter; then the changes waiting for it.

        A change whose needs cannot enter (not approved, or in another queue)
        waits: it is enqueued when the last of them is.
        """
        item = self._enqueue_tree(change, selection, received_at, set())
        if item is not None:
            self._enqueue_waiting(change, set())
        return item

    def _enqueue_tree(
        self, change: Change, selection: JobSelection, received_at: float | None, visiting: set[int]
    ) -> QueueItem | None:
        existing = self.find(change)
        if existing is not None:
            return existing
        needed = self._needs(change)
        if needed is None:
            return None
        queue = self.queue_for(change.project)
        for dependency in needed:
            if self.find(dependency) is not None:
                continue
            why = self._cannot_enter(dependency, queue)
            if why:
                log.info(
                    "%s waits in %s: it needs %s, which %s",
                    change,
                    self.name,
                    dependency,
                    shown(why),
                )
                return None
        for dependency in needed:
            if self.find(dependency) is None:
                self._enqueue_tree(dependency, self.select(dependency), received_at, visiting)
        item = self.enqueue(change, selection, received_at)
        if item is not None:
            item.needed = needed
        return item

    def _cannot_enter(self, change: Change, queue: ChangeQueue) -> str:
        """Why ``change`` may not be enqueued ahead in ``queue`` now ('' if it may)."""
        if self.queue_of.get(change.project) is not queue:
            return f"is not in this change's queue ({queue.name}) in {self.name}"
        verdict = check_requirements(self.pipeline, change)
        return verdict.reason

    def _enqueue_waiting(self, change: Change, visiting: set[int]) -> None:
        """Enqueue the changes that need ``change`` and were waiting for it."""
        if change.number in visiting or change.is_ref:
            return
        visiting.add(change.number)
        try:
            waiting = self.context.source.changes_depending_on(change)
        except GatekeeperError as exc:
            log.error("could not ask Gerrit which changes need %s: %s", change, shown(exc))
            return
        for other in waiting:
            queue = self.queue_for(change.project)
            if self.find(other) is not None or self._cannot_enter(other, queue):
                continue
            if self._enqueue_tree(other, self.select(other), None, visiting) is not None:
                self._enqueue_waiting(other, visiting)

    # -- items ---------------------------------------------------------------
    def failing(self, item: QueueItem) -> bool:
        """A voting build ended badly, or Gerrit would not merge the change."""
        if item.merge_failed or item.merge_state == MergeState.CONFLICT:
            return True
        return any(b.done and b.voting and b.result not in _PASSING for b in item.builds.values())

    def _reset(self, item: QueueItem, why: str) -> bool:
        """Forget ``item``'s builds (stopping those still running) so it is tested again."""
        if not item.builds:
            return False
        log.info("resetting %s in %s: %s", item.change, self.name, shown(why))
        for build in item.builds.values():
            if not build.done:
                self._cancel(build)
        item.builds.clear()
        return True

    # -- the work --------------------------------------------------------------
    def process(self) -> bool:
        """One walk down every queue: re-base what was tested on a state that
        no longer holds, start what may start, report the head when it is done."""
        changed = False
        for queue in self.change_queues:
            if not queue.items:
                continue
            # One transaction for the build records a walk writes (a reset
            # writes two per build); the report, which talks to Gerrit, is
            # outside it so no write lock is held meanwhile. Builds go to
            # Gearman once their records are committed, not before.
            with self.context.dispatcher.deferred(), self.context.builds.batch():
                changed = self._walk(queue) or changed
            head = queue.items[0] if queue.items else None
            if head is not None and not head.reporting and self._item_finished(head):
                self._report_head(head)
                changed = True
        return changed

    def _walk(self, queue: ChangeQueue) -> bool:
        """Drop, re-base and start what the queue's state asks for, head first
        (:meth:`ChangeQueue.rebase`); True if anything changed."""
        changed = False
        window = queue.window
        rebase = queue.rebase()
        held_by = ""  # a hold-following-changes job not yet passed ahead
        for position, item in enumerate(list(queue.items)):
            missing = self._missing_need(item, rebase)
            if missing:
                self._drop(item, missing)
                changed = True
                continue
            before = rebase.place(item)
            if before is not None:
                if item.builds:
                    tested = ", ".join(self._unmerged(before)) or "the branch tip"
                    changed = self._reset(item, f"was tested on {tested}") or changed
                self.context.item_store.tested(item)
            # A reporting item is done testing: a job a reconfigure gave it
            # meanwhile would run for a report already sent.
            if (window == 0 or position < window) and not held_by and not item.reporting:
                if self._merged_state_ready(item, rebase.ahead):
                    changed = self._launch_ready_jobs(item, rebase.ahead) or changed
            if not self.failing(item):
                held_by = held_by or self._holding(item)
                rebase.passed(item)
        return changed

    def _merged_state_ready(self, item: QueueItem, ahead: list[Change]) -> bool:
        """Whether the merger has made the state ``item`` is tested in; asks it if not.

        Without a merger, workers merge ZUUL_CHANGES themselves: always ready.
        """
        merger = self.context.merger
        if merger is None or item.change.is_ref:
            return True
        if item.merge_state == MergeState.RETRY and time.time() >= item.merge_retry_at:
            item.merge_state = MergeState.UNASKED
        if item.merge_state:
            return item.merge_state == MergeState.OK
        item.merge_state = MergeState.PENDING
        token = item.merge_token = uuid.uuid4().hex
        changes = [*ahead, item.change]
        modes: dict[str, str] = {}
        for change in changes:
            project = self.context.layout.project(change.project)
            modes[change.project] = project.merge_mode if project else "merge-resolve"
        post = self.context.post
        assert post is not None

        def done(result: MergeResult) -> None:
            post(lambda: self._merge_done(item, token, result))

        merger.submit(
            MergeRequest(
                changes=[
                    ChangeRef(c.project, c.branch, c.ref, c.number, c.patchset) for c in changes
                ],
                modes=modes,
                done=done,
                branch=item.change.branch,
            )
        )
        return False

    def _merge_done(self, item: QueueItem, token: str, result: MergeResult) -> None:
        """A merge came back (scheduler thread); stale if the item moved on meanwhile."""
        if item.dequeued or item.merge_token != token or item.merge_state != MergeState.PENDING:
            return
        if result.ok:
            item.zuul_ref, item.merge_state, item.merge_errors = result.ref, MergeState.OK, 0
        elif result.conflict == change_key(item.change):
            log.info("%s does not merge in %s: %s", item.change, self.name, result.error)
            item.merge_state, item.merge_conflict = MergeState.CONFLICT, result.error
        elif result.conflict:
            # A change ahead no longer merges onto the branch (it moved): that
            # item finds out at the head, and this one is re-based then.
            log.info("%s waits in %s: %s", item.change, self.name, result.error)
            item.merge_state = MergeState.BLOCKED
        elif item.merge_errors + 1 < MERGE_ATTEMPTS:
            # Not the change's fault (Gerrit out of reach, a disk full): ask again later.
            item.merge_errors += 1
            item.merge_state = MergeState.RETRY
            item.merge_retry_at = time.time() + MERGE_RETRY_DELAY
            log.warning(
                "merger failed for %s in %s (try %d of %d): %s",
                item.change,
                self.name,
                item.merge_errors,
                MERGE_ATTEMPTS,
                result.error,
            )
        else:
            log.error("merger failed for %s in %s: %s", item.change, self.name, result.error)
            item.merge_state = MergeState.CONFLICT
            item.merge_conflict = f"the merger failed: {result.error}"

    def own_conflict(self, item: QueueItem) -> str:
        return item.merge_conflict or super().own_conflict(item)

    def _item_finished(self, item: QueueItem) -> bool:
        return item.merge_state == MergeState.CONFLICT or super()._item_finished(item)

    def _holding(self, item: QueueItem) -> str:
        """A job of ``item`` with hold-following-changes that has not passed yet:
        the items behind start nothing until it has."""
        layout = self.context.layout
        for name in self.job_names(item):
            if layout.job(name).hold_following_changes:
                build = item.builds.get(name)
                if build is None or build.result != BuildResult.SUCCESS:
                    return name
        return ""

    def _unmerged(self, keys: list[str] | None) -> list[str]:
        # has_merged, inlined: the status snapshot asks this of every item,
        # each with every change ahead (a quadratic number of keys).
        merged = self._merged_keys
        return [k for k in keys or [] if k not in merged]

    def tested_on(self, item: QueueItem) -> list[str]:
        """The changes ahead that the item's builds include and that are not merged yet."""
        return self._unmerged(item.tested_with)

    def _missing_need(self, item: QueueItem, rebase: Rebase) -> Change | None:
        """A change the item needs that is neither merged nor passing ahead of it."""
        for need in item.needed:
            if need.number in self._merged or rebase.has_ahead(need):
                continue
            return need
        return None

    def _drop(self, item: QueueItem, need: Change) -> None:
        """``item`` cannot merge without ``need``, which failed or left: report, dequeue."""
        log.info("dequeuing %s from %s: it needs %s, which will not merge", item, self.name, need)
        self.remove(item, cancel=True)
        self._send(self.compose.dropped(item.change, need))

    def _report_head(self, item: QueueItem) -> None:
        """Send the head's report; it stays at the head until the outcome is
        back (:meth:`_head_reported`), so what is behind it waits to learn
        whether it merged."""
        self.context.item_store.reporting(item)
        self._begin_report(item, lambda manager: _head_reported(manager, item))

    def _head_reported(self, item: QueueItem) -> None:
        """The head's report is done: it leaves, and its change queue re-bases
        on whether it merged (:meth:`ChangeQueue.head_left`). The queue is
        looked up now: a reconfigure may have replaced the manager meanwhile."""
        queue = self.queue_for(item.change.project)
        merged = item.change.is_merged and not item.merge_failed
        left_before = item.dequeued
        self.remove(item, cancel=False)
        if left_before and not merged:
            # It was taken out while its report was out (a new patchset, an
            # abandon): the walk re-based those behind then, and leaving is
            # no failure that shrinks the window.
            return
        queue.head_left(item, self.remember_merged(item.change) if merged else None)


def _head_reported(manager: PipelineManager, item: QueueItem) -> None:
    if isinstance(manager, DependentPipelineManager):
        manager._head_reported(item)
    else:
        # A reconfigure made the pipeline independent meanwhile: no change
        # queue to re-base, the item just leaves.
        manager.remove(item, cancel=False)
