"""Flaky jobs: a job that failed and then passed on unchanged code.

**An incident** is one or more failed runs of a job followed by a passing
run of the same job on the same *state*: the same pipeline, project and
``ZUUL_CHANGES``. ``ZUUL_CHANGES`` names the change under test and every
change tested ahead of it, each with its patch set (``project:branch:ref``,
the ref being ``refs/changes/NN/N/P``), so two runs with the same value
tested the same patch set on top of the same changes. That is a ``recheck``
with no new patch set and the same dependencies in ``check``; in a gate it
tells a true retry from a gate reset, where the changes ahead differ.

What is compared, and what is not, and why:

- ``ZUUL_COMMIT`` is the change's own revision: the same for every run of a
  patch set, so the patch set in ``ZUUL_CHANGES`` already says it.
- ``ZUUL_REF`` and ``ZUUL_UUID`` are new for every run (a gate's
  ``refs/zuul/<branch>/Z<id>``): comparing them would find nothing.
- The branch tip the changes were merged onto is not recorded on a build, so
  it is not compared: a failure that a merge to the branch fixed between the
  two runs counts. The window keeps that bounded in time, and it is what a
  developer sees too ("I changed nothing, recheck passed").
- The pipeline is part of the state: a pass in ``gate`` after a failure in
  ``check`` is usually days later on another tip, and pipelines may give a
  job other parameters.

**Results**: FAILURE and TIMED_OUT are failures (a job that sometimes hangs
is the classic flaky job; its timeout is its failure); SUCCESS is a pass.
Everything else (NODE_FAILURE, MERGER_FAILURE, RETRY_LIMIT, CANCELED,
ABORTED, ERROR, ...) says nothing about the job's code and is left out, of
incidents and of run counts alike. Ref updates (no change) are left out.

**The flaky rate** of a job over a window is the failed runs that belong to
an incident divided by all its counted runs (passes and failures) in the
window: "failed on unchanged code in N% of recent runs". Both runs of an
incident must be dispatched in the window.

Read by the web (``/insights/flaky``), ``gatekeeper insights flaky`` and
the failure report (:class:`FlakyNotes`, in the scheduler thread: one
bounded query per failed job, cached for a while).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from gatekeeper.db.engine import Database
from gatekeeper.db.tables import BuildRecord
from gatekeeper.model.outside import shown

log = logging.getLogger(__name__)

__all__ = [
    "FAILED",
    "PASSED",
    "FlakyNotes",
    "FlakyReport",
    "Incident",
    "JobRate",
    "Run",
    "flaky_report",
    "incidents",
    "job_rates",
    "recent_runs",
]

#: Results that count as the job failing on its code.
FAILED = frozenset({"FAILURE", "TIMED_OUT"})
#: The result that counts as a pass.
PASSED = "SUCCESS"
#: The default window, in days.
DEFAULT_DAYS = 7.0
#: The most runs one query reads: the web and the CLI over the whole window,
#: a report for one job (newest first, so "recent runs" stays recent).
MAX_RUNS = 50_000
JOB_RUNS = 1_000


@dataclass(frozen=True)
class Run:
    """A finished build as the flaky logic reads it."""

    uuid: str
    job: str
    project: str
    pipeline: str
    change: int
    patchset: int
    #: ``ZUUL_CHANGES``: the patch set and every change tested ahead of it.
    state: str
    result: str
    dispatched_at: float
    end_time: float | None = None
    #: Where its logs are under the log root (``LOG_PATH``), "" if unknown.
    log_path: str = ""
    provider: str = ""
    node: str = ""
    #: Where the cloud says it ran ("" where the provider reports nothing).
    region: str = ""
    availability_zone: str = ""

    @property
    def where(self) -> str:
        """``provider``, ``provider/region`` or ``provider/region/zone``."""
        return "/".join(p for p in (self.provider, self.region, self.availability_zone) if p)

    @property
    def failed(self) -> bool:
        return self.result in FAILED

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What two runs must share to have tested the same code."""
        return (self.pipeline, self.job, self.project, self.state)


