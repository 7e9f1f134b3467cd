"""The gate: a dependent pipeline tests changes in the order they will merge.

Each change queue (see :mod:`queues`) is a line of items. Every item is
tested on top of the items ahead of it that are not failing, all at once,
so a queue of passing changes merges at the speed of one test run. When an
item starts failing, the items behind it that were tested on top of it are
reset: their builds are stopped and run again without it. Only the item at
the head reports; a failing item waits until it gets there, so the items
ahead of it are never disturbed.

Only the first ``window`` items of a queue start builds. The window grows
when an item merges and shrinks when one fails, as the pipeline's
``window-*`` settings say, never below ``window-floor``.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from gatekeeper.errors import GatekeeperError
from gatekeeper.model.build import BuildResult
from gatekeeper.model.change import Change, QueueItem
from gatekeeper.scheduler.manager import PipelineManager
from gatekeeper.scheduler.merger import MergeRequest, MergeResult
from gatekeeper.scheduler.queues import change_queues
from gatekeeper.scheduler.triggers import check_requirements
from gatekeeper.worker.workspace import ChangeRef

log = logging.getLogger(__name__)

__all__ = ["DependentPipelineManager", "change_key"]

# How often a merge that fails without a conflict is tried before the item
# is reported, and how long apart.
MERGE_ATTEMPTS = 3
MERGE_RETRY_DELAY = 10.0

# A job's result that does not fail its item.
_PASSING = {BuildResult.SUCCESS, BuildResult.SKIPPED}


def change_key(change: Change) -> str:
    return f"{change.project} {change.key}"


def chain_digest(digest: int, keys: list[str]) -> int:
    """``digest`` extended by ``keys`` in order, as a walk extends it past
    each passing item."""
    for key in keys:
        digest = hash((digest, key))
    return digest


class DependentPipelineManager(PipelineManager):
    """One dependent pipeline. Called only from the scheduler thread."""

    def __init__(self, pipeline: Any, context: Any) -> None:
        super().__init__(pipeline, context)
        self.queue_of = change_queues(context.layout, pipeline.name)
        self.windows: dict[str, int] = {}
        # Changes this pipeline merged: what items behind needed is in the branch now.
        self._merged: set[int] = set()
        self._merged_keys: set[str] = set()
        # Per queue, the digest of the merged changes the items still carry.
        self._base: dict[str, int] = {}

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

    def inherit(self, old: DependentPipelineManager) -> None:
        """Carry what this pipeline knows over from its manager of the previous
        layout (a reconfigure): windows, and which changes it merged, so the
        items it adopted are not reset for nothing."""
        self.windows.update(old.windows)
        self._merged |= old._merged
        self._merged_keys |= old._merged_keys
        self._base.update(old._base)

    # -- queues and windows ------------------------------------------------
    def queue_name(self, item: QueueItem) -> str:
        return self.queue_of.get(item.change.project, item.change.project)

    def queues(self) -> dict[str, list[QueueItem]]:
        """Queue name -> its items, head first (in the order they entered)."""
        out: dict[str, list[QueueItem]] = {}
        for item in self.items:
            out.setdefault(self.queue_name(item), []).append(item)
        return out

    def window(self, queue: str) -> int:
        """How many items at the head of ``queue`` may run builds (0: no limit)."""
        return self.windows.setdefault(queue, int(self.pipeline.window))

    def _adjust_window(self, queue: str, merged: bool) -> None:
        pipeline = self.pipeline
        window = self.window(queue)
        if window == 0:
            return
        if merged:
            factor = int(pipeline.window_increase_factor)
            if pipeline.window_increase_type == "exponential":
                self.windows[queue] = window * factor
            else:
                self.windows[queue] = window + factor
        else:
            factor = int(pipeline.window_decrease_factor)
            if pipeline.window_decrease_type == "exponential":
                shrunk = window // factor
            else:
                shrunk = window - factor
            self.windows[queue] = max(int(pipeline.window_floor), shrunk)
        if self.windows[queue] != window:
            log.info("%s queue %s: window %d -> %d", self.name, queue, window, self.windows[queue])

    # -- entering, with what a change needs ----------------------------------
    def enqueue_with_needs(
        self, change: Change, selection: Any, received_at: float | None = None
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
        self, change: Change, selection: Any, received_at: float | None, visiting: set[int]
    ) -> QueueItem | None:
        existing = self.find(change)
        if existing is not None:
            return existing
        needed = self._needs(change)
        if needed is None:
            return None
        queue = self.queue_of.get(change.project, change.project)
        for dependency in needed:
            if self.find(dependency) is not None:
                continue
            why = self._cannot_enter(dependency, queue)
            if why:
                log.info(
                    "%s waits in %s: it needs %s, which %s", change, self.name, dependency, why
                )
                return None
        for dependency in needed:
            if self.find(dependency) is None:
                self._enqueue_tree(dependency, self.select(dependency), received_at, visiting)
        item = self.enqueue(change, selection, received_at)
        if item is not None:
            item.needed = needed
        return item

    def _cannot_enter(self, change: Change, queue: str) -> str:
        """Why ``change`` may not be enqueued ahead in ``queue`` now ('' if it may)."""
        if self.queue_of.get(change.project) != queue:
            return f"is not in this change's queue ({queue}) in {self.name}"
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
            log.error("could not ask Gerrit which changes need %s: %s", change, exc)
            return
        for other in waiting:
            queue = self.queue_of.get(change.project, change.project)
            if self.find(other) is not None or self._cannot_enter(other, queue):
                continue
            if self._enqueue_tree(other, self.select(other), None, visiting) is not None:
                self._enqueue_waiting(other, visiting)

    # -- items ---------------------------------------------------------------
    def failing(self, item: QueueItem) -> bool:
        """A voting build ended badly, or Gerrit would not merge the change."""
        if item.merge_failed or item.merge_state == "conflict":
            return True
        return any(b.done and b.voting and b.result not in _PASSING for b in item.builds.values())

    def _reset(self, item: QueueItem, why: str) -> bool:
        """Forget ``item``'s builds (stopping those still running) so it is tested again."""
        if not item.builds:
            return False
        log.info("resetting %s in %s: %s", item.change, self.name, why)
        for build in item.builds.values():
            if not build.done:
                self._cancel(build)
        item.builds.clear()
        return True

    # -- the work --------------------------------------------------------------
    def process(self) -> bool:
        """One walk down every queue: reset what was tested on a state that no
        longer holds, start what may start, report the head when it is done.

        Linear in the queue's length: what an item is tested on is compared
        as a running digest of the keys ahead of it, not as a list.
        """
        changed = False
        for queue, items in self.queues().items():
            # One transaction for the build records a walk writes (a reset
            # writes two per build); the report, which talks to Gerrit, is
            # outside it so no write lock is held meanwhile. Builds go to
            # Gearman once their records are committed, not before.
            with self.context.dispatcher.deferred(), self.context.builds.batch():
                changed = self._walk(queue, items) or changed
            head = next((i for i in items if not i.dequeued), None)
            if head is not None and not head.reporting and self._item_finished(head):
                self._report_head(queue, head)
                changed = True
        return changed

    def _walk(self, queue: str, items: list[QueueItem]) -> bool:
        """Reset, start and drop what the queue's state asks for; True if anything changed."""
        changed = False
        window = self.window(queue)
        digest = self._base.get(queue, 0)
        keys: list[str] = []  # the passing items ahead, for status and logs
        changes: list[Change] = []
        passing: set[tuple[str, int]] = set()
        held_by = ""  # a hold-following-changes job not yet passed ahead
        for position, item in enumerate(items):
            missing = self._missing_need(item, passing)
            if missing:
                self._drop(item, missing)
                changed = True
                continue
            if item.tested_digest != digest:
                if item.tested_digest is not None:
                    before = ", ".join(self._unmerged(item.tested_with)) or "the branch tip"
                    changed = self._reset(item, f"was tested on {before}") or changed
                item.tested_digest = digest
                item.tested_with = list(keys)
                self.context.queue.tested(item)
                item.zuul_ref, item.merge_state, item.merge_conflict = "", "", ""
                item.merge_token, item.merge_errors = "", 0
            if (window == 0 or position < window) and not held_by:
                if self._merged_state_ready(item, changes):
                    changed = self._launch_ready_jobs(item, changes) or changed
            if not self.failing(item):
                held_by = held_by or self._holding(item)
                key = change_key(item.change)
                keys.append(key)
                changes.append(item.change)
                passing.add((item.change.project, item.change.number))
                digest = chain_digest(digest, [key])
        return changed

    def _merged_state_ready(self, item: QueueItem, ahead: list[Change]) -> bool:
        """Whether the merger has made the state ``item`` is tested in; asks it if not.

        Without a merger, workers merge ZUUL_CHANGES themselves: always ready.
        """
        merger = self.context.merger
        if merger is None or item.change.is_ref:
            return True
        if item.merge_state == "retry" and time.time() >= item.merge_retry_at:
            item.merge_state = ""
        if item.merge_state:
            return item.merge_state == "ok"
        item.merge_state = "pending"
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
        if item.dequeued or item.merge_token != token or item.merge_state != "pending":
            return
        if result.ok:
            item.zuul_ref, item.merge_state, item.merge_errors = result.ref, "ok", 0
        elif result.conflict == change_key(item.change):
            log.info("%s does not merge in %s: %s", item.change, self.name, result.error)
            item.merge_state, item.merge_conflict = "conflict", result.error
        elif result.conflict:
            # A change ahead no longer merges onto the branch (it moved): that
            # item finds out at the head, and this one is re-based then.
            log.info("%s waits in %s: %s", item.change, self.name, result.error)
            item.merge_state = "blocked"
        elif item.merge_errors + 1 < MERGE_ATTEMPTS:
            # Not the change's fault (Gerrit out of reach, a disk full): ask again later.
            item.merge_errors += 1
            item.merge_state, item.merge_retry_at = "retry", time.time() + MERGE_RETRY_DELAY
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
            item.merge_state = "conflict"
            item.merge_conflict = f"the merger failed: {result.error}"

    def own_conflict(self, item: QueueItem) -> str:
        return item.merge_conflict or super().own_conflict(item)

    def _item_finished(self, item: QueueItem) -> bool:
        return item.merge_state == "conflict" or super()._item_finished(item)

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
        return [k for k in keys or [] if k not in self._merged_keys]

    def tested_on(self, item: QueueItem) -> list[str]:
        """The changes ahead that the item's builds include and that are not merged yet."""
        return self._unmerged(item.tested_with)

    def _missing_need(self, item: QueueItem, passing: set[tuple[str, int]]) -> Change | None:
        """A change the item needs that is neither merged nor passing ahead of it."""
        for need in item.needed:
            if need.number in self._merged or (need.project, need.number) in passing:
                continue
            return need
        return None

    def _drop(self, item: QueueItem, need: Change) -> None:
        """``item`` cannot merge without ``need``, which failed or left: report, dequeue."""
        log.info("dequeuing %s from %s: it needs %s, which will not merge", item, self.name, need)
        self.remove(item, cancel=True)
        self._send(self.compose.dropped(item.change, need))

    def _report_head(self, queue: str, item: QueueItem) -> None:
        """Send the head's report; it stays at the head until the outcome is
        back (:meth:`_head_reported`), so what is behind it waits to learn
        whether it merged."""
        self.context.queue.reporting(item)
        self._begin_report(item, lambda manager: _head_reported(manager, queue, item))

    def _head_reported(self, queue: str, item: QueueItem) -> None:
        """The head's report is done: it leaves, and the queue re-bases on
        whether it merged."""
        merged = item.change.is_merged and not item.merge_failed
        self._adjust_window(queue, merged)
        self.remove(item, cancel=False)
        for other in self.items:
            if other.merge_state == "blocked" and self.queue_name(other) == queue:
                # What blocked it was ahead, and the branch has changed: ask again.
                other.merge_state = ""
        if merged:
            key = self.remember_merged(item.change)
            # Items behind were tested with this change; it is now in the
            # branch itself, so what they tested is still what will merge:
            # their walk starts from the digest that includes it.
            self._base[queue] = chain_digest(item.tested_digest or 0, [key])


def _head_reported(manager: PipelineManager, queue: str, item: QueueItem) -> None:
    assert isinstance(manager, DependentPipelineManager)
    manager._head_reported(queue, item)
