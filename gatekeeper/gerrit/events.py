"""Turn one ``gerrit stream-events`` JSON line into a :class:`TriggerEvent`.

Pure parsing, no I/O: the SSH listener and the JSONL replayer both call
:func:`parse_event` per line. Every event type becomes a TriggerEvent (routing
decides what matters) except ``dropped-output``, Gerrit's notice that it threw
events away because we read too slowly: that is logged loudly and yields None.

Gerrit's shapes drift across versions, and we accept them all: change and
patchset numbers are strings up to 2.13 and integers from 2.14; ``refName``
is short (``master``) up to 2.11 and full from 2.12; lines before 2.11 carry
no ``eventCreatedOn``.

Most lines are one of two ordinary shapes (a change event, a ref update)
with every field of the expected JSON type. Those are read by
:func:`_read_well_formed`, which checks types without the careful reader's
per-field calls and messages; on anything unusual it gives up and the
careful reader (:func:`_read`) takes the line, so what an event becomes,
and how a bad line is reported, is decided by the careful reader alone.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from gatekeeper.errors import EventParseError
from gatekeeper.model.events import Account, Approval, TriggerEvent
from gatekeeper.model.gerrit_vocabulary import ACCOUNT_FIELDS, KNOWN_TYPES, MAX_EVENT_BYTES

log = logging.getLogger(__name__)

__all__ = ["ACCOUNT_FIELDS", "EXCERPT_LENGTH", "KNOWN_TYPES", "parse_event"]

EXCERPT_LENGTH = 200

# Tried in order when the event type is not in ACCOUNT_FIELDS.
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


def _show(value: Any) -> str:
    """``repr(value)`` for a message; a value nested too deeply for repr is named instead."""
    try:
        return repr(value)
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply to show"


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
        raise self.fail(f"'{where}.{key}' should be a number, got {_show(value)}"[:300])

    def timestamp(self, data: dict[str, Any], key: str) -> float | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"'{key}' should be seconds since the epoch, got {_show(value)}"[:300])
        try:
            seconds = float(value)
        except OverflowError:
            # Not repr'd: an integer of thousands of digits cannot be.
            raise self.fail(f"'{key}' is too large to be seconds since the epoch") from None
        if not math.isfinite(seconds):
            # NaN and Infinity: JSON as Python reads it, but no time (the
            # scheduler compares and rounds event times).
            raise self.fail(f"'{key}' should be seconds since the epoch, got {seconds}")
        return seconds

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
    line: str | bytes, legacy_approvals: bool = False, max_length: int = MAX_EVENT_BYTES
) -> TriggerEvent | None:
    """Parse one stream-events line.

    Returns None for a blank line and for ``dropped-output`` (logged at WARNING).
    ``legacy_approvals`` marks events from Gerrit older than 2.13, whose
    comment-added approvals are only the votes that comment changed.

    :raises EventParseError: for a line that is too long, not JSON, not an
        object, has no ``type``, or has a known field of the wrong type.
    """
    text = _decode(line, max_length)
    # Equivalent to ``not text.strip()`` without copying the line.
    if not text or text.isspace():
        log.debug("skipping a blank stream-events line")
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _Fields(text).fail(f"not JSON ({exc})") from exc
    except RecursionError as exc:
        raise _Fields(text).fail("not JSON that can be read (nested too deeply)") from exc
    if not isinstance(data, dict):
        raise _Fields(text).fail(f"an event should be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        raise _Fields(text).fail("the event has no 'type'")
    if kind == "dropped-output":
        log.warning(
            "Gerrit dropped stream-events output: events were lost; "
            "a catch-up (gatekeeper.gerrit.catchup) queries Gerrit for them"
        )
        return None
    try:
        event = _read_well_formed(data, kind, legacy_approvals)
    except _UnusualShapeError:
        event = _read(_Fields(text), data, kind, legacy_approvals)
    log.debug("parsed %s", event)
    return event


def _read(f: _Fields, data: dict[str, Any], kind: str, legacy_approvals: bool) -> TriggerEvent:
    """The careful reader: any shape Gerrit has sent, every field checked by name.

    :raises EventParseError: a known field has the wrong type.
    """
    change = f.obj(data, "change")
    patchset = f.obj(data, "patchSet")
    ref_update = f.obj(data, "refUpdate")
    if not ref_update and kind == "batch-ref-updated":
        # 3.x: one event for every ref an operation moved. It is routed by
        # the first (one operation is in one project); the whole list stays
        # in ``raw`` for whoever needs every ref.
        updates = data.get("refUpdates")
        if updates is not None and not isinstance(updates, list):
            raise f.fail(f"'refUpdates' should be a list, got {type(updates).__name__}")
        if updates:
            ref_update = f.obj({"refUpdates[0]": updates[0]}, "refUpdates[0]")
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
            f.string(data, "refName")
            or f.string(data, "ref")
            or f.string(data, "projectHead")
            or f.string(data, "newHead")
        )
        ref, branch = _ref_and_branch(ref_name) if ref_name else ("", "")

    new_rev = f.string(ref_update, "newRev") or f.string(data, "newRev")
    return TriggerEvent(
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


# -- the fast reader ----------------------------------------------------------
#
# Every check below is at least as strict as the careful reader's for the same
# field (``type(v) is str`` where it would accept a str, a JSON null sent to it
# rather than read as "absent"), and it reads no field the careful reader
# would not: so where it gives an event, the careful reader gives the same one,
# and where the careful reader would raise, it gives up first.
# tests/unit/test_event_fast_path.py checks this on mutated real events.


class _UnusualShapeError(Exception):
    """Raised by the fast reader: this line is for the careful reader."""


def _fast_account(value: Any) -> Account | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise _UnusualShapeError
    if not value:
        return None
    username = value.get("username", "")
    name = value.get("name", "")
    email = value.get("email", "")
    if type(username) is not str or type(name) is not str or type(email) is not str:
        raise _UnusualShapeError
    return Account(username, name, email)


def _fast_number(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is int:  # not a bool: type(True) is bool
        return value
    if type(value) is not str:
        raise _UnusualShapeError
    try:
        return int(value.strip())
    except ValueError:
        raise _UnusualShapeError from None


def _fast_approval(entry: Any, by: Account | None) -> Approval:
    if type(entry) is not dict:
        raise _UnusualShapeError
    label = entry.get("type")
    vote = _fast_number(entry.get("value"))
    if type(label) is not str or not label or vote is None:
        raise _UnusualShapeError
    old = _fast_number(entry.get("oldValue"))
    return Approval(label, vote, old, _fast_account(entry.get("by")) or by)


def _read_well_formed(data: dict[str, Any], kind: str, legacy_approvals: bool) -> TriggerEvent:
    """A change event (``change`` but no ``refUpdate``) or a ref update (the
    reverse) of a type in :data:`ACCOUNT_FIELDS`, read as :func:`_read` would.

    :raises _UnusualShapeError: any other shape, or a field of an unexpected type.
    """
    field = ACCOUNT_FIELDS.get(kind)
    if field is None:
        raise _UnusualShapeError
    account = _fast_account(data.get(field))
    change = data.get("change")
    ref_update = data.get("refUpdate")
    patchset = data.get("patchSet")
    if type(change) is dict and change and ref_update is None:
        if patchset is None:
            patchset = {}
        elif type(patchset) is not dict:
            raise _UnusualShapeError
        project = change.get("project")
        branch = change.get("branch", "")
        ref = patchset.get("ref", "")
        change_id = change.get("id", "")
        change_url = change.get("url", "")
        revision = patchset.get("revision", "")
        old_rev = ""
        new_rev = data.get("newRev", "")
        number = _fast_number(change.get("number"))
        patchset_number = _fast_number(patchset.get("number"))
    elif type(ref_update) is dict and ref_update and change is None and patchset is None:
        project = ref_update.get("project")
        ref_name = ref_update.get("refName", "")
        if type(ref_name) is not str:
            raise _UnusualShapeError
        ref, branch = _ref_and_branch(ref_name)
        change_id = change_url = revision = ""
        old_rev = ref_update.get("oldRev", "")
        new_rev = ref_update.get("newRev", "")
        if new_rev == "":
            new_rev = data.get("newRev", "")
        number = patchset_number = None
    else:
        raise _UnusualShapeError
    comment = data.get("comment", "")
    for value in (project, branch, ref, change_id, change_url, revision, old_rev, new_rev, comment):
        if type(value) is not str:
            raise _UnusualShapeError
    if not project:
        raise _UnusualShapeError
    created = data.get("eventCreatedOn")
    if type(created) is int:
        try:
            created = float(created)
        except OverflowError:
            raise _UnusualShapeError from None
    elif created is None:
        created = time.time()
    elif type(created) is not float or not math.isfinite(created):
        raise _UnusualShapeError
    approvals = data.get("approvals")
    if approvals is None:
        approvals = ()
    elif type(approvals) is list:
        approvals = tuple([_fast_approval(entry, account) for entry in approvals])
    else:
        raise _UnusualShapeError
    # Every field, in the order TriggerEvent declares them: matching eighteen
    # keyword arguments costs more than reading the rest of the event. A field
    # out of place shows at once in tests/unit/test_event_fast_path.py.
    return TriggerEvent(
        kind,  # type
        project,
        branch,
        ref,
        number,  # change
        patchset_number,  # patchset
        change_id,
        change_url,
        revision,
        old_rev,
        new_rev,
        comment,
        approvals,
        account,
        created,  # created_on
        time.monotonic(),  # received_at
        legacy_approvals,
        data,  # raw
    )