@dataclass(frozen=True)
class Incident:
    """The job failed (once or more) and then passed on the same state."""

    failed: tuple[Run, ...]
    passed: Run

    @property
    def job(self) -> str:
        return self.passed.job

    @property
    def project(self) -> str:
        return self.passed.project

    @property
    def pipeline(self) -> str:
        return self.passed.pipeline

    @property
    def change(self) -> int:
        return self.passed.change

    @property
    def patchset(self) -> int:
        return self.passed.patchset

    @property
    def state(self) -> str:
        return self.passed.state

    @property
    def when(self) -> float:
        """When it passed: the incident is known from then on."""
        return self.passed.end_time or self.passed.dispatched_at


@dataclass(frozen=True)
class JobRate:
    """One job over the window."""

    job: str
    #: Counted runs: passes and failures.
    runs: int
    failures: int
    #: Failed runs that a pass on the same state followed.
    flaky_failures: int
    incidents: int

    @property
    def rate(self) -> float:
        """Flaky failures over counted runs, 0..1."""
        return self.flaky_failures / self.runs if self.runs else 0.0

    @property
    def percent(self) -> int:
        """The rate as a whole percent; never 0 when there was an incident."""
        if not self.flaky_failures:
            return 0
        return max(1, round(100 * self.rate))


@dataclass(frozen=True)
class FlakyReport:
    """Every job's rate (flakiest first) and every incident (newest first)."""

    days: float
    since: float
    rates: list[JobRate] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    #: True when the window held more runs than one query reads (the oldest
    #: were left out).
    truncated: bool = False


def run_from_row(
    uuid: str,
    job: str,
    project: str,
    pipeline: str,
    change: int | None,
    patchset: int | None,
    result: str | None,
    parameters: str,
    dispatched_at: float,
    end_time: float | None = None,
    provider: str = "",
    node: str = "",
    region: str = "",
    availability_zone: str = "",
) -> Run | None:
    """A :class:`Run` from a build row's columns; None when it does not
    count (no change, not finished with a counted result, no state)."""
    if change is None or patchset is None or result is None:
        return None
    if result != PASSED and result not in FAILED:
        return None
    try:
        params = json.loads(parameters or "{}")
    except ValueError:
        log.warning("build %s: its parameters are not JSON; left out", shown(uuid))
        return None
    if not isinstance(params, dict):
        return None
    state = params.get("ZUUL_CHANGES")
    if not isinstance(state, str) or not state:
        return None
    log_path = params.get("LOG_PATH")
    return Run(
        uuid=uuid,
        job=job,
        project=project,
        pipeline=pipeline,
        change=int(change),
        patchset=int(patchset),
        state=state,
        result=result,
        dispatched_at=dispatched_at,
        end_time=end_time,
        log_path=log_path.strip("/") if isinstance(log_path, str) else "",
        provider=provider or "",
        node=node or "",
        region=region or "",
        availability_zone=availability_zone or "",
    )


def incidents(runs: Iterable[Run]) -> list[Incident]:
    """The incidents among ``runs``, oldest first.

    Runs are taken per state in the order they were dispatched: a pass ends
    the failures since the previous pass as one incident; failures with no
    pass after them are no incident (yet).
    """
    by_state: dict[tuple[str, str, str, str], list[Run]] = {}
    for run in runs:
        by_state.setdefault(run.key, []).append(run)
    found: list[Incident] = []
    for group in by_state.values():
        group.sort(key=lambda r: (r.dispatched_at, r.uuid))
        failed: list[Run] = []
        for run in group:
            if run.failed:
                failed.append(run)
            elif failed:
                found.append(Incident(tuple(failed), run))
                failed = []
    found.sort(key=lambda i: (i.when, i.passed.uuid))
    return found


def job_rates(runs: Sequence[Run], found: Sequence[Incident]) -> list[JobRate]:
    """Each job's counts and flaky rate, flakiest first, then by name."""
    counted: dict[str, list[int]] = {}
    for run in runs:
        counts = counted.setdefault(run.job, [0, 0, 0, 0])
        counts[0] += 1
        counts[1] += run.failed
    for incident in found:
        counts = counted.setdefault(incident.job, [0, 0, 0, 0])
        counts[2] += len(incident.failed)
        counts[3] += 1
    rates = [JobRate(job, *counts) for job, counts in counted.items()]
    rates.sort(key=lambda r: (-r.rate, -r.incidents, r.job))
    return rates


