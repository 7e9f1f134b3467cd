"""The audit log: who asked the site to do what, when, and how it went.

Every operator request is written here, whether it was done, refused
(no token, a bad one, not allowed) or failed. Every string comes from
outside: it is stored cut to a bounded length, and escaped by whoever shows
it (``gatekeeper.model.outside.shown``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from gatekeeper.db.engine import Database
from gatekeeper.db.tables import AuditRecord

__all__ = ["AuditEntry", "AuditLog", "Outcome"]

Outcome = Literal["ok", "refused", "error"]

# Characters kept of the free-text columns: enough to see what was asked,
# never the whole of a large request.
TEXT_MAX = 2000


@dataclass(frozen=True)
class AuditEntry:
    """One row, as plain data."""

    at: float
    actor: str
    role: str
    action: str
    target: str
    outcome: str
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "at": self.at,
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "detail": self.detail,
        }


def _cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, and writable: a lone
    surrogate (valid in JSON, not in UTF-8) is written as its escape."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _entry(row: AuditRecord) -> AuditEntry:
    return AuditEntry(row.at, row.actor, row.role, row.action, row.target, row.outcome, row.detail)


class AuditLog:
    """The ``audit_log`` table. Thread-safe: each call is its own transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(
        self,
        actor: str,
        role: str,
        action: str,
        target: str,
        outcome: Outcome,
        detail: str = "",
        at: float | None = None,
    ) -> None:
        """Write one entry (strings cut to what their columns hold)."""
        when = time.time() if at is None else at

        def write(session: Session) -> None:
            # A new row per try: a retried transaction starts from nothing.
            session.add(
                AuditRecord(
                    at=when,
                    actor=_cut(actor, 255),
                    role=_cut(role, 32),
                    action=_cut(action, 64),
                    target=_cut(target, TEXT_MAX),
                    outcome=outcome,
                    detail=_cut(detail, TEXT_MAX),
                )
            )

        self.db.transaction(write)

    def recent(self, limit: int = 20) -> list[AuditEntry]:
        """The newest ``limit`` entries, newest first."""
        with self.db.session() as session:
            rows = session.scalars(
                select(AuditRecord)
                .order_by(AuditRecord.at.desc(), AuditRecord.id.desc())
                .limit(max(0, limit))
            )
            return [_entry(r) for r in rows]

    def entries(self, action: str, outcome: Outcome, target: str | None = None) -> list[AuditEntry]:
        """Every entry of ``action`` that ended ``outcome`` (about ``target``
        if given), oldest first."""
        query = select(AuditRecord).where(
            AuditRecord.action == action, AuditRecord.outcome == outcome
        )
        if target is not None:
            query = query.where(AuditRecord.target == target)
        with self.db.session() as session:
            return [_entry(r) for r in session.scalars(query.order_by(AuditRecord.id))]
