"""Mail the SMTP reporters had not sent when the daemon stopped.

The mailer keeps what it could not send (a mail server down at shutdown)
in one ``scheduler_state`` row as JSON, and the next start sends it first.
"""

from __future__ import annotations

import json
import logging

from gatekeeper.db.engine import Database
from gatekeeper.db.tables import SchedulerState

__all__ = ["ROW", "MailOutbox"]

log = logging.getLogger(__name__)

#: The ``scheduler_state`` row of the unsent mail.
ROW = "mail.unsent"


class MailOutbox:
    """Keeps unsent mail, each a mapping of strings, across a restart."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def keep(self, mails: list[dict[str, str]]) -> None:
        """Save ``mails`` (with any already kept and not taken yet)."""
        with self.db.session() as session:
            row = session.get(SchedulerState, ROW)
            kept = _read(row.value if row is not None else "")
            text = json.dumps(kept + mails)
            if row is None:
                session.add(SchedulerState(name=ROW, value=text))
            else:
                row.value = text

    def take(self) -> list[dict[str, str]]:
        """The kept mails, oldest first; they are no longer kept."""
        with self.db.session() as session:
            row = session.get(SchedulerState, ROW)
            if row is None:
                return []
            mails = _read(row.value)
            session.delete(row)
        return mails


def _read(text: str) -> list[dict[str, str]]:
    if not text:
        return []
    try:
        data = json.loads(text)
        return [{str(k): str(v) for k, v in mail.items()} for mail in data]
    except (ValueError, TypeError, AttributeError) as exc:
        log.error("scheduler_state %s is unreadable (%s); its mail is lost", ROW, exc)
        return []
