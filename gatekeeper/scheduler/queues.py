"""The change queues of a dependent pipeline (a gate).

Projects that run a job in common must merge in one order, so they share a
change queue: changes to nova and glance that both run the devstack job are
tested one on top of the other. Sharing is transitive. A ``queue-name`` on
a job names the queue its projects share (and joins projects that have
nothing else in common); otherwise a queue is named after its first project
in the layout.

A :class:`ChangeQueue` holds its items in the order they will merge, its
window, and the base its items are tested on. What an item is tested on is
kept as a digest (:func:`chain_digest`) so that :meth:`ChangeQueue.rebase`,
the walk that re-bases every item on what is ahead of it now, stays linear
in the queue's length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from gatekeeper.config.layout import Layout
from gatekeeper.config.layout_schema import PipelineConfig
from gatekeeper.model.change import Change, MergeState, QueueItem

log = logging.getLogger(__name__)

__all__ = [
    "ChangeQueue",
    "Rebase",
    "build_change_queues",
    "chain_digest",
    "change_key",
    "queue_names",
]

#: The digest of an item whose builds test a state that will not merge: a
#: walk's digest never equals it (CPython's ``hash`` never returns -1), so
#: the next :meth:`ChangeQueue.rebase` re-tests the item.
STALE = -1


def change_key(change: Change) -> str:
    """How a change is named in ``QueueItem.tested_with``: ``project number,patchset``."""
    return f"{change.project} {change.key}"


def chain_digest(digest: int, keys: list[str]) -> int:
    """``digest`` extended by ``keys`` in order, as a walk extends it past
    each passing item."""
    for key in keys:
        digest = hash((digest, key))
    return digest


class ChangeQueue:
    """Items of a gate that merge in one order, head first. Owned by the
    scheduler thread, through its :class:`DependentPipelineManager`.

    Besides its items it carries, from one walk to the next and over a
    reconfiguration, its window and its base.
    """

    def __init__(self, name: str, projects: Iterable[str], pipeline: PipelineConfig) -> None:
        self.name = name
        self.projects = tuple(projects)
        #: Read for the window rules; a reconfiguration gives a new one.
        self.pipeline = pipeline
        self.items: list[QueueItem] = []
        # None while the layout's ``window`` holds: a merge or a failure
        # moves it, and from then on the queue keeps its own.
        self._window: int | None = None
        #: Where each walk's digest starts: the digest of what merged from
        #: this queue, as the items behind were tested on it (see :meth:`rebase`).
        self.base = 0

    def __repr__(self) -> str:
        return f"<ChangeQueue {self.name} of {self.pipeline.name}: {len(self.items)} items>"

    @property
    def window(self) -> int:
        """How many items at the head may run builds (0: no limit)."""
        return self.pipeline.window if self._window is None else self._window

    def carry_over(self, old: ChangeQueue) -> None:
        """Take what the queue of the same name under the previous layout
        knew: its window and its base (a reconfiguration goes on from them)."""
        self._window = old._window
        self.base = old.base

    # -- entering and leaving ----------------------------------------------
    def discard(self, item: QueueItem) -> None:
        """Take ``item`` out, wherever it is (the identical object: items
        compare by value, which is slower and not what is meant)."""
        for index, queued in enumerate(self.items):
            if queued is item:
                del self.items[index]
                return

    def promote(self, items: list[QueueItem]) -> None:
        """Move ``items`` (of this queue) to the head, in that order, behind
        the items whose report is out (they may be merging now: nothing may
        go ahead of them untested with them); the next :meth:`rebase`
        re-tests every item whose items ahead changed."""
        reporting = [i for i in self.items if i.reporting]
        moved = set(map(id, [*reporting, *items]))
        promoted = [i for i in items if not i.reporting]
        self.items = [*reporting, *promoted, *(i for i in self.items if id(i) not in moved)]

    def head_left(self, item: QueueItem, merged_key: str | None) -> None:
        """The head ``item`` reported and was taken out of :attr:`items`.

        If it merged (``merged_key``: its :func:`change_key`), it becomes part
        of the base: the items behind were tested on top of it and it is in
        the branch now, so their builds still test what will merge. The
        window grows. If it did not merge, the window shrinks and the next
        :meth:`rebase` re-tests the items behind without it.

        Either way the branch may have moved: items whose merge waited on a
        change ahead (:attr:`MergeState.BLOCKED`) ask the merger again.
        """
        self._resize_window(merged_key is not None)
        for other in self.items:
            if other.merge_state == MergeState.BLOCKED:
                other.merge_state = MergeState.UNASKED
        if merged_key is not None:
            self.base = chain_digest(item.tested_digest or 0, [merged_key])

    def _resize_window(self, merged: bool) -> None:
        pipeline = self.pipeline
        window = self.window
        if window == 0:
            return
        if merged:
            factor = pipeline.window_increase_factor
            if pipeline.window_increase_type == "exponential":
                resized = window * factor
            else:
                resized = window + factor
        else:
            factor = pipeline.window_decrease_factor
            if pipeline.window_decrease_type == "exponential":
                shrunk = window // factor
            else:
                shrunk = window - factor
            resized = max(pipeline.window_floor, shrunk)
        self._window = resized
        if resized != window:
            log.info("%s queue %s: window %d -> %d", pipeline.name, self.name, window, resized)

    # -- re-basing ---------------------------------------------------------
    def rebase(self) -> Rebase:
        """Start a walk that re-bases this queue's items, head first.

        Every item is tested on top of the queue's base and of the items
        ahead of it that are not failing, in order. The walk hands each item
        to :meth:`Rebase.place`, which re-bases it when what is ahead of it
        changed, and each item that passes to :meth:`Rebase.passed`, which
        puts it under the items behind. So the items behind a failing item
        are re-tested without it (a failure ahead, a change dequeued, a
        promote all re-base the items behind), and an item that merged is
        part of the base (:meth:`head_left`), so the items tested on top of
        it keep their builds. After a restart, :meth:`restore_tested` puts
        the items' recorded states in the same terms before the first walk.

        Linear in the queue's length: what an item was tested on is compared
        as a running digest of the keys ahead of it, not as a list.
        """
        return Rebase(self.base)

    def restore_tested(self, merged: Callable[[str], bool]) -> None:
        """After a restart: set each item's digest from what it was recorded
        as tested with, so the first :meth:`rebase` re-tests exactly the items
        whose tested state no longer holds.

        A change it was tested with that is still ahead of it counts; one
        that ``merged`` (given its key) is in the branch now, which is the
        base of a queue just restored; anything else (a change that failed
        and left) means its builds test a state that will not merge.
        """
        ahead: set[str] = set()
        for item in self.items:
            if item.tested_with is not None:
                kept: list[str] = []
                still_valid = True
                for key in item.tested_with:
                    if key in ahead:
                        kept.append(key)
                    elif not merged(key):
                        still_valid = False
                item.tested_digest = chain_digest(self.base, kept) if still_valid else STALE
            ahead.add(change_key(item.change))


class Rebase:
    """One walk down a change queue, head first (:meth:`ChangeQueue.rebase`):
    what the items walked so far make the next one tested on."""

    __slots__ = ("_digest", "_passing", "ahead", "keys")

    def __init__(self, base: int) -> None:
        self._digest = base
        #: The changes of the passing items walked so far, head first: what
        #: the next item is tested on top of. The walk extends this list: copy
        #: it to keep it.
        self.ahead: list[Change] = []
        #: Their keys (:func:`change_key`), for ``QueueItem.tested_with``.
        self.keys: list[str] = []
        self._passing: set[tuple[str, int]] = set()

    def has_ahead(self, change: Change) -> bool:
        """Whether ``change`` is one of the passing items walked so far."""
        return (change.project, change.number) in self._passing

    def place(self, item: QueueItem) -> list[str] | None:
        """Re-base ``item`` on the passing items walked so far, if its builds
        test anything else.

        Returns None if they still test what will merge. Otherwise the item
        is re-based now: its ``tested_with`` and digest say what it is tested
        on from now on (the caller records them), the merger's work for the
        old state is forgotten, and the returned list is what its builds
        tested before (empty: the branch tip, or nothing yet): the caller
        resets them.
        """
        if item.tested_digest == self._digest:
            return None
        before = item.tested_with or []
        item.tested_digest = self._digest
        item.tested_with = list(self.keys)
        item.forget_merge()
        return before

    def passed(self, item: QueueItem) -> None:
        """``item`` is not failing: the items behind are tested on top of it."""
        key = change_key(item.change)
        self.keys.append(key)
        self.ahead.append(item.change)
        self._passing.add((item.change.project, item.change.number))
        self._digest = hash((self._digest, key))  # chain_digest, without a list per item


def queue_names(layout: Layout, pipeline: str) -> dict[str, str]:
    """Project name -> the name of its change queue in ``pipeline``.

    Projects without jobs in ``pipeline`` are absent.

    :raises ConfigError: a template a project uses cannot be expanded.
    """
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    def union(a: str, b: str) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[rb] = ra

    by_job: dict[str, str] = {}
    by_queue: dict[str, str] = {}
    named: dict[str, str] = {}  # a project -> the queue-name one of its jobs gives
    order: list[str] = []
    for project in layout.projects:
        trees = layout.jobs_for(project.name, pipeline)
        if not trees:
            continue
        parent[project.name] = project.name
        order.append(project.name)
        for tree in trees:
            for job in tree.walk():
                first = by_job.setdefault(job.name, project.name)
                union(first, project.name)
                queue_name = layout.job(job.name).queue_name
                if queue_name:
                    named.setdefault(project.name, queue_name)
                    union(by_queue.setdefault(queue_name, project.name), project.name)
    names: dict[str, str] = {}
    for name in order:  # the first queue-name in the group, in file order
        if name in named:
            names.setdefault(root(name), named[name])
    for name in order:  # else the group's first project
        names.setdefault(root(name), name)
    return {name: names[root(name)] for name in order}


def build_change_queues(layout: Layout, pipeline: PipelineConfig) -> list[ChangeQueue]:
    """The change queues of ``pipeline`` under ``layout``, empty, in the
    layout's order of their first project.

    :raises ConfigError: a template a project uses cannot be expanded.
    """
    members: dict[str, list[str]] = {}
    for project, name in queue_names(layout, pipeline.name).items():
        members.setdefault(name, []).append(project)
    return [ChangeQueue(name, projects, pipeline) for name, projects in members.items()]