def recent_runs(
    db: Database, since: float, job: str | None = None, limit: int = MAX_RUNS
) -> list[Run]:
    """Counted runs dispatched since ``since`` (of ``job`` only, if given),
    at most ``limit`` of them, the newest kept.

    One query, bounded by the window on ``ix_builds_dispatched_at`` and by
    ``limit``; only the columns needed are read.
    """
    query = (
        select(
            BuildRecord.uuid,
            BuildRecord.job,
            BuildRecord.project,
            BuildRecord.pipeline,
            BuildRecord.change,
            BuildRecord.patchset,
            BuildRecord.result,
            BuildRecord.parameters,
            BuildRecord.dispatched_at,
            BuildRecord.end_time,
            BuildRecord.provider,
            BuildRecord.node,
            BuildRecord.region,
            BuildRecord.availability_zone,
        )
        .where(
            BuildRecord.dispatched_at >= since,
            BuildRecord.change.is_not(None),
            BuildRecord.result.in_(sorted({PASSED, *FAILED})),
        )
        .order_by(BuildRecord.dispatched_at.desc())
        .limit(limit)
    )
    if job is not None:
        query = query.where(BuildRecord.job == job)
    with db.session() as session:
        rows = session.execute(query).all()
    runs = [run_from_row(*row) for row in rows]
    return [r for r in runs if r is not None]


def flaky_report(
    db: Database,
    days: float = DEFAULT_DAYS,
    job: str | None = None,
    now: float | None = None,
    limit: int = MAX_RUNS,
) -> FlakyReport:
    """Rates and incidents over the last ``days`` (of ``job`` only, if given)."""
    since = (time.time() if now is None else now) - days * 86400
    runs = recent_runs(db, since, job, limit)
    found = incidents(runs)
    return FlakyReport(
        days=days,
        since=since,
        rates=job_rates(runs, found),
        incidents=sorted(found, key=lambda i: (-i.when, i.passed.uuid)),
        truncated=len(runs) >= limit,
    )


class FlakyNotes:
    """The flaky line of a failed job's report, for the scheduler thread.

    ``line(job)`` is "this job failed on unchanged code in N% of recent
    runs" when the job has at least one incident and ``min_runs`` counted
    runs in the window, else "". What it reads is one query bounded by the
    window and :data:`JOB_RUNS` rows, and each job's answer is kept for
    ``ttl`` seconds, so a broken dependency that fails every change at once
    costs one query a minute per job. The builds table has no index on
    ``job``: the query walks the window on ``ix_builds_dispatched_at``
    (about 0.2 s for a rare job among 100,000 builds a week on SQLite; an
    index on ``(job, dispatched_at)`` would make it a few milliseconds).
    A database that fails is logged and gives no line: the report goes out
    without it. Called from the scheduler thread only (the lock is for
    tests that call it from another).
    """

    def __init__(
        self,
        db: Database,
        days: float = DEFAULT_DAYS,
        min_runs: int = 10,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.days = days
        self.min_runs = min_runs
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, JobRate | None]] = {}
        self._lock = threading.Lock()

    def rate(self, job: str) -> JobRate | None:
        """The job's rate over the window (cached), None when it has no runs
        or the database could not say."""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(job)
            if cached is not None and now - cached[0] < self.ttl:
                return cached[1]
        try:
            report = flaky_report(self.db, self.days, job, now=now, limit=JOB_RUNS)
        except SQLAlchemyError as exc:
            log.warning("flaky rate of %s not known: %s", shown(job), shown(exc))
            return None
        found = report.rates[0] if report.rates else None
        with self._lock:
            self._cache[job] = (now, found)
        return found

    def line(self, job: str) -> str:
        """The job's flaky line, or "". Never raises: the report it goes in
        matters more than the line."""
        try:
            rate = self.rate(job)
        except Exception:  # a bug here must not cost the change its report
            log.exception("flaky line of %s", shown(job))
            return ""
        if rate is None or not rate.incidents or rate.runs < self.min_runs:
            return ""
        return f"this job failed on unchanged code in {rate.percent}% of recent runs"
