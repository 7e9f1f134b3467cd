"""Build records: what ran where, when, and how it ended."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy import select
from sqlalchemy.orm import Session

from gatekeeper.db.engine import Database
from gatekeeper.db.tables import BuildRecord

log = logging.getLogger(__name__)


class BuildStore:
    """Writes and reads build records. Owned by the scheduler thread.

    Every method is its own transaction, unless the calling thread is inside
    :meth:`batch`; records returned are detached copies, safe to read after
    the session is gone.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._local = threading.local()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make this thread's writes until the block ends one transaction.

        A gate reset stops and starts builds for every item behind the
        failure: one commit for the pass instead of two per build (each a
        disk sync on SQLite). Other threads keep their own transactions.
        """
        if getattr(self._local, "session", None) is not None:
            yield
            return
        with self._session() as session:
            self._local.session = session
            try:
                yield
            finally:
                self._local.session = None

    def _session(self) -> AbstractContextManager[Session]:
        session = getattr(self._local, "session", None)
        if session is not None:
            return nullcontext(session)
        return self.db.session()

    def dispatched(
        self,
        uuid: str,
        job: str,
        project: str,
        change: int | None,
        patchset: int | None,
        pipeline: str,
        dispatched_at: float,
        item_uuid: str = "",
    ) -> None:
        """Record a build handed to Gearman (again, if it is re-dispatched)."""
        with self._session() as session:
            record = session.get(BuildRecord, uuid)
            if record is None:
                record = BuildRecord(uuid=uuid)
                session.add(record)
            record.item_uuid = item_uuid or record.item_uuid or ""
            record.job = job
            record.project = project
            record.change = change
            record.patchset = patchset
            record.pipeline = pipeline
            record.dispatched_at = dispatched_at
            # Defaults only apply on INSERT; a fresh object must still read well.
            record.node = record.node or ""
            record.provider = record.provider or ""
            record.worker = record.worker or ""
            record.log_url = record.log_url or ""

    def started(
        self, uuid: str, node: str, provider: str, worker: str, start_time: float, log_url: str
    ) -> None:
        """Record that a worker claimed a node and started the build."""
        with self._session() as session:
            record = self._get_or_stub(session, uuid, start_time)
            record.node = node
            record.provider = provider
            record.worker = worker
            record.start_time = start_time
            record.log_url = log_url

    def completed(
        self,
        uuid: str,
        result: str,
        end_time: float,
        log_url: str = "",
        node: str = "",
        provider: str = "",
    ) -> None:
        """Record a build's result; empty strings keep what was recorded before."""
        with self._session() as session:
            record = self._get_or_stub(session, uuid, end_time)
            record.result = result
            record.end_time = end_time
            if log_url:
                record.log_url = log_url
            if node:
                record.node = node
            if provider:
                record.provider = provider

    def is_canceled(self, uuid: str) -> bool:
        """Whether the scheduler canceled the build (workers ask before starting it)."""
        record = self.get(uuid)
        return record is not None and record.result == "CANCELED"

    def average_duration(self, job: str, recent: int = 10) -> float | None:
        """Mean run time in seconds of the job's last ``recent`` successful builds."""
        with self._session() as session:
            query = (
                select(BuildRecord.start_time, BuildRecord.end_time)
                .where(
                    BuildRecord.job == job,
                    BuildRecord.result == "SUCCESS",
                    BuildRecord.start_time.is_not(None),
                    BuildRecord.end_time.is_not(None),
                )
                .order_by(BuildRecord.end_time.desc())
                .limit(recent)
            )
            spans = [
                end - start
                for start, end in session.execute(query)
                if start is not None and end is not None
            ]
        return sum(spans) / len(spans) if spans else None

    def get(self, uuid: str) -> BuildRecord | None:
        with self._session() as session:
            return session.get(BuildRecord, uuid)

    def for_change(self, change: int) -> list[BuildRecord]:
        """Every build of a change, oldest first."""
        with self._session() as session:
            query = (
                select(BuildRecord)
                .where(BuildRecord.change == change)
                .order_by(BuildRecord.dispatched_at, BuildRecord.uuid)
            )
            return list(session.scalars(query))

    @staticmethod
    def _get_or_stub(session: Session, uuid: str, when: float) -> BuildRecord:
        record = session.get(BuildRecord, uuid)
        if record is None:
            # A result for a build we never saw dispatched (e.g. the scheduler
            # restarted in between): keep it rather than lose it.
            log.warning("build %s was not recorded as dispatched", uuid)
            record = BuildRecord(
                uuid=uuid,
                job="",
                project="",
                pipeline="",
                node="",
                provider="",
                worker="",
                dispatched_at=when,
                log_url="",
            )
            session.add(record)
        return record
