"""Putting the queues back after a restart, from the database.

Every queued item has a row (:mod:`gatekeeper.db.items`) and every build a
record pointing at its item. At start-up, before it reads any event, the
scheduler rebuilds each pipeline's items in their order:

- the change is read again from Gerrit: a change abandoned, merged or
  given a new patchset meanwhile leaves the queue, as it would have if the
  scheduler had been running; Gerrit out of reach does not lose the item,
  which is restored from its row alone;
- an item whose report had started is looked up in Gerrit: if the report
  (or, in a gate, the merge) is there it is not sent again;
- a build that ended keeps its result; a build still running elsewhere (its
  worker refreshed the heartbeat recently, and it is not a worker of this
  process, which has just started; and, where results are authenticated,
  the previous scheduler believed its signed start, so the row names the
  worker's certificate in ``worker_identity``) is re-attached and watched in
  the database; any other build is lost: its record is marked CANCELED (so a
  worker that still finds it queued in Gearman skips it), its node is
  deleted, and the item runs the job again;
- in a gate, what each item was tested with is compared with the restored
  order (:meth:`ChangeQueue.restore_tested`): changes that merged meanwhile
  are part of the branch now, and anything else that changed re-bases the
  item on the first walk (:meth:`ChangeQueue.rebase`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gatekeeper.db.tables import BuildRecord, QueueItemRecord
from gatekeeper.errors import GatekeeperError, OperationError
from gatekeeper.gerrit.source import GerritSource, comments_since
from gatekeeper.model.build import Build, BuildResult
from gatekeeper.model.change import Change, QueueItem, change_ref
from gatekeeper.model.outside import shown
from gatekeeper.model.results import Recognised
from gatekeeper.scheduler.context import SchedulerContext
from gatekeeper.scheduler.dependencies import needed_changes
from gatekeeper.scheduler.dependent import DependentPipelineManager
from gatekeeper.scheduler.reports import RECOGNISED_RESULTS

if TYPE_CHECKING:
    from gatekeeper.scheduler.manager import PipelineManager

log = logging.getLogger(__name__)

#: A running build whose heartbeat is older than this has lost its worker.
HEARTBEAT_STALE = 30.0

# Gerrit's timestamps are whole seconds: a report sent in the same second as
# it was marked may carry a timestamp up to a second earlier.
_CLOCK_SLACK = 1.0


@dataclass
class RestoreSummary:
    """What a restore found, for the log and for tests."""

    restored: int = 0
    attached: int = 0
    lost: int = 0
    finished: int = 0
    #: Items that left because Gerrit says they are done with (merged,
    #: abandoned, a new patchset) or because their report had been sent.
    dropped: list[str] = field(default_factory=list)


def restore_queues(
    context: SchedulerContext,
    managers: Sequence[PipelineManager],
    attach: Callable[[Build], None],
    local_workers: frozenset[str],
) -> RestoreSummary:
    """Rebuild every pipeline's items from the database (scheduler thread).

    ``attach`` is handed each build still running elsewhere, to be watched
    through its record; builds of ``local_workers`` are not running any more.
    """
    summary = RestoreSummary()
    by_name = {m.name: m for m in managers}
    for pipeline, rows in context.item_store.load().items():
        manager = by_name.get(pipeline)
        if manager is None:
            for row in rows:
                log.warning(
                    "restore: pipeline %s is gone from the layout: %s dropped", pipeline, row.uuid
                )
                context.item_store.lose(
                    [b for b in context.item_store.builds_of(row.uuid) if b.result is None]
                )
                context.item_store.forget(row.uuid)
                summary.dropped.append(f"{row.project} {row.change},{row.patchset}")
            continue
        for row in rows:
            try:
                item = _restore_item(context, manager, row, attach, local_workers, summary)
            except Exception:
                # One odd row must not keep every other queue from coming back.
                log.exception("restore: item %s of %s could not be restored", row.uuid, pipeline)
                continue
            if item is not None:
                manager.append(item)
                summary.restored += 1
                # Its running builds hold their jobs' mutexes again.
                mutex_of = {j: m for j in item.builds if (m := context.layout.job(j).mutex)}
                context.mutexes.retake(item.builds.values(), mutex_of)
        if isinstance(manager, DependentPipelineManager):
            _restore_tested_on(context.source, manager)
    if summary.restored or summary.dropped:
        log.info(
            "restored %d queued items (%d builds re-attached, %d lost and to be run again, "
            "%d finished); left out: %s",
            summary.restored,
            summary.attached,
            summary.lost,
            summary.finished,
            ", ".join(summary.dropped) or "none",
        )
    return summary


def _restore_item(
    context: SchedulerContext,
    manager: PipelineManager,
    row: QueueItemRecord,
    attach: Callable[[Build], None],
    local_workers: frozenset[str],
    summary: RestoreSummary,
) -> QueueItem | None:
    label = (
        f"{row.project} {row.change},{row.patchset}" if row.change else f"{row.project} {row.ref}"
    )
    change, current = _change_for(context.source, row)
    records = context.item_store.builds_of(row.uuid)

    def leave(why: str) -> None:
        log.info("restore: %s leaves %s: %s", label, manager.name, shown(why))
        context.item_store.lose([b for b in records if b.result is None])
        context.item_store.forget(row.uuid)
        summary.dropped.append(label)

    if current is not None:
        if row.reporting_since is not None and _was_reported(context.source, manager, row, current):
            if isinstance(manager, DependentPipelineManager) and current.is_merged:
                manager.remember_merged(current)
            leave("its report was sent before the restart")
            return None
        if not current.is_open:
            leave(f"it is {current.status} in Gerrit")
            return None
        if current.patchset != row.patchset and manager.pipeline.dequeue_on_new_patchset:
            leave(f"patchset {current.patchset} replaced it")
            return None
    item = QueueItem(
        change=change,
        pipeline=manager.name,
        uuid=row.uuid,
        enqueued_at=row.enqueued_at,
        event_received_at=row.event_received_at,
    )
    item.tested_with = None if row.tested_with is None else list(json.loads(row.tested_with))
    item.job_trees = list(manager.select(change).trees)
    if current is not None and not change.is_ref and not manager.pipeline.ignore_dependencies:
        try:
            item.needed = needed_changes(context.source, change)
        except (OperationError, GatekeeperError) as exc:
            log.warning(
                "restore: what %s needs is unknown (%s); restored without", label, shown(exc)
            )
    _restore_builds(context, manager, item, row, records, attach, local_workers, summary)
    return item


def _change_for(source: GerritSource, row: QueueItemRecord) -> tuple[Change, Change | None]:
    """The item's change, and what Gerrit says of it now (None: not asked, or out of reach)."""
    if not row.change:
        change = Change.ref_update(row.project, row.branch, row.ref, row.old_rev, row.new_rev)
        return change, None
    from_row = Change(
        project=row.project,
        branch=row.branch,
        number=row.change,
        patchset=row.patchset,
        ref=change_ref(row.change, row.patchset),
    )
    try:
        current = source.get_change(row.change)
    except GatekeeperError as exc:
        log.warning(
            "restore: Gerrit could not be asked about change %d (%s): restored as recorded",
            row.change,
            shown(exc),
        )
        return from_row, None
    if current is None:
        return from_row, None
    if current.patchset == row.patchset:
        return current, current
    # Still queued at an older patchset (the pipeline keeps those): test
    # what was enqueued.
    from_row.change_id, from_row.subject, from_row.url = (
        current.change_id,
        current.subject,
        current.url,
    )
    from_row.is_current_patchset = False
    return from_row, current


