"""Queue items in the database, so a restarted scheduler restores its pipelines.

The scheduler thread writes a row when an item enters a pipeline, updates
what it is tested with and its position as they change, marks it just
before its report is sent, and deletes it when the item leaves. Build
records point at their item (``builds.item_uuid``), so the row and the
builds table together are everything :mod:`gatekeeper.scheduler.restore`
needs.

Writes go through the :class:`BuildStore`'s session, so the writes of one
gate walk (resets, dispatches, tested-with) are one transaction.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

from sqlalchemy import delete, func, select, update

from gatekeeper.db.builds import BuildStore
from gatekeeper.db.nodes import NodeStore
from gatekeeper.db.tables import BuildRecord, QueueItemRecord
from gatekeeper.model.build import BuildResult
from gatekeeper.model.change import QueueItem

log = logging.getLogger(__name__)


class ItemStore:
    """The durable record of every pipeline's queue items (their rows).
    Owned by the scheduler thread."""

    def __init__(self, builds: BuildStore) -> None:
        self.builds = builds
        # Next position per pipeline; read from the table on first use.
        self._next: dict[str, int] = {}

    def _position(self, pipeline: str) -> int:
        if pipeline not in self._next:
            with self.builds._session() as session:
                top = session.scalar(
                    select(func.max(QueueItemRecord.position)).where(
                        QueueItemRecord.pipeline == pipeline
                    )
                )
            self._next[pipeline] = 0 if top is None else int(top) + 1
        position = self._next[pipeline]
        self._next[pipeline] = position + 1
        return position

    def added(self, item: QueueItem) -> None:
        """``item`` entered its pipeline, at the end."""
        change = item.change
        record = QueueItemRecord(
            uuid=item.uuid,
            pipeline=item.pipeline,
            position=self._position(item.pipeline),
            project=change.project,
            branch=change.branch,
            change=change.number,
            patchset=change.patchset,
            ref=change.ref,
            old_rev=change.old_rev,
            new_rev=change.new_rev,
            enqueued_at=item.enqueued_at,
            event_received_at=item.event_received_at,
            tested_with=None if item.tested_with is None else json.dumps(item.tested_with),
            tested_since=None,
            reporting_since=None,
        )
        with self.builds._session() as session:
            session.add(record)

    def tested(self, item: QueueItem) -> None:
        """What ``item``'s builds are tested on changed: the builds it had
        before (a reset forgot them) no longer count."""
        with self.builds._session() as session:
            session.execute(
                update(QueueItemRecord)
                .where(QueueItemRecord.uuid == item.uuid)
                .values(tested_with=json.dumps(item.tested_with or []), tested_since=time.time())
            )

    def reporting(self, item: QueueItem) -> None:
        """``item``'s report is about to be sent."""
        with self.builds._session() as session:
            session.execute(
                update(QueueItemRecord)
                .where(QueueItemRecord.uuid == item.uuid)
                .values(reporting_since=time.time())
            )

    def removed(self, item: QueueItem) -> None:
        """``item`` left its pipeline."""
        self.forget(item.uuid)

    def reorder(self, pipeline: str, items: Iterable[QueueItem]) -> None:
        """The pipeline's items are now in this order (after a promote)."""
        ordered = list(items)
        with self.builds._session() as session:
            for position, item in enumerate(ordered):
                session.execute(
                    update(QueueItemRecord)
                    .where(QueueItemRecord.uuid == item.uuid)
                    .values(position=position)
                )
        self._next[pipeline] = len(ordered)

    def load(self) -> dict[str, list[QueueItemRecord]]:
        """Pipeline name -> its item rows, in queue order."""
        out: dict[str, list[QueueItemRecord]] = {}
        with self.builds._session() as session:
            query = select(QueueItemRecord).order_by(
                QueueItemRecord.pipeline, QueueItemRecord.position
            )
            for record in session.scalars(query):
                out.setdefault(record.pipeline, []).append(record)
        return out

    def builds_of(self, item_uuid: str) -> list[BuildRecord]:
        """Every build record of an item, oldest first."""
        with self.builds._session() as session:
            query = (
                select(BuildRecord)
                .where(BuildRecord.item_uuid == item_uuid)
                .order_by(BuildRecord.dispatched_at, BuildRecord.attempt)
            )
            return list(session.scalars(query))

    def forget(self, item_uuid: str) -> None:
        """Drop an item's row (it left, or restore found it has nothing left to do)."""
        with self.builds._session() as session:
            session.execute(delete(QueueItemRecord).where(QueueItemRecord.uuid == item_uuid))

    def lose(self, records: list[BuildRecord]) -> None:
        """Builds no one runs any more (their worker died unseen): CANCELED, so
        a worker finding one still queued in Gearman skips it, and the nodes
        they held deleted."""
        if not records:
            return
        now = time.time()
        for record in records:
            log.info("build %s of %s was lost; it will run again", record.uuid[:7], record.job)
            self.builds.completed(record.uuid, BuildResult.CANCELED.value, now)
        NodeStore(self.builds.db).discard_used(
            [r.uuid for r in records], "its build was lost in a restart"
        )
