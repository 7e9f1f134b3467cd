"""Provider correlation: does a job fail more often on one node provider?

For each job, and for all jobs together, over a window of days: per
provider the runs, the failures, the failure rate with its Wilson interval,
and Fisher's one-sided exact test of "this provider fails more often than
the others pooled", Holm-corrected over the comparisons shown together
(:mod:`gatekeeper.insights.stats` says why those three).

Which results count: a run with a verdict on the change, made on a node:

- failures: ``FAILURE`` and ``TIMED_OUT`` (the job ran on the node and did
  not pass; a node that hangs times out);
- passes: ``SUCCESS``;
- left out: ``NODE_FAILURE`` (no node: the pool's launch health, not the
  node's), ``ABORTED``/``CANCELED``/``SKIPPED`` (nobody's verdict),
  ``MERGER_FAILURE`` (the change's), ``ERROR``/``LOST``/``RETRY_LIMIT``/
  ``NOT_REGISTERED`` (the worker's or Gearman's).

Families for the correction: the "all jobs" table is one family (one test
per provider); the per-job tables shown together are another (one test per
job and provider). Asking about one job (``--job``) makes that job's table
the only family.

:class:`ProviderWatch` keeps a recent report for the pool
(``deprioritize-failing``) and the metrics, and logs a provider that becomes
(or stops being) significantly worse once per change, across processes and
restarts (the flagged set is kept in ``scheduler_state``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from gatekeeper.config.site import ProviderInsightsConfig
from gatekeeper.db.engine import Database, rowcount
from gatekeeper.db.tables import BuildRecord, SchedulerState
from gatekeeper.errors import GatekeeperError
from gatekeeper.insights.stats import (
    DEFAULT_LEVEL,
    DEFAULT_MIN_RUNS,
    Counts,
    holm,
    wilson_interval,
    worse_than_rest,
)
from gatekeeper.model.build import BuildResult
from gatekeeper.model.outside import shown

log = logging.getLogger(__name__)

#: Results that are a verdict on the change made on a node, and which of them fail.
VERDICTS = (BuildResult.SUCCESS, BuildResult.FAILURE, BuildResult.TIMED_OUT)
FAILED = (BuildResult.FAILURE, BuildResult.TIMED_OUT)
#: The job name of the all-jobs table (no job is named "").
ALL_JOBS = ""
#: The ``scheduler_state`` row holding the flags last logged.
FLAGS_STATE = "insights.providers.flagged"


@dataclass(frozen=True)
class ProviderRow:
    """One provider in one table."""

    provider: str
    failures: int
    runs: int
    #: The Wilson interval of the failure rate.
    low: float
    high: float
    #: Fisher's one-sided p-value and its Holm adjustment; None when the
    #: provider or the rest had too few runs to be compared.
    p_value: float | None
    adjusted: float | None
    flagged: bool

    @property
    def rate(self) -> float:
        return self.failures / self.runs if self.runs else 0.0


@dataclass(frozen=True)
class JobTable:
    """The providers of one job (``ALL_JOBS``: every job together), worst first."""

    job: str
    rows: list[ProviderRow]

    @property
    def title(self) -> str:
        return self.job or "all jobs"

    @property
    def flagged(self) -> list[str]:
        return [row.provider for row in self.rows if row.flagged]


@dataclass(frozen=True)
class ProviderReport:
    """Failure rates per provider over ``days`` before ``until``."""

    since: float
    until: float
    days: float
    level: float
    min_runs: int
    #: Every job together; None when the report is about one job.
    overall: JobTable | None
    jobs: list[JobTable] = field(default_factory=list)

    def tables(self) -> list[JobTable]:
        return ([self.overall] if self.overall is not None else []) + self.jobs

    def flags(self) -> set[tuple[str, str]]:
        """``(job, provider)`` of every flag (job ``ALL_JOBS`` for the overall table)."""
        return {(t.job, p) for t in self.tables() for p in t.flagged}

    def flagged_providers(self) -> set[str]:
        """Providers significantly worse over all jobs together."""
        return set(self.overall.flagged) if self.overall is not None else set()

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "days": self.days,
            "level": self.level,
            "min_runs": self.min_runs,
            "tables": [
                {
                    "job": table.job,
                    "title": table.title,
                    "rows": [
                        {
                            "provider": row.provider,
                            "runs": row.runs,
                            "failures": row.failures,
                            "rate": row.rate,
                            "interval": [row.low, row.high],
                            "p_value": row.p_value,
                            "adjusted_p_value": row.adjusted,
                            "flagged": row.flagged,
                        }
                        for row in table.rows
                    ],
                }
                for table in self.tables()
            ],
        }


def tally(session: Session, since: float, job: str | None = None) -> dict[tuple[str, str], Counts]:
    """``(job, provider) -> Counts`` of the builds dispatched since ``since``
    that ran on a provider and ended with a verdict; one grouped query on the
    dispatch-time index."""
    failed = func.sum(case((BuildRecord.result.in_([str(r) for r in FAILED]), 1), else_=0))
    query = (
        select(BuildRecord.job, BuildRecord.provider, failed, func.count())
        .where(
            BuildRecord.dispatched_at >= since,
            BuildRecord.result.in_([str(r) for r in VERDICTS]),
            BuildRecord.provider != "",
        )
        .group_by(BuildRecord.job, BuildRecord.provider)
    )
    if job is not None:
        query = query.where(BuildRecord.job == job)
    return {
        (name, provider): Counts(int(failures or 0), int(runs))
        for name, provider, failures, runs in session.execute(query)
    }


def _tables(
    counts: Mapping[str, Mapping[str, Counts]], level: float, min_runs: int
) -> list[JobTable]:
    """One table per job of ``counts`` (job -> provider -> Counts), Holm-corrected
    together as one family."""
    raw = {
        (job, provider): p
        for job, providers in counts.items()
        for provider, p in worse_than_rest(providers, min_runs).items()
    }
    adjusted = holm(raw)
    tables = []
    for job in sorted(counts):
        rows = []
        for provider, c in counts[job].items():
            low, high = wilson_interval(c, 1 - level)
            p = raw.get((job, provider))
            q = adjusted.get((job, provider))
            flagged = q is not None and q <= level
            rows.append(ProviderRow(provider, c.failures, c.runs, low, high, p, q, flagged))
        rows.sort(key=lambda r: (-r.rate, r.provider))
        tables.append(JobTable(job, rows))
    return tables


def correlate(
    counts: Mapping[tuple[str, str], Counts],
    level: float = DEFAULT_LEVEL,
    min_runs: int = DEFAULT_MIN_RUNS,
    overall: bool = True,
) -> tuple[JobTable | None, list[JobTable]]:
    """The all-jobs table (when ``overall``) and the per-job tables of ``counts``."""
    by_job: dict[str, dict[str, Counts]] = {}
    pooled: dict[str, Counts] = {}
    for (job, provider), c in counts.items():
        by_job.setdefault(job, {})[provider] = c
        before = pooled.get(provider, Counts(0, 0))
        pooled[provider] = Counts(before.failures + c.failures, before.runs + c.runs)
    jobs = _tables(by_job, level, min_runs)
    if not overall:
        return None, jobs
    return _tables({ALL_JOBS: pooled}, level, min_runs)[0], jobs


def provider_report(
    db: Database,
    days: float = 7.0,
    job: str | None = None,
    level: float = DEFAULT_LEVEL,
    min_runs: int = DEFAULT_MIN_RUNS,
    now: float | None = None,
) -> ProviderReport:
    """The report over the ``days`` before ``now`` (of one job, if ``job``).

    :raises sqlalchemy.exc.SQLAlchemyError: the database could not be read.
    """
    until = time.time() if now is None else now
    since = until - days * 86400.0
    with db.session() as session:
        counts = tally(session, since, job)
    overall, jobs = correlate(counts, level, min_runs, overall=job is None)
    return ProviderReport(since, until, days, level, min_runs, overall, jobs)


class ProviderWatch:
    """A recent :class:`ProviderReport` for the pool and the metrics.

    :meth:`report` computes one when the last is older than ``refresh``
    seconds, in the calling thread (the pool's, or a metrics scrape's:
    never the scheduler's), and returns the cached one otherwise; any
    thread may call it. A failed read keeps the last report.
    """

    def __init__(
        self,
        db: Database,
        days: float = 7.0,
        level: float = DEFAULT_LEVEL,
        min_runs: int = DEFAULT_MIN_RUNS,
        refresh: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.days = days
        self.level = level
        self.min_runs = min_runs
        self.refresh = refresh
        self.clock = clock
        self._lock = threading.Lock()
        self._report: ProviderReport | None = None
        self._at = float("-inf")

    @classmethod
    def for_site(cls, db: Database, config: ProviderInsightsConfig) -> ProviderWatch:
        return cls(db, config.days, config.level, config.min_runs, config.refresh)

    def report(self) -> ProviderReport | None:
        """The cached report, computed again when stale; None until one was read."""
        with self._lock:
            now = self.clock()
            if now - self._at < self.refresh:
                return self._report
            # Marked now: a broken database is asked again after ``refresh``,
            # not on every call.
            self._at = now
            try:
                report = provider_report(self.db, self.days, None, self.level, self.min_runs, now)
                self._note_changes(report)
            except (SQLAlchemyError, GatekeeperError) as exc:
                log.warning("provider insights: cannot read the builds: %s", exc)
                return self._report
            self._report = report
            return report

    def flagged_providers(self) -> set[str]:
        """Providers significantly worse over all jobs (none before a report)."""
        report = self.report()
        return report.flagged_providers() if report is not None else set()

    def rates(self) -> dict[tuple[str, str], tuple[float, bool]]:
        """``(job, provider) -> (failure rate, flagged)``, job ``ALL_JOBS`` for
        every job together: what the metrics show."""
        report = self.report()
        if report is None:
            return {}
        return {
            (table.job, row.provider): (row.rate, row.flagged)
            for table in report.tables()
            for row in table.rows
        }

    def _note_changes(self, report: ProviderReport) -> None:
        """Log the flags raised and cleared since the ones last logged, by
        whichever process sees the change first (a compare-and-set on the
        ``scheduler_state`` row)."""
        now = sorted([job, provider] for job, provider in report.flags())
        new = json.dumps(now)

        def swap(session: Session) -> list[list[str]] | None:
            row = session.get(SchedulerState, FLAGS_STATE)
            if row is None:
                session.add(SchedulerState(name=FLAGS_STATE, value=new))
                session.flush()
                return []
            logged = row.value
            if logged == new:
                return None
            statement = (
                update(SchedulerState)
                .where(SchedulerState.name == FLAGS_STATE, SchedulerState.value == logged)
                .values(value=new)
            )
            # (The UPDATE refreshes ``row`` too: ``logged`` keeps what was there.)
            if rowcount(session.execute(statement)) == 0:
                return None  # another process logged this change
            try:
                before = json.loads(logged)
            except ValueError:
                return []
            return before if isinstance(before, list) else []

        try:
            before = self.db.transaction(swap)
        except IntegrityError:
            return  # another process wrote the first row at the same time
        if before is None:
            return
        old = {tuple(pair) for pair in before if isinstance(pair, list) and len(pair) == 2}
        current = {(job, provider) for job, provider in now}
        for job, provider in sorted(current - old):
            table = next(t for t in report.tables() if t.job == job)
            row = next(r for r in table.rows if r.provider == provider)
            log.warning(
                "provider %s is significantly worse for %s: %d of %d runs failed (%.0f%%), "
                "Holm-adjusted p=%.2g over the last %g days",
                shown(provider, 100),
                shown(table.title, 200),
                row.failures,
                row.runs,
                100 * row.rate,
                row.adjusted,
                report.days,
            )
        for job, provider in sorted(old - current):
            log.info(
                "provider %s is no longer significantly worse for %s",
                shown(str(provider), 100),
                shown(str(job) or "all jobs", 200),
            )
