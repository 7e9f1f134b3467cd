"""Catch-up: rebuild, from Gerrit's query, the events the stream did not bring.

The stream loses events when its connection drops, and Gerrit itself throws
some away (``dropped-output``) when a reader is slow. After a reconnect, on
``dropped-output``, and every ``reconcile-interval`` seconds in any case, the
:class:`CatchUp` thread asks Gerrit for every change updated since the last
catch-up began (less a safety margin)::

    gerrit query --format JSON --current-patch-set --all-approvals --comments -- -age:<N>s

and turns each row into the events it shows (:func:`events_from_row`):

- ``patchset-created`` for each patch set created in the window;
- ``comment-added`` for each review message (``Patch Set N: ...``) posted in
  the window, with the votes it cast (the labels its first line names, with
  their value) marked as transitions, as the stream marks them with
  ``oldValue``, and the author's other current votes on that patch set;
- ``change-merged`` and ``change-abandoned``/``change-restored`` from the
  messages Gerrit writes for them.

The events go to the scheduler oldest first; the ledger (see
:mod:`gatekeeper.gerrit.ledger`) makes sure that each event, seen on the
stream and again here, is acted on once. Ref updates are not in a change
query and cannot be rebuilt.

When Gerrit has the events-log plugin (and ``gerrit.http`` says how to
reach its REST API), a catch-up asks it instead for the events themselves,
stored as the stream sent them, between where the catch-up starts and now
(:meth:`CatchUp.replay`): exact, ref updates included. It falls back to the
query when the plugin is absent or fails.

Catch-ups chain: each one covers from where the one before began, so every
moment is covered by a query even if the stream was down, whatever the
stream did. After its events, a catch-up puts a marker on the scheduler's
queue; when the scheduler reaches it, the catch-up's start is stored as the
time to catch up from after a restart.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterable
from typing import Any

from gatekeeper.config.site import GerritConfig
from gatekeeper.errors import GerritError
from gatekeeper.gerrit.changeinfo import ChangeQueries
from gatekeeper.gerrit.events import parse_event
from gatekeeper.gerrit.ledger import CAUGHT_UP, EventLedger
from gatekeeper.gerrit.rest import GerritRest
from gatekeeper.model.events import Account, Approval, TriggerEvent
from gatekeeper.model.listener import Sink
from gatekeeper.model.metrics import NO_METRICS, Metrics
from gatekeeper.model.outside import shown

log = logging.getLogger(__name__)

#: Seconds before a failed catch-up is tried again (when that is sooner than
#: the next reconciliation).
RETRY_AFTER = 30.0
#: What a catch-up asks of each change.
CATCHUP_OPTIONS = ("--current-patch-set", "--all-approvals", "--comments")

# A review message: "Patch Set 3: Code-Review+2 Workflow+1\n\ntext".
_REVIEW = re.compile(r"\APatch Set (\d+):([^\n]*)")
# One vote on that first line: "Code-Review+2", "Verified-1", "-Code-Review" (removed).
_VOTE = re.compile(r"\A(?:([A-Za-z][\w-]*?)([+-]\d+)|-([A-Za-z][\w-]*))\Z")


# Larger numbers are no change number, patch set or time Gerrit sends (and
# would not survive being made a float).
_INT_LIMIT = 2**63


def _int(value: Any) -> int | None:
    """A number of a row (a number, or a string of digits), or None."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, float) and not value.is_integer():
            return None  # NaN, Infinity, a fraction: not what Gerrit sends
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if -_INT_LIMIT < number < _INT_LIMIT else None


def _str(value: Any) -> str:
    """A text field of a row; anything else reads as empty."""
    return value if isinstance(value, str) else ""


def _list(value: Any) -> list[Any]:
    """A list field of a row; anything else reads as empty."""
    return value if isinstance(value, list) else []


