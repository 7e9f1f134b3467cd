"""Reads a change's current state from Gerrit as a :class:`Change`."""

from __future__ import annotations

import logging
import re
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


class GerritSource:
    """Looks up changes for the scheduler thread."""

    def __init__(self, connection: GerritConnection) -> None:
        self.connection = connection

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
        row = self.connection.query_change(event.change)
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
