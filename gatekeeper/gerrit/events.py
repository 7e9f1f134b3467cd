"""Turn one ``gerrit stream-events`` JSON line into a :class:`TriggerEvent`.

Pure parsing, no I/O: the SSH listener and the JSONL replayer both call
:func:`parse_event` per line. Every event type becomes a TriggerEvent (routing
decides what matters) except ``dropped-output``, Gerrit's notice that it threw
events away because we read too slowly: that is logged loudly and yields None.

Gerrit's shapes drift across versions, and we accept them all: change and
patchset numbers are strings up to 2.13 and integers from 2.14; ``refName``
is short (``master``) up to 2.11 and full from 2.12; lines before 2.11 carry
no ``eventCreatedOn``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from gatekeeper.errors import EventParseError
from gatekeeper.model.events import Account, Approval, TriggerEvent

log = logging.getLogger(__name__)

__all__ = ["ACCOUNT_FIELDS", "EXCERPT_LENGTH", "KNOWN_TYPES", "parse_event"]

EXCERPT_LENGTH = 200

# Which attribute names the account that caused each event type.
ACCOUNT_FIELDS: dict[str, str] = {
    "patchset-created": "uploader",
    "draft-published": "uploader",
    "comment-added": "author",
    "change-merged": "submitter",
    "merge-failed": "submitter",
    "ref-updated": "submitter",
    "change-abandoned": "abandoner",
    "change-restored": "restorer",
    "change-deleted": "deleter",
    "reviewer-added": "reviewer",
    "reviewer-deleted": "remover",
    "vote-deleted": "remover",
    "topic-changed": "changer",
    "hashtags-changed": "editor",
    "assignee-changed": "changer",
    "wip-state-changed": "changer",
    "private-state-changed": "changer",
}
#: Every event type Gerrit (and its replication plugin) documents. A listener
#: skips others, with a warning: a type we do not know cannot be routed right.
KNOWN_TYPES = frozenset(
    {
        *ACCOUNT_FIELDS,
        "project-created",
        "ref-replicated",
        "ref-replication-done",
        "ref-replication-scheduled",
        "dropped-output",
    }
)

# Tried in order when the event type is not in the table above.
_ACCOUNT_FALLBACK = (
    "uploader",
    "author",
    "submitter",
    "abandoner",
    "restorer",
    "reviewer",
    "changer",
    "editor",
    "remover",
    "deleter",
)


def _excerpt(text: str) -> str:
    if len(text) <= EXCERPT_LENGTH:
        return repr(text)
    return f"{text[:EXCERPT_LENGTH]!r}... ({len(text) - EXCERPT_LENGTH} more characters)"


class _Fields:
    """Typed access to one event's JSON; a wrong type is an EventParseError."""

    def __init__(self, text: str) -> None:
        self.text = text

    def fail(self, message: str) -> EventParseError:
        return EventParseError(f"{message}: {_excerpt(self.text)}")

    def obj(self, data: dict[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"'{key}' should be an object, got {type(value).__name__}")
        return value

    def string(self, data: dict[str, Any], key: str) -> str:
        value = data.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(f"'{key}' should be a string, got {type(value).__name__}")
        return value

    def number(self, data: dict[str, Any], key: str, where: str) -> int | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool):
            raise self.fail(f"'{where}.{key}' should be a number, got a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise self.fail(f"'{where}.{key}' should be a number, got {value!r}"[:300])

    def timestamp(self, data: dict[str, Any], key: str) -> float | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"'{key}' should be seconds since the epoch, got {value!r}"[:300])
        return float(value)

    def account(self, data: dict[str, Any], key: str) -> Account | None:
        value = self.obj(data, key)
        if not value:
            return None
        return Account(
            username=self.string(value, "username"),
            name=self.string(value, "name"),
            email=self.string(value, "email"),
        )

    def approvals(self, data: dict[str, Any], by: Account | None) -> tuple[Approval, ...]:
        value = data.get("approvals")
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail("'approvals' should be a list")
        out: list[Approval] = []
        for entry in value:
            if not isinstance(entry, dict):
                raise self.fail("each entry of 'approvals' should be an object")
            label = self.string(entry, "type")
            if not label:
                raise self.fail("an approval has no 'type'")
            vote = self.number(entry, "value", "approvals[]")
            if vote is None:
                raise self.fail(f"approval {label!r} has no 'value'")
            old = self.number(entry, "oldValue", "approvals[]")
            approver = self.account(entry, "by") or by
            out.append(Approval(label=label, value=vote, old_value=old, by=approver))
        return tuple(out)


