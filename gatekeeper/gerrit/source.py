"""Reads a change's current state from Gerrit as a :class:`Change`."""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Iterator
from typing import Any

from gatekeeper.errors import GerritError
from gatekeeper.gerrit.changeinfo import ChangeQueries
from gatekeeper.model.change import Change
from gatekeeper.model.events import TriggerEvent
from gatekeeper.model.outside import shown

log = logging.getLogger(__name__)


def _describe(value: Any) -> str:
    """A value for an error message: short, escaped, never repr'd whole
    (a row's field may be nested too deeply for repr)."""
    if isinstance(value, str):
        return repr(shown(value, 60))
    if isinstance(value, bool | int | float) or value is None:
        return shown(value, 60)
    return f"a {type(value).__name__}"


def _int(value: Any, what: str) -> int:
    """Gerrit sends numbers as numbers, or (up to 2.13) as strings of digits."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise GerritError(f"gerrit query: {what} is not a number: {_describe(value)}")


def _obj(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GerritError(f"gerrit query: {what} is not an object: {_describe(value)}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise GerritError(f"gerrit query: {what} is not a list: {_describe(value)}")
    return value


def _text(value: Any, what: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise GerritError(f"gerrit query: {what} is not a string: {_describe(value)}")
    return value


def _file_names(patchset: dict[str, Any]) -> list[str] | None:
    files = patchset.get("files")
    if files is None:
        return None
    names = []
    for entry in _list(files, "currentPatchSet.files"):
        name = _obj(entry, "currentPatchSet.files[]").get("file")
        names.append(_text(name, "currentPatchSet.files[].file"))
    return names


# Footers are matched as Gerrit and Zuul read them: one per line, anywhere in
# the message, the Change-Id full or abbreviated.
_DEPENDS_ON = re.compile(r"^Depends-On:\s*(I[0-9a-fA-F]{8,40})\s*$", re.MULTILINE | re.IGNORECASE)


def depends_on_footers(message: str) -> list[str]:
    """The Change-Ids a commit message's ``Depends-On:`` footers name, in order."""
    return list(dict.fromkeys(m.group(1) for m in _DEPENDS_ON.finditer(message)))


def change_from_query(row: dict[str, Any]) -> Change:
    """A ``gerrit query --current-patch-set --all-approvals --files`` row as a Change.

    Every field is checked for the type Gerrit sends: a row is a reply from
    outside, and a Change is used as typed.

    :raises GerritError: the row lacks what every change has, or a field has
        the wrong type.
    """
    row = _obj(row, "the row")
    current = _obj(row.get("currentPatchSet"), "currentPatchSet")
    approvals: dict[str, dict[str, int]] = {}
    for approval in _list(current.get("approvals"), "currentPatchSet.approvals"):
        approval = _obj(approval, "an approval")
        by = _obj(approval.get("by"), "approval.by")
        who = (
            _text(by.get("username"), "approval.by.username")
            or _text(by.get("email"), "approval.by.email")
            or _text(by.get("name"), "approval.by.name")
            or "?"
        )
        label = _text(approval.get("type"), "approval.type")
        if not label:
            raise GerritError("gerrit query row is not a change: an approval has no type")
        approvals.setdefault(label, {})[who] = _int(approval.get("value"), "approval.value")
    project = _text(row.get("project"), "project")
    branch = _text(row.get("branch"), "branch")
    if not project or not branch or row.get("number") is None:
        raise GerritError("gerrit query row is not a change: no project, branch or number")
    git_parents = []
    for entry in _list(row.get("dependsOn"), "dependsOn"):
        entry = _obj(entry, "dependsOn[]")
        is_current = entry.get("isCurrentPatchSet", True)
        if not isinstance(is_current, bool):
            raise GerritError(
                f"gerrit query: dependsOn[].isCurrentPatchSet: {_describe(is_current)}"
            )
        git_parents.append((_int(entry.get("number"), "dependsOn.number"), is_current))
    return Change(
        project=project,
        branch=branch,
        number=_int(row.get("number"), "number"),
        patchset=_int(current.get("number", 0), "patchset"),
        ref=_text(current.get("ref"), "currentPatchSet.ref"),
        revision=_text(current.get("revision"), "currentPatchSet.revision"),
        change_id=_text(row.get("id"), "id"),
        subject=_text(row.get("subject"), "subject"),
        url=_text(row.get("url"), "url"),
        owner=_text(_obj(row.get("owner"), "owner").get("username"), "owner.username"),
        status=_text(row.get("status"), "status", "NEW"),
        approvals=approvals,
        files=_file_names(current),
        depends_on=depends_on_footers(_text(row.get("commitMessage"), "commitMessage")),
        git_parents=git_parents,
        git_children=[
            _int(_obj(d, "neededBy[]").get("number"), "neededBy.number")
            for d in _list(row.get("neededBy"), "neededBy")
        ],
    )


def _lenient_int(value: Any) -> int | None:
    """A number Gerrit sent, or None for anything else (never raises)."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _lenient_float(value: Any) -> float | None:
    """A time Gerrit sent (a number, or a string of one), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a list a row holds (anything else left out)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def lags_behind(row: dict[str, Any], event: TriggerEvent) -> str:
    """What of ``event`` Gerrit's query ``row`` does not show yet ("" if nothing).

    A query can lag behind the event stream (a replica, a slow index): the
    row may not have the event's patch set yet, or the votes it cast. A vote
    missing from a row updated after the event was changed again since, which
    is not lag. Never raises: a row of an unexpected shape shows nothing.
    """
    current = row.get("currentPatchSet")
    number = _lenient_int(current.get("number", 0)) if isinstance(current, dict) else None
    seen = number if number is not None else 0
    if event.patchset is not None and seen < event.patchset:
        return f"patchset {event.patchset} (query shows {seen})"
    changed = event.changed_approvals() if event.type == "comment-added" else []
    if not changed:
        return ""
    updated = _lenient_float(row.get("lastUpdated"))
    created = event.created_on
    if updated is not None and math.isfinite(created) and updated >= math.floor(created):
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
    for comment in _dicts(row.get("comments")):
        reviewer = comment.get("reviewer")
        stamp = comment.get("timestamp")
        if not isinstance(reviewer, dict) or reviewer.get("username") != username:
            continue
        if not isinstance(stamp, int | float) or isinstance(stamp, bool) or not stamp >= since:
            continue
        message = comment.get("message")
        yield message if isinstance(message, str) else ""


def _votes_on(row: dict[str, Any], patchset: int | None) -> Iterator[tuple[str, int, str]]:
    sets = _dicts(row.get("patchSets"))
    if isinstance(row.get("currentPatchSet"), dict):
        sets.append(row["currentPatchSet"])
    for ps in sets:
        if patchset is not None and _lenient_int(ps.get("number")) != patchset:
            continue
        for approval in _dicts(ps.get("approvals")):
            value = _lenient_int(approval.get("value"))
            label = approval.get("type")
            if value is None or not isinstance(label, str):
                continue
            by = approval.get("by")
            who = by.get("username", "") if isinstance(by, dict) else ""
            yield label.lower(), value, who if isinstance(who, str) else ""


#: Waits before asking Gerrit again when its query lags behind an event
#: (doubling, about 5 s in all), then the scheduler goes on with what it shows.
CONSISTENCY_DELAYS = (0.1, 0.2, 0.4, 0.8, 1.6, 1.9)


class GerritSource:
    """Looks up changes for the scheduler thread."""

    def __init__(
        self,
        connection: ChangeQueries,
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
