"""Reads a change's current state from Gerrit as a :class:`Change`."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

from gatekeeper.errors import GerritError
from gatekeeper.gerrit.connection import GerritConnection
from gatekeeper.model.change import Change
from gatekeeper.model.events import TriggerEvent

log = logging.getLogger(__name__)


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise GerritError(f"gerrit query: {what} is not a number: {value!r}") from exc


def _file_names(patchset: dict[str, Any]) -> list[str] | None:
    files = patchset.get("files")
    if not isinstance(files, list):
        return None
    return [str(f["file"]) for f in files if isinstance(f, dict) and "file" in f]


# Footers are matched as Gerrit and Zuul read them: one per line, anywhere in
# the message, the Change-Id full or abbreviated.
_DEPENDS_ON = re.compile(r"^Depends-On:\s*(I[0-9a-fA-F]{8,40})\s*$", re.MULTILINE | re.IGNORECASE)


def depends_on_footers(message: str) -> list[str]:
    """The Change-Ids a commit message's ``Depends-On:`` footers name, in order."""
    return list(dict.fromkeys(m.group(1) for m in _DEPENDS_ON.finditer(message)))


def change_from_query(row: dict[str, Any]) -> Change:
    """A ``gerrit query --current-patch-set --all-approvals --files`` row as a Change.

    :raises GerritError: the row lacks what every change has.
    """
    try:
        current = row.get("currentPatchSet") or {}
        approvals: dict[str, dict[str, int]] = {}
        for approval in current.get("approvals", []):
            by = approval.get("by", {})
            who = by.get("username") or by.get("email") or by.get("name") or "?"
            approvals.setdefault(approval["type"], {})[who] = int(approval["value"])
        return Change(
            project=row["project"],
            branch=row["branch"],
            number=_int(row["number"], "number"),
            patchset=_int(current.get("number", 0), "patchset"),
            ref=current.get("ref", ""),
            revision=current.get("revision", ""),
            change_id=row.get("id", ""),
            subject=row.get("subject", ""),
            url=row.get("url", ""),
            owner=(row.get("owner") or {}).get("username", ""),
            status=row.get("status", "NEW"),
            approvals=approvals,
            files=_file_names(current),
            depends_on=depends_on_footers(str(row.get("commitMessage") or "")),
            git_parents=[
                (_int(d["number"], "dependsOn.number"), bool(d.get("isCurrentPatchSet", True)))
                for d in row.get("dependsOn") or []
            ],
            git_children=[_int(d["number"], "neededBy.number") for d in row.get("neededBy") or []],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise GerritError(f"gerrit query row is not a change: {exc!r}") from exc


def lags_behind(row: dict[str, Any], event: TriggerEvent) -> str:
    """What of ``event`` Gerrit's query ``row`` does not show yet ("" if nothing).

    A query can lag behind the event stream (a replica, a slow index): the
    row may not have the event's patch set yet, or the votes it cast. A vote
    missing from a row updated after the event was changed again since, which
    is not lag.
    """
    current = row.get("currentPatchSet") or {}
    try:
        shown = int(current.get("number", 0))
    except (TypeError, ValueError):
        shown = 0
    if event.patchset is not None and shown < event.patchset:
        return f"patchset {event.patchset} (query shows {shown})"
    changed = event.changed_approvals() if event.type == "comment-added" else []
    if not changed:
        return ""
    try:
        updated = float(row.get("lastUpdated") or 0)
    except (TypeError, ValueError):
        updated = 0.0
    if updated >= int(event.created_on):
        return ""
    votes = set(_votes_on(row, event.patchset))
    for approval in changed:
        who = approval.by.username if approval.by is not None else ""
        if (approval.label.lower(), approval.value, who) not in votes:
            return f"vote {approval.label}{approval.value:+d} by {who or '?'}"
    return ""


def comments_since(row: dict[str, Any], username: str, since: float) -> Iterator[str]:
    """The messages of ``username``'s comments on a query row (``--comments``)
    made at or after ``since``: how gatekeeper finds whether its own report
    reached a change."""
    for comment in row.get("comments") or []:
        reviewer = comment.get("reviewer") or {}
        stamp = comment.get("timestamp")
        if reviewer.get("username") != username or not isinstance(stamp, int | float):
            continue
        if stamp >= since:
            yield str(comment.get("message") or "")


def _votes_on(row: dict[str, Any], patchset: int | None) -> Iterator[tuple[str, int, str]]:
    sets = list(row.get("patchSets") or [])
    if row.get("currentPatchSet"):
        sets.append(row["currentPatchSet"])
    for ps in sets:
        if patchset is not None and str(ps.get("number")) != str(patchset):
            continue
        for approval in ps.get("approvals") or []:
            try:
                value = int(approval.get("value"))
            except (TypeError, ValueError):
                continue
            who = (approval.get("by") or {}).get("username", "")
            yield str(approval.get("type", "")).lower(), value, who


#: Waits before asking Gerrit again when its query lags behind an event
#: (doubling, about 5 s in all), then the scheduler goes on with what it shows.
CONSISTENCY_DELAYS = (0.1, 0.2, 0.4, 0.8, 1.6, 1.9)


class GerritSource:
    """Looks up changes for the scheduler thread."""

    def __init__(
        self,
        connection: GerritConnection,
        consistency_delays: tuple[float, ...] = CONSISTENCY_DELAYS,
    ) -> None:
        self.connection = connection
        self.consistency_delays = consistency_delays
        self._waiter = threading.Event()
        #: Queries repeated because Gerrit lagged, and lookups that gave up waiting.
        self.consistency_retries = 0
        self.consistency_gave_up = 0

    def _row_for_event(self, event: TriggerEvent, number: int) -> dict[str, Any] | None:
        """The query row of the event's change, asked again (bounded) while it
        does not show what the event says."""
        row = self.connection.query_change(number)
        waited = 0.0
        for delay in self.consistency_delays:
            missing = lags_behind(row, event) if row else "the change"
            if not missing:
                return row
            self.consistency_retries += 1
            log.info(
                "gerrit query does not show %s of %s yet; asking again in %.1fs",
                missing,
                event,
                delay,
            )
            self._waiter.wait(delay)
            waited += delay
            row = self.connection.query_change(number)
        missing = lags_behind(row, event) if row else "the change"
        if missing:
            self.consistency_gave_up += 1
            log.warning(
                "gerrit query still does not show %s of %s after %.1fs; going on with what it has",
                missing,
                event,
                waited,
            )
        return row

    def get_change(self, number: int) -> Change | None:
        """:raises GerritError:"""
        row = self.connection.query_change(number)
        return change_from_query(row) if row else None

    def changes_with_id(self, change_id: str) -> list[Change]:
        """Every change whose Change-Id starts with ``change_id`` (any project or branch).

        :raises GerritError:
        """
        return [change_from_query(r) for r in self.connection.query_changes(f"change:{change_id}")]

    def changes_depending_on(self, change: Change) -> list[Change]:
        """Open changes that need ``change``: its git children, and those whose
        ``Depends-On:`` names its Change-Id.

        :raises GerritError:
        """
        found: dict[int, Change] = {}
        for number in change.git_children:
            child = self.get_change(number)
            if child is not None and child.is_open:
                found[number] = child
        if change.change_id:
            rows = self.connection.query_changes(f"message:{change.change_id} status:open")
            for row in rows:
                other = change_from_query(row)
                if any(change.change_id.startswith(d) for d in other.depends_on):
                    found.setdefault(other.number, other)
        return [found[n] for n in sorted(found)]

    def change_for_event(self, event: TriggerEvent) -> Change | None:
        """The change an event is about, at the patchset the event names.

        ``is_current_patchset`` tells whether that patchset is still current.
        """
        if event.change is None:
            return None
        row = self._row_for_event(event, event.change)
        if not row:
            return None
        change = change_from_query(row)
        if event.patchset is not None and event.patchset != change.patchset:
            # The event is about an older patchset: test what the event named.
            change.is_current_patchset = False
            change.patchset = event.patchset
            change.ref = event.ref or change.ref
            change.revision = event.revision
            change.approvals = {}
            change.files = None
            for patchset in row.get("patchSets") or []:
                if str(patchset.get("number")) == str(event.patchset):
                    change.files = _file_names(patchset)
        return change
