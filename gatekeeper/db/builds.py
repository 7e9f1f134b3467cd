"""Build records: what ran where, when, and how it ended."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from gatekeeper.db.audit import AuditEntry, AuditLog
from gatekeeper.db.engine import Database, rowcount
from gatekeeper.db.tables import BuildRecord
from gatekeeper.model.results import StartData

log = logging.getLogger(__name__)

T = TypeVar("T")


#: The audit action of a build packet that was not believed.
REFUSED_RESULT = "build-result"


@dataclass(frozen=True)
class RanOn:
    """Where a build's node runs, copied into its record when it starts."""

    region: str = ""
    availability_zone: str = ""
    image: str = ""
    image_built_at: float | None = None

    @classmethod
    def of(cls, start: StartData) -> RanOn:
        return cls(start.region, start.availability_zone, start.image, start.image_built_at)

    def values(self) -> dict[str, Any]:
        return asdict(self)


class BuildStore:
    """Writes and reads build records. The scheduler owns one (its thread
    records dispatches and results); a worker process owns another, whose
    build and heartbeat threads record what runs where (:meth:`worker_started`,
    :meth:`worker_completed`, :meth:`heartbeat`); the dispatcher records
    retries (:meth:`retried`). Any thread may call any method.

    Every method is its own transaction, unless the calling thread is inside
    :meth:`batch`; records returned are detached copies, safe to read after
    the session is gone. A transaction on a lost connection is tried again
    (see :meth:`Database.transaction`), except inside a batch.
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

    def _write(self, work: Callable[[Session], T]) -> T:
        session = getattr(self._local, "session", None)
        if session is not None:
            return work(session)
        return self.db.transaction(work)

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
        label: str = "",
        branch: str = "",
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        """Record a build handed to Gearman (again, if it is re-dispatched),
        with the node label it asks for, its change's branch and its
        parameters (kept from before when not given)."""

        def work(session: Session) -> None:
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
            record.label = label or record.label or ""
            record.branch = branch or record.branch or ""
            if parameters is not None:
                record.parameters = json.dumps(dict(parameters), sort_keys=True)
            record.parameters = record.parameters or "{}"

        self._write(work)

    def started(
        self,
        uuid: str,
        node: str,
        provider: str,
        worker: str,
        start_time: float,
        log_url: str,
        where: RanOn | None = None,
    ) -> None:
        """Record that a worker claimed a node and started the build (and,
        with ``where``, where that node runs)."""

        def work(session: Session) -> None:
            record = self._get_or_stub(session, uuid, start_time)
            record.node = node
            record.provider = provider
            record.worker = worker
            record.start_time = start_time
            record.log_url = log_url
            if where is not None:
                for key, value in where.values().items():
                    setattr(record, key, value)

        self._write(work)

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

        def work(session: Session) -> None:
            record = self._get_or_stub(session, uuid, end_time)
            record.result = result
            record.end_time = end_time
            if log_url:
                record.log_url = log_url
            if node:
                record.node = node
            if provider:
                record.provider = provider

        self._write(work)

    # -- written by workers and the dispatcher ------------------------------
    #
    # A build is identified across attempts by its uuid; one run of it by the
    # worker and start time the worker recorded. A worker's writes touch only
    # its own run, and never a build that already has a result: a run given
    # up on (its Gearman server went away, the scheduler cancelled it) cannot
    # overwrite what its successor records.

    def worker_started(
        self,
        uuid: str,
        worker: str,
        node: str,
        provider: str,
        start_time: float,
        log_url: str,
        console_address: str = "",
        where: RanOn | None = None,
    ) -> bool:
        """A worker claimed a node and starts the build; False if the build has
        a result already (or no record: it was not dispatched by a scheduler).
        ``console_address`` is where the worker serves its live console;
        ``where`` is where the node runs."""
        statement = (
            update(BuildRecord)
            .where(BuildRecord.uuid == uuid, BuildRecord.result.is_(None))
            .values(
                worker=worker,
                node=node,
                provider=provider,
                start_time=start_time,
                end_time=None,
                log_url=log_url,
                heartbeat=start_time,
                console_address=console_address,
                **(where or RanOn()).values(),
            )
        )
        return self._write(lambda session: rowcount(session.execute(statement)) > 0)

    def worker_completed(
        self,
        uuid: str,
        worker: str,
        start_time: float,
        result: str,
        end_time: float,
        log_url: str = "",
    ) -> bool:
        """The worker's run of the build ended; False if it was no longer the
        build's current run or the build already had a result."""
        values: dict[str, Any] = {"result": result, "end_time": end_time, "heartbeat": end_time}
        if log_url:
            values["log_url"] = log_url
        statement = (
            update(BuildRecord)
            .where(
                BuildRecord.uuid == uuid,
                BuildRecord.worker == worker,
                BuildRecord.start_time == start_time,
                BuildRecord.result.is_(None),
            )
            .values(**values)
        )
        return self._write(lambda session: rowcount(session.execute(statement)) > 0)

    def worker_verified(
        self, uuid: str, identity: str, worker: str, node: str, start_time: float
    ) -> bool:
        """Record ``identity`` (a certificate's ``worker:<name>``) as the one
        running the build, if the row agrees with the start it signed: the
        same worker, node and start time. False when it does not (the start
        came from someone who never claimed the build). A result already
        there (the scheduler cancelled the build meanwhile) does not matter.

        Written by the dispatcher only, after the signature was checked: a
        worker's own writes never touch ``worker_identity``.
        """
        statement = (
            update(BuildRecord)
            .where(
                BuildRecord.uuid == uuid,
                BuildRecord.worker == worker,
                BuildRecord.node == node,
                BuildRecord.start_time == start_time,
            )
            .values(worker_identity=identity)
        )
        return self._write(lambda session: rowcount(session.execute(statement)) > 0)

    def refused(self, uuid: str, actor: str, role: str, why: str, at: float) -> None:
        """Audit a packet about the build that was not believed."""
        AuditLog(self.db).record(actor, role, REFUSED_RESULT, uuid, "refused", why, at=at)

    def refusals(self, uuid: str | None = None) -> list[AuditEntry]:
        """Refused build packets, oldest first (of one build, if ``uuid``)."""
        return AuditLog(self.db).entries(REFUSED_RESULT, "refused", target=uuid)

    def heartbeat(self, worker: str, uuids: list[str], now: float) -> int:
        """Mark the worker's running builds alive at ``now``, in one UPDATE;
        returns how many records it touched."""
        if not uuids:
            return 0
        statement = (
            update(BuildRecord)
            .where(
                BuildRecord.uuid.in_(uuids),
                BuildRecord.worker == worker,
                BuildRecord.result.is_(None),
            )
            .values(heartbeat=now)
        )
        return self._write(lambda session: rowcount(session.execute(statement)))

    def retried(self, uuid: str, attempt: int, clear: bool = True) -> None:
        """The build is being run again as ``attempt``. With ``clear``, what the
        previous run recorded (worker, node, times, result) is forgotten: the
        new run has not started yet."""
        values: dict[str, Any] = {"attempt": attempt}
        if clear:
            values.update(
                worker="",
                worker_identity="",
                node="",
                provider="",
                start_time=None,
                end_time=None,
                result=None,
                heartbeat=None,
                **RanOn().values(),
            )
        statement = update(BuildRecord).where(BuildRecord.uuid == uuid).values(**values)
        self._write(lambda session: session.execute(statement))

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

    def average_durations(self, jobs: Iterable[str], recent: int = 10) -> dict[str, float | None]:
        """:meth:`average_duration` for many jobs in one query (the status
        page asks for every job queued at once); None where a job has no
        successful build yet."""
        names = sorted(set(jobs))
        found: dict[str, float | None] = dict.fromkeys(names)
        if not names:
            return found
        duration = BuildRecord.end_time - BuildRecord.start_time
        newest = (
            func.row_number()
            .over(partition_by=BuildRecord.job, order_by=BuildRecord.end_time.desc())
            .label("newest")
        )
        ranked = (
            select(BuildRecord.job, duration.label("duration"), newest)
            .where(
                BuildRecord.job.in_(names),
                BuildRecord.result == "SUCCESS",
                BuildRecord.start_time.is_not(None),
                BuildRecord.end_time.is_not(None),
            )
            .subquery()
        )
        query = (
            select(ranked.c.job, func.avg(ranked.c.duration))
            .where(ranked.c.newest <= recent)
            .group_by(ranked.c.job)
        )
        with self._session() as session:
            for job, mean in session.execute(query):
                found[job] = float(mean) if mean is not None else None
        return found

    def get(self, uuid: str) -> BuildRecord | None:
        with self._session() as session:
            return session.get(BuildRecord, uuid)

    def number(self, uuid: str) -> int | None:
        """The build's number among its job's builds, oldest first (1, 2, ...),
        as Jenkins numbered them (Zuul's ``{build.number}``); None if unknown."""
        with self._session() as session:
            record = session.get(BuildRecord, uuid)
            if record is None:
                return None
            query = select(func.count()).where(
                BuildRecord.job == record.job, BuildRecord.dispatched_at <= record.dispatched_at
            )
            return int(session.scalar(query) or 0)

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