def _was_reported(
    source: GerritSource, manager: PipelineManager, row: QueueItemRecord, current: Change
) -> bool:
    """Whether the report marked at ``row.reporting_since`` reached Gerrit."""
    if manager.dependent and current.is_merged:
        return True
    assert row.reporting_since is not None
    connection = source.connection
    try:
        found = connection.query_comments(int(row.change))
    except GatekeeperError as exc:
        log.warning("restore: could not read the comments of %s: %s", row.change, shown(exc))
        return False
    # The pipeline's own report names it; a merge failure report carries the
    # pipeline's merge-failure headline. Other comments by gatekeeper (another
    # pipeline's report, a start message) are not this report.
    marks = [f"({manager.name} pipeline)"]
    marks.append(manager.compose.merge_failure_headline().strip().splitlines()[0])
    since = row.reporting_since - _CLOCK_SLACK
    mine = comments_since(found, connection.config.user, since) if found else iter(())
    return any(mark in text for text in mine for mark in marks)


def _restore_builds(
    context: SchedulerContext,
    manager: PipelineManager,
    item: QueueItem,
    row: QueueItemRecord,
    records: list[BuildRecord],
    attach: Callable[[Build], None],
    local_workers: frozenset[str],
    summary: RestoreSummary,
) -> None:
    """Give ``item`` the latest build of each of its jobs that still counts."""
    layout = context.layout
    wanted = set(manager.job_names(item))
    latest: dict[str, BuildRecord] = {}
    since = row.tested_since
    for record in records:  # oldest first
        if record.result == BuildResult.CANCELED.value or record.job not in wanted:
            continue
        if since is not None and record.dispatched_at < since:
            continue  # tested another state; a reset forgot it
        latest[record.job] = record
    for job, record in list(latest.items()):
        # Aborted by a worker that was shutting down, not by this scheduler
        # (whose cancels are CANCELED): not the change's fault; run it again.
        if record.result == BuildResult.ABORTED.value:
            del latest[job]
    now = time.time()
    lost: list[BuildRecord] = []
    for job, record in latest.items():
        build = Build(
            job=job,
            item_uuid=item.uuid,
            uuid=record.uuid,
            voting=bool(layout.job(job).voting),
            url=record.log_url,
            node=record.node,
            provider=record.provider,
            worker=record.worker,
            worker_identity=record.worker_identity,
            started_at=record.start_time,
            ended_at=record.end_time,
            dispatched_at=record.dispatched_at,
        )
        if record.result is not None:
            build.result = BuildResult.read(record.result)
            build.recognised = _recognised(context, build)
            item.builds[job] = build
            summary.finished += 1
            continue
        # A start nobody verified may be anyone's: the build runs again.
        verified = bool(record.worker_identity) or context.dispatcher.verifier is None
        alive = (
            record.heartbeat is not None
            and now - record.heartbeat < HEARTBEAT_STALE
            and record.worker not in local_workers
            and verified
        )
        if alive:
            item.builds[job] = build
            attach(build)
            summary.attached += 1
        else:
            lost.append(record)
    if lost:
        summary.lost += len(lost)
        context.item_store.lose(lost)


