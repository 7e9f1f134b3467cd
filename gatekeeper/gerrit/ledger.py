"""The event ledger: which Gerrit events were acted on, and up to when.

The same Gerrit event can reach the scheduler twice: once on the stream and
once more when a catch-up (after a reconnect, or a periodic reconciliation)
rebuilds what Gerrit's query shows. The ledger gives each event a key that
is the same both ways, and remembers the keys of events acted on in the
``seen_events`` table, so each is acted on once. It also keeps, in
``scheduler_state``:

- ``gerrit.last-event``: the Gerrit time of the newest event acted on;
- ``gerrit.caught-up-to``: a time before which every event has been acted
  on (the start of the last catch-up whose events the scheduler has all
  processed: see :data:`CAUGHT_UP`); a restarted scheduler catches up from
  there.

What matches exactly between an event and a query row: the change and
patchset numbers, the account, and a comment's full text (the change message
is what Gerrit puts into comment-added). Times are whole seconds on both
sides, but Gerrit takes an event's ``eventCreatedOn`` and the message's
timestamp from two clock readings, so a time is matched within
:data:`TIME_TOLERANCE` seconds. Patch sets and merges happen once per change
and need no time at all.

Owned by no thread: the scheduler thread asks and records
(:meth:`EventLedger.first_time`, :meth:`EventLedger.acted_on`); the
catch-up thread reads times and filters (:meth:`EventLedger.seen`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from gatekeeper.db.engine import Database
from gatekeeper.db.tables import SchedulerState, SeenEvent
from gatekeeper.model.events import TriggerEvent

log = logging.getLogger(__name__)

#: An event's time and a query row's time for it may differ by this many seconds.
TIME_TOLERANCE = 2
#: Not a Gerrit event: put on the scheduler's queue by a catch-up after the
#: events it found; when the scheduler reaches it, every event of that
#: catch-up has been processed, and ``created_on`` (when the catch-up
#: started) is a time the scheduler has caught up to.
CAUGHT_UP = "gatekeeper-caught-up"

LAST_EVENT = "gerrit.last-event"
CAUGHT_UP_TO = "gerrit.caught-up-to"
#: Events older than this are forgotten (and never synthesized by a catch-up).
DEFAULT_RETENTION = 2 * 86400.0


class EventKey(NamedTuple):
    """``base`` identifies the event; ``at`` is its time, or None when the
    base alone is unique (a patchset is created once)."""

    base: str
    at: int | None

    def candidates(self) -> list[str]:
        """Every stored key that would mean the same event."""
        if self.at is None:
            return [self.base]
        return [
            f"{self.base}@{t}"
            for t in range(self.at - TIME_TOLERANCE, self.at + 1 + TIME_TOLERANCE)
        ]

    def stored(self) -> str:
        return self.base if self.at is None else f"{self.base}@{self.at}"


def _who(event: TriggerEvent) -> str:
    account = event.account
    if account is None:
        return ""
    return account.username or account.email or account.name


def comment_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def event_key(event: TriggerEvent) -> EventKey | None:
    """The key of an event a catch-up can bring back: rebuilt from a query
    (change events) or replayed from Gerrit's events-log plugin (any event);
    None for an event of neither kind."""
    if event.type == "ref-updated":
        # A ref moves from one sha to another once: no time needed.
        return EventKey(f"ru:{event.project}:{event.ref}:{event.old_rev}:{event.new_rev}", None)
    if event.change is None:
        return _whole(event)
    at = int(event.created_on)
    kind = event.type
    if kind == "patchset-created":
        return EventKey(f"ps:{event.change}:{event.patchset}", None)
    if kind == "comment-added":
        digest = comment_digest(event.comment)
        return EventKey(f"ca:{event.change}:{event.patchset}:{_who(event)}:{digest}", at)
    if kind == "change-merged":
        return EventKey(f"cm:{event.change}", None)
    if kind in ("change-abandoned", "change-restored"):
        return EventKey(f"{kind}:{event.change}", at)
    return _whole(event)


def _whole(event: TriggerEvent) -> EventKey | None:
    """Any other event as Gerrit sent it: the stream and the events-log
    replay send the same JSON object (its eventCreatedOn included)."""
    if not isinstance(event.raw, dict) or event.raw.get("type") != event.type:
        return None
    text = json.dumps(event.raw, sort_keys=True, separators=(",", ":"))
    return EventKey(f"ev:{event.type}:{comment_digest(text)}", None)


class EventLedger:
    """The DB-backed record of Gerrit events acted on (see the module doc)."""

    def __init__(self, db: Database, retention: float = DEFAULT_RETENTION) -> None:
        self.db = db
        self.retention = retention
        self._lock = threading.Lock()
        # The first prune comes a while after start, then every ten minutes.
        self._last_prune = time.time()
        self.skipped = 0

    # -- the scheduler thread ----------------------------------------------
    def first_time(self, event: TriggerEvent) -> bool:
        """Whether the scheduler should act on ``event``: false for one acted on
        before, and for the catch-up marker (which it records)."""
        try:
            if event.type == CAUGHT_UP:
                self._advance(CAUGHT_UP_TO, event.created_on)
                log.debug("caught up to %.0f", event.created_on)
                return False
            seen = self.seen(event)
        except SQLAlchemyError as exc:
            # Acting twice is better than not acting: the database is back soon.
            log.error("event ledger unavailable (%s): acting on %s without it", exc, event)
            return event.type != CAUGHT_UP
        if seen:
            self.skipped += 1
            log.info(
                "skipped %s on %s,%s: already acted on", event.type, event.change, event.patchset
            )
            return False
        return True

    def acted_on(self, event: TriggerEvent) -> None:
        """Record that the scheduler acted on ``event``."""
        key = event_key(event)
        try:
            with self.db.session() as session:
                if key is not None:
                    stored = key.stored()
                    if session.get(SeenEvent, stored) is None:
                        session.add(SeenEvent(key=stored, seen_at=float(event.created_on)))
                _advance_in(session, LAST_EVENT, event.created_on)
            self._prune_now_and_then()
        except SQLAlchemyError as exc:
            log.error("event ledger unavailable (%s): %s not recorded as acted on", exc, event)

    # -- any thread ----------------------------------------------------------
    def seen(self, event: TriggerEvent) -> bool:
        """Whether an event with ``event``'s key was acted on."""
        key = event_key(event)
        if key is None:
            return False
        with self.db.session() as session:
            found = session.scalars(
                select(SeenEvent.key).where(SeenEvent.key.in_(key.candidates())).limit(1)
            ).first()
        return found is not None

    def unseen(self, events: list[TriggerEvent]) -> list[TriggerEvent]:
        """``events`` less those acted on already (one query per few hundred)."""
        keyed: list[tuple[TriggerEvent, list[str]]] = []
        for event in events:
            key = event_key(event)
            keyed.append((event, key.candidates() if key is not None else []))
        found: set[str] = set()
        wanted = [k for _, candidates in keyed for k in candidates]
        with self.db.session() as session:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                found.update(session.scalars(select(SeenEvent.key).where(SeenEvent.key.in_(chunk))))
        return [event for event, candidates in keyed if not found.intersection(candidates)]

    def get_time(self, name: str) -> float | None:
        with self.db.session() as session:
            row = session.get(SchedulerState, name)
            if row is None or not row.value:
                return None
            try:
                return float(row.value)
            except ValueError:
                log.warning("scheduler_state %s is not a time: %r", name, row.value[:50])
                return None

    def caught_up_to(self) -> float | None:
        """Every event before this time has been acted on (None: never caught up)."""
        return self.get_time(CAUGHT_UP_TO)

    def last_event(self) -> float | None:
        return self.get_time(LAST_EVENT)

    def prune(self, now: float | None = None) -> int:
        """Forget events older than the retention; returns how many."""
        horizon = (now if now is not None else time.time()) - self.retention
        with self.db.session() as session:
            result = session.execute(delete(SeenEvent).where(SeenEvent.seen_at < horizon))
        count = int(getattr(result, "rowcount", 0) or 0)
        if count:
            log.info("forgot %d events older than %.0f", count, horizon)
        return count

    def _advance(self, name: str, value: float) -> None:
        with self.db.session() as session:
            _advance_in(session, name, value)

    def _prune_now_and_then(self) -> None:
        now = time.time()
        with self._lock:
            if now - self._last_prune < 600:
                return
            self._last_prune = now
        self.prune(now)


def _advance_in(session: Session, name: str, value: float) -> None:
    """Set ``name`` to ``value`` unless it already holds a later time."""
    row = session.get(SchedulerState, name)
    if row is None:
        session.add(SchedulerState(name=name, value=repr(float(value))))
        return
    try:
        current = float(row.value)
    except ValueError:
        current = float("-inf")
    if value > current:
        row.value = repr(float(value))
