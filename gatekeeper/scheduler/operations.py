"""What operators ask of a running scheduler: enqueue, dequeue, promote, status.

Every function here runs in the scheduler thread (through
:meth:`Scheduler.call`), so it may read and change queues freely. Requests
arrive over Gearman (:mod:`gatekeeper.dispatch.admin`) from the
``gatekeeper enqueue|dequeue|promote|status`` commands.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any, Protocol

from gatekeeper.errors import OperationError
from gatekeeper.model.build import Build, BuildResult
from gatekeeper.model.change import MergeState, QueueItem
from gatekeeper.scheduler.context import SchedulerContext
from gatekeeper.scheduler.dependent import DependentPipelineManager
from gatekeeper.scheduler.manager import PipelineManager
from gatekeeper.scheduler.queues import change_key

__all__ = ["RunningScheduler", "dequeue", "enqueue", "parse_change", "promote", "status"]


class RunningScheduler(Protocol):
    """What an operation reads of the scheduler: its managers and their context.

    A protocol rather than the :class:`~gatekeeper.scheduler.scheduler.Scheduler`
    itself, which sits above this module (the app hands the scheduler in).
    """

    @property
    def managers(self) -> Sequence[PipelineManager]: ...

    @property
    def context(self) -> SchedulerContext: ...

    #: When the layout in use was loaded (epoch seconds).
    last_reconfigured: float

    def queue_lengths(self) -> dict[str, int]: ...


_CHANGE = re.compile(r"(\d+),(\d+)")
#: Results that do not fail an item (as the gate counts them).
_PASSING = frozenset({BuildResult.SUCCESS, BuildResult.SKIPPED})


def parse_change(text: str) -> tuple[int, int]:
    """``"123,2"`` -> (123, 2).

    :raises OperationError: not ``NUMBER,PATCHSET``.
    """
    match = _CHANGE.fullmatch(text.strip())
    if not match:
        raise OperationError(f"expected a change as NUMBER,PATCHSET (like 123,2), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _manager(scheduler: RunningScheduler, pipeline: str) -> PipelineManager:
    for manager in scheduler.managers:
        if manager.name == pipeline:
            return manager
    names = ", ".join(m.name for m in scheduler.managers)
    raise OperationError(f"no pipeline {pipeline!r} (the layout has {names})")


def _item(manager: PipelineManager, project: str, number: int, patchset: int) -> QueueItem:
    for item in manager.items:
        change = item.change
        if (change.project, change.number, change.patchset) == (project, number, patchset):
            return item
    raise OperationError(f"{project} {number},{patchset} is not in {manager.name}")


def enqueue(scheduler: RunningScheduler, pipeline: str, project: str, change: str) -> str:
    """Put a change in a pipeline as if its trigger had fired (requirements not checked).

    :raises OperationError: no such pipeline or change, or it cannot be queued.
    :raises GerritError: Gerrit could not be asked about the change.
    """
    manager = _manager(scheduler, pipeline)
    number, patchset = parse_change(change)
    context = scheduler.context
    if not context.layout.jobs_for(project, pipeline):
        raise OperationError(f"{project} runs no jobs in {pipeline}")
    found = context.source.get_change(number)
    if found is None:
        raise OperationError(f"change {number} is not in Gerrit")
    if found.project != project:
        raise OperationError(f"change {number} belongs to {found.project}, not {project}")
    if found.patchset != patchset:
        raise OperationError(
            f"{number},{patchset} is not the current patchset (that is {found.key})"
        )
    if not found.is_open:
        raise OperationError(f"{found} is {found.status}")
    if manager.enqueue(found, manager.select(found), time.monotonic()) is None:
        raise OperationError(f"{found} is already in {pipeline}")
    return f"enqueued {found} in {pipeline}"


def dequeue(scheduler: RunningScheduler, pipeline: str, project: str, change: str) -> str:
    """Take a change out of a pipeline, stopping its builds; nothing is reported.

    :raises OperationError: no such pipeline, or the change is not in it.
    """
    manager = _manager(scheduler, pipeline)
    number, patchset = parse_change(change)
    item = _item(manager, project, number, patchset)
    manager.remove(item, cancel=True)
    return f"dequeued {item.change} from {pipeline}"


def promote(scheduler: RunningScheduler, pipeline: str, changes: list[str]) -> str:
    """Move changes to the head of their queues, in the order given.

    The items behind are tested again on top of the new order.

    :raises OperationError: not a dependent pipeline, or a change is not in it.
    """
    manager = _manager(scheduler, pipeline)
    if not isinstance(manager, DependentPipelineManager):
        raise OperationError(f"{pipeline} is not a dependent pipeline: its order means nothing")
    promoted: list[QueueItem] = []
    for text in changes:
        number, patchset = parse_change(text)
        matches = [
            i for i in manager.items if (i.change.number, i.change.patchset) == (number, patchset)
        ]
        if not matches:
            raise OperationError(f"{number},{patchset} is not in {pipeline}")
        promoted.extend(i for i in matches if i not in promoted)
    manager.promote(promoted)
    scheduler.context.item_store.reorder(manager.name, manager.items)
    return f"promoted {', '.join(str(i.change) for i in promoted)} in {pipeline}"


def _build_status(build: Build, now: float) -> dict[str, Any]:
    return {
        "job": build.job,
        "uuid": build.uuid,
        "result": build.result.value if build.result else None,
        "voting": build.voting,
        "url": build.url,
        "node": build.node,
        "worker": build.worker,
        "started_at": build.started_at,
        "elapsed": (now - build.started_at) if build.started_at and not build.done else None,
        "dispatched_at": build.dispatched_at,
        "ended_at": build.ended_at,
        "canceled": build.canceled,
        "provider": build.provider,
    }


def _failing_reasons(manager: PipelineManager, item: QueueItem) -> list[str]:
    """Why the item will not merge as things stand, in words (empty: it may)."""
    reasons = []
    if item.merge_state == MergeState.CONFLICT:
        reasons.append("it has a merge conflict")
    if item.merge_failed:
        reasons.append("it did not merge")
    if any(b.done and b.voting and b.result not in _PASSING for b in item.builds.values()):
        reasons.append("at least one job failed")
    return reasons


def _eta(item: QueueItem, jobs: list[str], durations: dict[str, float | None]) -> float | None:
    """Seconds until every job of the item is done, from recent durations (None: unknown)."""
    now = time.time()
    remaining = 0.0
    for job in jobs:
        build = item.builds.get(job)
        if build is not None and build.done:
            continue
        expected = durations.get(job)
        if expected is None:
            return None
        elapsed = now - build.started_at if build is not None and build.started_at else 0.0
        remaining = max(remaining, expected - elapsed)
    return max(0.0, remaining)


def status(scheduler: RunningScheduler) -> dict[str, Any]:
    """Every pipeline, queue and item, with builds and an ETA, as plain JSON data.

    The one snapshot of the scheduler's live state: ``gatekeeper status``
    prints it and the web turns it into Zuul's ``status.json``. A pure read,
    made in the scheduler thread.
    """
    now = time.time()
    layout = scheduler.context.layout
    managers = list(scheduler.managers)
    # Each item's jobs, walked once (its job trees) for the estimates and the items.
    jobs_of = {id(item): m.job_names(item) for m in managers for item in m.items}
    every_job = {job for jobs in jobs_of.values() for job in jobs}
    durations = scheduler.context.builds.average_durations(every_job)
    pipelines: list[dict[str, Any]] = []
    for manager in managers:
        empty: list[dict[str, Any]] = []
        if isinstance(manager, DependentPipelineManager):
            queues = {q.name: list(q.items) for q in manager.change_queues if q.items}
            windows = {q.name: q.window for q in manager.change_queues if q.items}
            empty = [
                {"name": q.name, "window": q.window} for q in manager.change_queues if not q.items
            ]
        else:
            queues = {manager.name: list(manager.items)} if manager.items else {}
            windows = {}
        rendered = []
        for name, items in queues.items():
            entries = []
            for position, item in enumerate(items):
                jobs = jobs_of[id(item)]
                change = item.change
                entries.append(
                    {
                        "position": position,
                        "project": change.project,
                        "change": None if change.is_ref else change.key,
                        "ref": change.ref,
                        "url": change.url,
                        "enqueued_at": item.enqueued_at,
                        "tested_with": manager.tested_on(item)
                        if isinstance(manager, DependentPipelineManager)
                        else [f"{c.project} {c.key}" for c in item.needed],
                        "failing": isinstance(manager, DependentPipelineManager)
                        and manager.failing(item),
                        "failing_reasons": _failing_reasons(manager, item),
                        # The merger's ref the builds test, and how its merge stands.
                        "zuul_ref": item.zuul_ref,
                        "merge": item.merge_state,
                        "active": name not in windows
                        or windows[name] == 0
                        or position < windows[name],
                        "eta": _eta(item, jobs, durations),
                        "jobs": jobs,
                        "builds": [_build_status(b, now) for b in item.builds.values()],
                        # Job -> the mutex it waits for (not dispatched yet).
                        "waiting_for_mutex": scheduler.context.mutexes.waiting_of(item.uuid),
                        "uuid": item.uuid,
                        "key": change_key(change),
                        "branch": change.branch,
                        "subject": change.subject,
                        "owner": change.owner,
                        "newrev": change.new_rev,
                    }
                )
            rendered.append({"name": name, "window": windows.get(name), "items": entries})
        pipelines.append(
            {
                "name": manager.name,
                "manager": manager.pipeline.manager,
                "description": manager.pipeline.description,
                "queues": rendered,
                # A gate's change queues with nothing in them (Zuul lists them too).
                "empty_queues": empty,
                # disable-after-consecutive-failures: disabled, and the run so far.
                **manager.health.describe(),
            }
        )
    return {
        "time": now,
        "pipelines": pipelines,
        # Build starts and results not believed since start (the audit log has each).
        "refused_results": scheduler.context.dispatcher.refused_results,
        # What every job queued is: how it votes, its node, and how long its
        # recent successful builds took (seconds; None: none yet).
        "job_info": {
            job: {
                "voting": layout.job(job).voting,
                "node": layout.job(job).node,
                # Zuul v2.5's job tags: informational (parameter functions read them too).
                "tags": layout.job(job).tags,
                "estimated": durations.get(job),
            }
            for job in sorted(every_job)
        },
        "event_queues": scheduler.queue_lengths(),
        "last_reconfigured": scheduler.last_reconfigured,
    }