def _recognised(context: SchedulerContext, build: Build) -> list[Recognised]:
    """The known failures the worker found in a failed build's logs (its
    report names them); none when they cannot be read: the report goes out
    without them rather than not at all."""
    if context.recognised_of is None or build.result not in RECOGNISED_RESULTS:
        return []
    try:
        return context.recognised_of(build.uuid)
    except Exception:
        log.exception("build %s: could not read its known failures", build.uuid)
        return []


def _restore_tested_on(source: GerritSource, manager: DependentPipelineManager) -> None:
    """Put what each gate item was recorded as tested with in the terms of its
    queue's re-basing, so the first walk re-tests exactly the items whose
    tested state no longer holds."""

    def merged(key: str) -> bool:
        return manager.has_merged(key) or _merged(source, key, manager)

    for queue in manager.change_queues:
        queue.restore_tested(merged)


def _merged(source: GerritSource, key: str, manager: DependentPipelineManager) -> bool:
    """Whether the change named by ``key`` (``project number,patchset``) has merged."""
    try:
        number = int(key.rsplit(" ", 1)[1].split(",")[0])
        change = source.get_change(number)
    except (ValueError, IndexError, GatekeeperError):
        return False
    if change is None or not change.is_merged:
        return False
    manager.remember_merged(change, key)
    return True