def _account(value: Any) -> Account | None:
    if not isinstance(value, dict):
        return None

    def text(key: str) -> str:
        field = value.get(key)
        return field if isinstance(field, str) else ""

    return Account(username=text("username"), name=text("name"), email=text("email"))


def _same(a: Account | None, b: Account | None) -> bool:
    if a is None or b is None:
        return False
    if a.username or b.username:
        return a.username == b.username
    return bool(a.email) and a.email == b.email


def votes_in_summary(summary: str) -> list[tuple[str, int]]:
    """The (label, value) pairs a review message's first line names.

    ``" Code-Review+2 Workflow+1"`` -> [("Code-Review", 2), ("Workflow", 1)];
    a removed vote (``-Code-Review``) is value 0. Anything else on the line
    (Gerrit adds "(3 comments)") is ignored.
    """
    votes = []
    for word in summary.split():
        match = _VOTE.match(word)
        if not match:
            continue
        if match.group(3):
            votes.append((match.group(3), 0))
        else:
            votes.append((match.group(1), int(match.group(2))))
    return votes


def events_from_row(row: dict[str, Any], since: float) -> list[TriggerEvent]:
    """The events a ``--all-approvals --comments`` query row shows since ``since``.

    Rows without what a change always has give no events (and are logged).
    """
    number = _int(row.get("number"))
    project = row.get("project")
    if number is None or not isinstance(project, str) or not project:
        log.warning("catch-up: a query row without a change number or project: skipped")
        return []
    branch = _str(row.get("branch"))
    base: dict[str, Any] = {
        "project": project,
        "branch": branch,
        "change": number,
        "change_id": _str(row.get("id")),
        "change_url": _str(row.get("url")),
        "raw": {"catch_up": True},
    }
    patchsets: dict[int, dict[str, Any]] = {}
    for ps in _list(row.get("patchSets")):
        if isinstance(ps, dict) and _int(ps.get("number")) is not None:
            patchsets[int(ps["number"])] = ps
    current = row.get("currentPatchSet")
    if isinstance(current, dict) and _int(current.get("number")) is not None:
        patchsets.setdefault(int(current["number"]), current)

    def at_patchset(n: int | None) -> dict[str, Any]:
        ps = patchsets.get(n) if n is not None else None
        if ps is None:
            return {"patchset": n}
        return {
            "patchset": n,
            "ref": _str(ps.get("ref")),
            "revision": _str(ps.get("revision")),
        }

    out: list[TriggerEvent] = []
    for n, ps in sorted(patchsets.items()):
        created = _int(ps.get("createdOn"))
        if created is None or created < since:
            continue
        out.append(
            TriggerEvent(
                type="patchset-created",
                account=_account(ps.get("uploader")),
                created_on=float(created),
                **base,
                **at_patchset(n),
            )
        )
    latest = max(patchsets) if patchsets else None
    for message in _list(row.get("comments")):
        if not isinstance(message, dict):
            continue
        stamp = _int(message.get("timestamp"))
        text = message.get("message")
        if stamp is None or stamp < since or not isinstance(text, str):
            continue
        author = _account(message.get("reviewer"))
        review = _REVIEW.match(text)
        reviewed = _int(review.group(1)) if review else None
        if review and reviewed is not None:
            out.append(
                TriggerEvent(
                    type="comment-added",
                    comment=text,
                    account=author,
                    approvals=_approvals(patchsets.get(reviewed), author, review.group(2)),
                    created_on=float(stamp),
                    **base,
                    **at_patchset(reviewed),
                )
            )
            continue
        kind = _status_event(text)
        if kind is not None:
            out.append(
                TriggerEvent(
                    type=kind,
                    account=author,
                    created_on=float(stamp),
                    **base,
                    **at_patchset(latest),
                )
            )
    return out


def _status_event(text: str) -> str | None:
    if text.startswith("Change has been successfully merged"):
        return "change-merged"
    if text == "Abandoned" or text.startswith("Abandoned\n"):
        return "change-abandoned"
    if text == "Restored" or text.startswith("Restored\n"):
        return "change-restored"
    return None


