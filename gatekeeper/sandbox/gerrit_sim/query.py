"""``gerrit query --format JSON``: a small subset of Gerrit's query language.

Terms (all must match): ``N``, ``change:N``, ``change:I<id>``, ``I<id>``,
``commit:SHA``, ``status:open|merged|abandoned|closed``, ``is:open``,
``is:closed``, ``project:X``, ``branch:X``, ``owner:USER``, ``limit:N``,
``age:N[s|m|h|d|w]`` (last updated at least that long ago),
``after:``/``since:`` and ``before:``/``until:`` a date (``2026-11-25``,
``2026-11-25T16:00:00``, UTC) or seconds since the epoch; a ``-`` before a
term negates it (``-age:90s``: updated in the last 90 seconds), plus
``hashtag:X`` and ``topic:X``. An unsupported term answers an error row
(``{"type":"error","message":...}``): 3.x then exits 0 (the row is the
answer), the 2.13 dialect exits 1, as the simulator always did (neither
version's cmd-query documents the exit status).
"""

from __future__ import annotations

import calendar
import json
import re
import time
from collections.abc import Callable
from typing import Any

from gatekeeper.sandbox.gerrit_sim import events, labels
from gatekeeper.sandbox.gerrit_sim.options import UsageError, operand
from gatekeeper.sandbox.gerrit_sim.records import CommandResult
from gatekeeper.sandbox.gerrit_sim.state import Change, PatchSet, SimState

_FLAGS = {
    "--current-patch-set": "current",
    "--patch-sets": "patchsets",
    "--all-approvals": "all_approvals",
    "--dependencies": "dependencies",
    "--submit-records": "submit_records",
    "--commit-message": "commit_message",
    "--comments": "comments",
    "--files": "files",
    "--all-reviewers": "all_reviewers",
}


class QueryError(Exception):
    """The query cannot be parsed or is not supported."""


Predicate = Callable[[Change], bool]


_AGE = re.compile(r"(\d+)\s*(s|sec|m|min|h|hour|d|day|w|week)?s?\Z")
_AGE_UNITS = {
    None: 1,
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
    "w": 604800,
    "week": 604800,
}


def _seconds(value: str) -> int:
    match = _AGE.match(value.strip().lower())
    if not match:
        raise QueryError(f'Unsupported age: "{value}"')
    return int(match.group(1)) * _AGE_UNITS[match.group(2)]


def _timestamp(value: str) -> float:
    """A date, a date and time (UTC), or seconds since the epoch."""
    text = value.strip().strip("{}\"'")
    if text.isdigit():
        return float(text)
    for form in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d_%H:%M:%S", "%Y-%m-%d"):
        try:
            return float(calendar.timegm(time.strptime(text, form)))
        except ValueError:
            continue
    raise QueryError(f'Unsupported date: "{value}"')


def _term(term: str) -> tuple[Predicate | None, int | None]:
    """A predicate for one term, or (None, limit) for ``limit:N``.

    :raises QueryError: the term is not understood.
    """
    if term.startswith("-") and len(term) > 1:
        predicate, limit = _term(term[1:])
        if predicate is None:
            raise QueryError(f'Unsupported query: "{term}"')
        return (lambda c: not predicate(c)), limit
    key, sep, value = term.partition(":")
    if key == "age":
        seconds = _seconds(value)
        return (lambda c: time.time() - c.last_updated >= seconds), None
    if key in ("after", "since"):
        moment = _timestamp(value)
        return (lambda c: c.last_updated >= moment), None
    if key in ("before", "until"):
        moment = _timestamp(value)
        return (lambda c: c.last_updated <= moment), None
    if not sep:
        key, value = ("change", term)
    if key == "limit" and value.isdigit():
        return None, int(value)
    if key == "change":
        if value.isdigit():
            return (lambda c: c.number == int(value)), None
        if value.startswith("I"):
            return (lambda c: c.change_id.startswith(value)), None
    if key == "commit":
        return (lambda c: any(ps.commit.sha.startswith(value) for ps in c.patchsets)), None
    if key == "message":
        return (lambda c: value in c.current.commit.message), None
    if key == "project":
        return (lambda c: c.project == value), None
    if key == "branch":
        return (lambda c: c.branch == value), None
    if key == "owner":
        return (lambda c: c.owner == value), None
    if key == "hashtag":
        return (lambda c: value.lower() in (h.lower() for h in c.hashtags)), None
    if key == "topic":
        return (lambda c: c.topic == value), None
    if key in ("status", "is"):
        wanted = value.lower()
        if wanted == "open":
            return (lambda c: c.status == "NEW"), None
        if wanted == "closed":
            return (lambda c: c.status != "NEW"), None
        if wanted in ("merged", "abandoned", "new") and key == "status":
            return (lambda c: c.status == wanted.upper()), None
    raise QueryError(f'Unsupported query: "{term}"')