def _ref_and_branch(ref_name: str) -> tuple[str, str]:
    """Full ref name and short branch ("" for tags and other non-branch refs)."""
    if not ref_name.startswith("refs/"):
        # Gerrit up to 2.11 sent branch updates with the short name.
        return f"refs/heads/{ref_name}", ref_name
    if ref_name.startswith("refs/heads/"):
        return ref_name, ref_name[len("refs/heads/") :]
    return ref_name, ""


def _decode(line: str | bytes, max_length: int) -> str:
    if len(line) > max_length:
        head = line[:EXCERPT_LENGTH]
        text = head if isinstance(head, str) else head.decode("utf-8", "replace")
        raise EventParseError(
            f"event line of {len(line)} characters is longer than the limit of {max_length}: "
            f"{text!r}... ({len(line) - EXCERPT_LENGTH} more characters)"
        )
    if isinstance(line, str):
        return line
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = line.decode("utf-8", "replace")
        raise EventParseError(f"event line is not UTF-8 ({exc.reason}): {_excerpt(text)}") from exc


def parse_event(
    line: str | bytes, legacy_approvals: bool = False, max_length: int = 1_000_000
) -> TriggerEvent | None:
    """Parse one stream-events line.

    Returns None for a blank line and for ``dropped-output`` (logged at WARNING).
    ``legacy_approvals`` marks events from Gerrit older than 2.13, whose
    comment-added approvals are only the votes that comment changed.

    :raises EventParseError: for a line that is too long, not JSON, not an
        object, has no ``type``, or has a known field of the wrong type.
    """
    text = _decode(line, max_length)
    if not text.strip():
        log.debug("skipping a blank stream-events line")
        return None
    f = _Fields(text)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise f.fail(f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise f.fail(f"an event should be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        raise f.fail("the event has no 'type'")
    if kind == "dropped-output":
        log.warning(
            "Gerrit dropped stream-events output: events were lost; "
            "changes may need a recheck or a manual enqueue"
        )
        return None

    change = f.obj(data, "change")
    patchset = f.obj(data, "patchSet")
    ref_update = f.obj(data, "refUpdate")
    account = f.account(data, ACCOUNT_FIELDS.get(kind, ""))
    if account is None and kind not in ACCOUNT_FIELDS:
        for key in _ACCOUNT_FALLBACK:
            account = f.account(data, key)
            if account is not None:
                break
    created = f.timestamp(data, "eventCreatedOn")

    project = (
        f.string(change, "project")
        or f.string(ref_update, "project")
        or f.string(data, "project")
        or f.string(data, "projectName")
    )
    if ref_update:
        ref, branch = _ref_and_branch(f.string(ref_update, "refName"))
    elif change:
        ref = f.string(patchset, "ref")
        branch = f.string(change, "branch")
    else:
        ref_name = (
            f.string(data, "refName") or f.string(data, "ref") or f.string(data, "projectHead")
        )
        ref, branch = _ref_and_branch(ref_name) if ref_name else ("", "")

    new_rev = f.string(ref_update, "newRev") or f.string(data, "newRev")
    event = TriggerEvent(
        type=kind,
        project=project,
        branch=branch,
        ref=ref,
        change=f.number(change, "number", "change"),
        patchset=f.number(patchset, "number", "patchSet"),
        change_id=f.string(change, "id"),
        change_url=f.string(change, "url"),
        revision=f.string(patchset, "revision"),
        old_rev=f.string(ref_update, "oldRev"),
        new_rev=new_rev,
        comment=f.string(data, "comment"),
        approvals=f.approvals(data, account),
        account=account,
        created_on=created if created is not None else time.time(),
        legacy_approvals=legacy_approvals,
        raw=data,
    )
    log.debug("parsed %s", event)
    return event