def _approvals(
    patchset: dict[str, Any] | None, author: Account | None, summary: str
) -> tuple[Approval, ...]:
    """The votes of a review message: those it names, as transitions; and the
    author's other current votes on the patch set, as they stand."""
    cast = votes_in_summary(summary)
    # The value before is not in the query; a vote the message names changed
    # (from 0, as far as anyone can tell), which is what triggers read. A
    # removed vote is not a transition any trigger asks for.
    out = [Approval(label, value, 0 if value else None, author) for label, value in cast]
    named = {label.lower() for label, _ in cast}
    for approval in _list((patchset or {}).get("approvals")):
        if not isinstance(approval, dict) or not _same(_account(approval.get("by")), author):
            continue
        label = approval.get("type")
        value = _int(approval.get("value"))
        if not isinstance(label, str) or value is None or label.lower() in named:
            continue
        out.append(Approval(label, value, None, author))
    return tuple(out)


def synthesize(rows: Iterable[dict[str, Any]], since: float) -> list[TriggerEvent]:
    """Every event the rows show since ``since``, oldest first (stable)."""
    events = [event for row in rows for event in events_from_row(row, since)]
    events.sort(key=lambda e: e.created_on)
    return events


def age_query(since: float, now: float) -> str:
    """Changes updated in the last ``now - since`` seconds (at least one)."""
    return f"-age:{max(1, math.ceil(now - since))}s"


# -- who wants to hear that the stream (re)opened -------------------------------

_waiting: dict[tuple[str, int], list[CatchUp]] = {}
_waiting_lock = threading.Lock()


def stream_news(config: GerritConfig, what: str) -> None:
    """Tell the catch-ups for this Gerrit that its stream ``opened`` or
    Gerrit ``dropped-output``: both mean events may have been missed.

    Listeners are started apart from the scheduler (the core never imports
    a listener), so they meet here, by Gerrit address.
    """
    with _waiting_lock:
        catch_ups = list(_waiting.get((config.host, config.port), []))
    for catch_up in catch_ups:
        catch_up.request(what)