def run(state: SimState, argv: list[str]) -> CommandResult:
    """Run ``gerrit query`` (``argv`` excludes ``gerrit query``)."""
    started = time.monotonic()
    options: set[str] = set()
    terms: list[str] = []
    start = 0
    output_format = "TEXT"
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            # The rest is the query, even a term that starts with "-".
            for rest in argv[i:]:
                terms.extend(rest.split())
            break
        name, eq, inline = arg.partition("=")
        if name in ("--format", "--start", "-S"):
            try:
                value, i = operand(argv, i, name, inline if eq else None)
            except UsageError as exc:
                return CommandResult(1, "", f"fatal: {exc}\n")
            if name == "--format":
                output_format = value.upper()
            elif value.isdigit():
                start = int(value)
            else:
                return CommandResult(1, "", f'fatal: "{value}" is not a valid value for "{name}"\n')
        elif arg in _FLAGS:
            options.add(_FLAGS[arg])
        elif arg.startswith("--"):
            return CommandResult(1, "", f'fatal: "{arg}" is not a valid option\n')
        else:
            terms.extend(arg.split())
    if output_format != "JSON":
        return CommandResult(1, "", "fatal: the simulator only answers --format JSON\n")
    if not terms:
        return CommandResult(1, "", 'fatal: Argument "QUERY" is required\n')
    predicates: list[Predicate] = []
    limit: int | None = None
    try:
        for term in terms:
            predicate, term_limit = _term(term)
            if predicate is not None:
                predicates.append(predicate)
            else:
                limit = term_limit
    except QueryError as exc:
        row = json.dumps({"type": "error", "message": str(exc)})
        return CommandResult(0 if state.dialect == "3" else 1, row + "\n", "")
    lines: list[str] = []
    with state.lock:
        matched = [c for c in state.changes.values() if all(p(c) for p in predicates)]
        matched.sort(key=lambda c: (c.last_updated, c.number), reverse=True)
        matched = matched[start:]
        more = False
        if limit is not None and len(matched) > limit:
            matched, more = matched[:limit], True
        for change in matched:
            lines.append(json.dumps(_row(state, change, options)))
    stats = {
        "type": "stats",
        "rowCount": len(lines),
        "runTimeMilliseconds": int((time.monotonic() - started) * 1000),
        "moreChanges": more,
    }
    lines.append(json.dumps(stats))
    return CommandResult(0, "".join(f"{line}\n" for line in lines), "")


def _approvals(state: SimState, patchset: PatchSet) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in labels.ORDER:
        for user, vote in patchset.votes.get(name, {}).items():
            if vote.value == 0:
                continue
            rows.append(
                {
                    "type": name,
                    "description": name,
                    "value": str(vote.value),
                    "grantedOn": vote.granted_on,
                    "by": events.account_attr(state, user),
                }
            )
    rows.sort(key=lambda row: int(row["grantedOn"]))
    return rows


def _files(patchset: PatchSet) -> list[dict[str, Any]]:
    """Gerrit's file attributes: the commit message first, as a file of its own."""
    commit = patchset.commit
    rows: list[dict[str, Any]] = [
        {
            "file": "/COMMIT_MSG",
            "type": "ADDED",
            "insertions": len(commit.message.splitlines()),
            "deletions": 0,
        }
    ]
    for path, kind, added, removed in commit.files:
        rows.append({"file": path, "type": kind, "insertions": added, "deletions": -removed})
    return rows


def _patchset(
    state: SimState, patchset: PatchSet, with_approvals: bool, with_files: bool = False
) -> dict[str, Any]:
    row = events.patchset_attr(state, patchset)
    if with_approvals:
        approvals = _approvals(state, patchset)
        if approvals:
            row["approvals"] = approvals
    if with_files:
        row["files"] = _files(patchset)
    return row


def _row(state: SimState, change: Change, options: set[str]) -> dict[str, Any]:
    """One result row; caller holds the lock."""
    attr = events.change_attr(state, change)
    status = attr.pop("status")
    if "commit_message" not in options:
        attr.pop("commitMessage")
    attr.pop("createdOn", None)
    row: dict[str, Any] = dict(attr)
    row["createdOn"] = change.created_on
    row["lastUpdated"] = change.last_updated
    row["open"] = change.is_open
    row["status"] = status
    if "comments" in options:
        row["comments"] = [
            {
                "timestamp": m.timestamp or change.last_updated,
                "reviewer": events.account_attr(state, m.author),
                "message": m.comment or m.text,
            }
            for m in change.messages
        ]
    if "patchsets" in options or "all_approvals" in options:
        row["patchSets"] = [
            _patchset(state, ps, "all_approvals" in options, "files" in options)
            for ps in change.patchsets
        ]
    if "current" in options:
        row["currentPatchSet"] = _patchset(state, change.current, True, "files" in options)
    if "dependencies" in options:
        depends = [
            {
                "id": other.change_id,
                "number": events.number(state, other.number),
                "revision": ps.commit.sha,
                "ref": ps.ref,
                "isCurrentPatchSet": ps is other.current,
            }
            for other, ps in state.depends_on(change)
        ]
        needed = [
            {
                "id": other.change_id,
                "number": events.number(state, other.number),
                "revision": other.current.commit.sha,
                "ref": other.current.ref,
                "isCurrentPatchSet": True,
            }
            for other in state.needed_by(change)
        ]
        if depends:
            row["dependsOn"] = depends
        if needed:
            row["neededBy"] = needed
    if "submit_records" in options:
        row["submitRecords"] = [_submit_record(state, change)]
    return row


def _submit_record(state: SimState, change: Change) -> dict[str, Any]:
    if not change.is_open:
        return {"status": "CLOSED"}
    needed = state.requirements_of(change.project)
    statuses = labels.submit_status(change.current.current_votes(), needed)
    label_rows: list[dict[str, Any]] = []
    for name, status, by in statuses:
        item: dict[str, Any] = {"label": name, "status": status}
        if by is not None:
            item["by"] = events.account_attr(state, by)
        label_rows.append(item)
    overall = "OK" if all(s == "OK" for _, s, _ in statuses) else "NOT_READY"
    record: dict[str, Any] = {"status": overall, "labels": label_rows}
    unmet = labels.unmet(statuses, needed)
    if unmet and state.speaks_3x():
        # 3.x: what still has to happen, one requirement per unmet label.
        record["requirements"] = [{"fallbackText": text, "type": "label"} for text in unmet]
    return record
