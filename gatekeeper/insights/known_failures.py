"""Known failures in the database: the matches a scan found, hits per
signature per day, and the failed builds no signature explains.

Every read is bounded by a window on ``builds.dispatched_at`` (indexed) and
joins ``failure_matches`` on its indexed ``build_uuid``.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from gatekeeper.db.engine import Database
from gatekeeper.db.tables import BuildRecord, FailureMatch
from gatekeeper.insights.scanner import Match
from gatekeeper.insights.signatures import SignatureSet
from gatekeeper.model.results import Recognised

__all__ = [
    "FAILED",
    "FailedBuild",
    "SignatureHits",
    "failed_builds",
    "hits_per_day",
    "recognised_of",
    "record_matches",
    "uncategorised",
]

#: Results whose logs are searched for known failures (the job's own failure).
FAILED = ("FAILURE", "TIMED_OUT")
DAY = 86400.0


@dataclass(frozen=True)
class FailedBuild:
    """A failed build as the insights show it (and ``failures try`` scans it)."""

    uuid: str
    job: str
    project: str
    branch: str
    change: int | None
    patchset: int | None
    pipeline: str
    result: str
    #: Where it ran (a provider stands out when its failures go unexplained).
    provider: str
    ended_at: float
    log_url: str
    #: Its ``LOG_PATH`` (where its logs are under the log root), "" if unknown.
    log_path: str

    @classmethod
    def of(cls, record: BuildRecord) -> FailedBuild:
        try:
            params = json.loads(record.parameters or "{}")
        except ValueError:
            params = {}
        log_path = params.get("LOG_PATH", "") if isinstance(params, dict) else ""
        return cls(
            uuid=record.uuid,
            job=record.job,
            project=record.project,
            branch=record.branch,
            change=record.change,
            patchset=record.patchset,
            pipeline=record.pipeline,
            result=record.result or "",
            provider=record.provider,
            ended_at=record.end_time or record.dispatched_at,
            log_url=record.log_url,
            log_path=log_path if isinstance(log_path, str) else "",
        )


@dataclass(frozen=True)
class SignatureHits:
    """How many failed builds one signature was found in, per UTC day."""

    signature: str
    #: ``YYYY-MM-DD`` -> builds.
    days: dict[str, int]
    #: The newest build it was found in.
    last_build: str

    @property
    def total(self) -> int:
        return sum(self.days.values())


def record_matches(
    db: Database, uuid: str, matches: Sequence[Match], at: float | None = None
) -> None:
    """Store a scan's matches for build ``uuid`` (replacing an earlier scan's)."""
    when = time.time() if at is None else at

    def work(session: Session) -> None:
        session.execute(delete(FailureMatch).where(FailureMatch.build_uuid == uuid))
        session.add_all(
            FailureMatch(
                build_uuid=uuid,
                signature=m.signature,
                file=m.file,
                line_number=m.line_number,
                line=m.line,
                matched_at=when,
            )
            for m in matches
        )

    db.transaction(work)


def recognised_of(db: Database, uuid: str, signatures: SignatureSet) -> list[Recognised]:
    """What the worker recognised in build ``uuid``'s logs, from its stored
    matches: one per signature, in the order they were found, described by
    ``signatures`` (a signature since removed from the site is named by its
    id alone). A restarted scheduler reports a build that ended before it
    with these (the worker's result, which carried them, is gone)."""
    with db.session() as session:
        found = session.scalars(
            select(FailureMatch.signature)
            .where(FailureMatch.build_uuid == uuid)
            .order_by(FailureMatch.id)
        )
        ids = list(dict.fromkeys(found))
    out = []
    for signature_id in ids:
        known = signatures.get(signature_id)
        if known is None:
            out.append(Recognised(signature_id, signature_id))
        else:
            out.append(Recognised(signature_id, known.description, known.bug))
    return out


def _since(days: float, now: float | None) -> float:
    return (time.time() if now is None else now) - days * DAY


def day_of(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))


def hits_per_day(db: Database, days: float, now: float | None = None) -> list[SignatureHits]:
    """Per signature, the failed builds of the last ``days`` it was found in,
    by the UTC day they ended; most hits first."""
    query = (
        select(
            FailureMatch.signature,
            BuildRecord.uuid,
            BuildRecord.end_time,
            BuildRecord.dispatched_at,
        )
        .join(BuildRecord, BuildRecord.uuid == FailureMatch.build_uuid)
        .where(BuildRecord.dispatched_at >= _since(days, now))
        .distinct()
    )
    per_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    newest: dict[str, tuple[float, str]] = {}
    with db.session() as session:
        for signature, uuid, ended, dispatched in session.execute(query):
            at = ended or dispatched
            per_day[signature][day_of(at)] += 1
            if signature not in newest or newest[signature][0] < at:
                newest[signature] = (at, uuid)
    hits = [
        SignatureHits(sig, dict(sorted(days_.items())), newest[sig][1])
        for sig, days_ in per_day.items()
    ]
    return sorted(hits, key=lambda h: (-h.total, h.signature))


def failed_builds(
    db: Database, days: float, limit: int = 1000, now: float | None = None
) -> list[FailedBuild]:
    """The failed builds of the last ``days``, newest first."""
    query = (
        select(BuildRecord)
        .where(BuildRecord.dispatched_at >= _since(days, now))
        .where(BuildRecord.result.in_(FAILED))
        .order_by(BuildRecord.dispatched_at.desc())
        .limit(limit)
    )
    with db.session() as session:
        return [FailedBuild.of(r) for r in session.scalars(query)]


def uncategorised(
    db: Database, days: float, limit: int = 200, now: float | None = None
) -> list[FailedBuild]:
    """The failed builds of the last ``days`` no signature was found in, newest first."""
    matched = exists().where(FailureMatch.build_uuid == BuildRecord.uuid)
    query = (
        select(BuildRecord)
        .where(BuildRecord.dispatched_at >= _since(days, now))
        .where(BuildRecord.result.in_(FAILED))
        .where(~matched)
        .order_by(BuildRecord.dispatched_at.desc())
        .limit(limit)
    )
    with db.session() as session:
        return [FailedBuild.of(r) for r in session.scalars(query)]