class CatchUp:
    """Runs catch-ups in its own thread (``gerrit-catchup``): on request and
    every ``interval`` seconds. Events go to ``sink`` (the scheduler's trigger
    queue)."""

    def __init__(
        self,
        connection: ChangeQueries,
        ledger: EventLedger,
        sink: Sink,
        interval: float = 600.0,
        margin: float = 60.0,
        max_age: float | None = None,
        rest: GerritRest | None = None,
    ) -> None:
        self.connection = connection
        #: Gerrit's REST API, for the events-log plugin (None: query only).
        self.rest = rest
        self.ledger = ledger
        self.sink = sink
        self.interval = interval
        self.margin = margin
        self.max_age = max_age if max_age is not None else ledger.retention
        self._covered_from: float | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reasons: list[str] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: Completed catch-ups, and how many events they handed on in all.
        self.runs = 0
        #: Catch-ups answered by the events-log plugin (the rest by the query).
        self.replays = 0
        self.events_sent = 0
        #: Where catch-ups and the stream's reopenings are counted.
        self.metrics: Metrics = NO_METRICS
        self._stream_opened = False

    # -- any thread ------------------------------------------------------------
    def request(self, why: str) -> None:
        """Ask for a catch-up as soon as the thread is free."""
        with self._lock:
            self._reasons.append(why)
            # Every opening of the stream after the first is a reconnect.
            opened, reopened = why == "stream opened", self._stream_opened
            self._stream_opened = self._stream_opened or opened
        if opened and reopened:
            self.metrics.gerrit_reconnect()
        self._wake.set()

    def start(self) -> None:
        key = (self.connection.config.host, self.connection.config.port)
        with _waiting_lock:
            _waiting.setdefault(key, []).append(self)
        self._thread = threading.Thread(target=self._run, name="gerrit-catchup", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        key = (self.connection.config.host, self.connection.config.port)
        with _waiting_lock:
            if self in _waiting.get(key, []):
                _waiting[key].remove(self)
                if not _waiting[key]:
                    del _waiting[key]
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.rest is not None:
            self.rest.close()

    # -- the catch-up thread -----------------------------------------------------
    def _run(self) -> None:
        wait = self.interval
        while not self._stop.is_set():
            requested = self._wake.wait(wait)
            self._wake.clear()
            wait = self.interval
            if self._stop.is_set():
                break
            with self._lock:
                reasons, self._reasons = self._reasons, []
            why = ", ".join(dict.fromkeys(reasons)) if requested and reasons else "reconciliation"
            try:
                self.run_once(why)
            except GerritError as exc:
                wait = min(self.interval, RETRY_AFTER)
                log.warning(
                    "catch-up (%s) failed: %s; trying again in %.0fs", why, shown(exc), wait
                )
                # A failed catch-up covered nothing: the next one starts from
                # the same time (a stream that reopens asks again at once).
            except Exception:
                log.exception("catch-up (%s) failed", why)

    def since(self, now: float) -> float | None:
        """Where the next catch-up starts; None when there is nothing to catch up
        from (a first start: no event was ever acted on)."""
        start = self._covered_from
        if start is None:
            start = self.ledger.caught_up_to()
            if start is None:
                start = self.ledger.last_event()
        if start is None:
            return None
        since = start - self.margin
        oldest = now - self.max_age
        if since < oldest:
            log.warning(
                "catch-up: the last event acted on is %.0fs old; looking back %.0fs only",
                now - start,
                self.max_age,
            )
            since = oldest
        return since

    def run_once(self, why: str = "requested") -> int:
        """One catch-up; returns how many events it handed on.

        :raises GerritError: the query failed (nothing was handed on).
        """
        now = time.time()
        since = self.since(now)
        sent = 0
        if since is None:
            log.info("catch-up (%s): first start, nothing to catch up on", why)
        else:
            replayed = self.replay(since, now)
            if replayed is not None:
                events, source = replayed, "the events-log"
            else:
                rows = self.connection.query_all(age_query(since, now), *CATCHUP_OPTIONS)
                events, source = synthesize(rows, since), f"{len(rows)} changes updated"
            fresh = self.ledger.unseen(events)
            for event in fresh:
                self.sink(event)
            sent = len(fresh)
            log.info(
                "catch-up (%s): %s in %.0fs, %d events, %d not seen before",
                why,
                source,
                now - since,
                len(events),
                sent,
            )
        # When the scheduler reaches this, everything before ``now`` is done.
        self.sink(TriggerEvent(type=CAUGHT_UP, created_on=now))
        self._covered_from = now
        self.runs += 1
        self.events_sent += sent
        self.metrics.catch_up(sent)
        return sent

    def replay(self, since: float, now: float) -> list[TriggerEvent] | None:
        """The events the events-log plugin stored from ``since`` to ``now``,
        oldest first; None when there is no plugin to ask, or it failed (the
        caller then queries)."""
        if self.rest is None:
            return None
        try:
            if not self.rest.has_events_log():
                return None
            lines = self.rest.events(since, now)
        except GerritError as exc:
            log.warning("catch-up: the events-log failed (%s); querying instead", shown(exc))
            return None
        events: list[TriggerEvent] = []
        for line in lines:
            try:
                event = parse_event(line, max_length=self.connection.config.max_event_bytes)
            except GerritError as exc:
                log.warning("catch-up: an events-log line was skipped: %s", shown(exc))
                continue
            if event is not None and since <= event.created_on:
                events.append(event)
        events.sort(key=lambda e: e.created_on)
        self.replays += 1
        return events
