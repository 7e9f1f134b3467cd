"""``gatekeeper route``: where each Gerrit event line would go, without Gerrit.

Every line goes through the scheduler's own routing
(:meth:`routing.Router.decisions`, each event routed once for every
pipeline) with the change as the event describes it
(:func:`change_from_event`). One JSON object per input line:

    {"line": 3, "type": "comment-added",
     "enqueue": [{"pipeline": "gate", "project": "openstack/nova",
                  "change": "123,2", "ref": "refs/changes/23/123/2",
                  "jobs": ["gate-nova-python27", ...],
                  "unchecked": ["require approval code-review: [2]"],
                  "undecided": {"reason": "needs the change's files, ...",
                                "jobs": ["gate-nova-python27", ...]}}],
     "rejected": [{"pipeline": "check", "reason": "change is not open"}]}

``unchecked`` and ``undecided`` appear only when not empty: requirements
and job filters that need what only Gerrit knows (others' votes, the files);
so does ``then``: what the change entering may set off through ``trigger:
zuul:`` (which changes, a dry run cannot know). Timer slots are not Gerrit
events: ``gatekeeper validate`` shows when each fires next.
A line that cannot be read gives ``{"line": N, "error": "..."}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from gatekeeper.config.layout import Layout
from gatekeeper.errors import EventParseError, GatekeeperError
from gatekeeper.gerrit.events import parse_event
from gatekeeper.model.change import Change
from gatekeeper.model.events import TriggerEvent
from gatekeeper.scheduler import routing
from gatekeeper.scheduler.job_filter import NEEDS_FILES

__all__ = ["change_from_event", "route_event", "route_lines"]


def route_event(router: routing.Router, event: TriggerEvent) -> dict[str, Any]:
    """Every pipeline's decision on ``event``, as the JSON object described above.

    :raises ConfigError: a template a project uses cannot be expanded.
    """
    return _route(router, event, {})


def _route(router: routing.Router, event: TriggerEvent, out: dict[str, Any]) -> dict[str, Any]:
    """:func:`route_event`, its keys added to ``out`` (route_lines puts the
    line number first) rather than to a dict of its own to be copied."""
    enqueue: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    for decision in router.decisions(event, lambda: change_from_event(event)):
        if not decision.enqueue:
            rejected.append({"pipeline": decision.pipeline, "reason": decision.reason})
            continue
        entry: dict[str, Any] = {
            "pipeline": decision.pipeline,
            "project": event.project,
            "change": event.change_key if event.change is not None else None,
            "ref": event.ref,
            "jobs": decision.selection.job_names(),
        }
        if decision.unchecked:
            entry["unchecked"] = decision.unchecked
        if decision.selection.undecided:
            entry["undecided"] = {
                "reason": NEEDS_FILES,
                "jobs": list(decision.selection.undecided),
            }
        if event.change is not None:
            then = router.then(decision.pipeline)
            if then:
                entry["then"] = then
        enqueue.append(entry)
    out["type"] = event.type
    out["enqueue"] = enqueue
    if rejected:
        out["rejected"] = rejected
    return out


def route_lines(layout: Layout, lines: Iterable[str | bytes]) -> Iterator[dict[str, Any]]:
    """One result per non-blank line, numbered from 1. Never raises for a bad line."""
    router = routing.Router(layout)
    for number, line in enumerate(lines, start=1):
        # Equivalent to ``not line.strip()`` without copying the line.
        if not line or line.isspace():
            continue
        try:
            event = parse_event(line)
        except EventParseError as exc:
            yield {"line": number, "error": str(exc)}
            continue
        if event is None:
            # dropped-output: Gerrit lost events; nothing to route.
            yield {"line": number, "type": "dropped-output", "enqueue": []}
            continue
        try:
            yield _route(router, event, {"line": number})
        except GatekeeperError as exc:
            yield {"line": number, "type": event.type, "error": str(exc)}


def _raw_change(event: TriggerEvent) -> dict[str, Any]:
    change = event.raw.get("change")
    return change if isinstance(change, dict) else {}


def change_from_event(event: TriggerEvent) -> Change | None:
    """The event's change as far as the event tells it (what a dry run has
    instead of asking Gerrit).

    Known: project, branch, number, patchset, the author's votes on a
    comment, the status when the event carries it, and that a new patchset
    is current. Not known: other reviewers' votes and the files.
    """
    if event.change is None or event.patchset is None:
        return None
    raw = _raw_change(event)
    status = raw.get("status")
    is_open = raw.get("open")
    known_status = isinstance(status, str) or isinstance(is_open, bool)
    if not isinstance(status, str):
        status = "NEW" if is_open is not False else "ABANDONED"
    if event.type == "change-merged":
        status, known_status = "MERGED", True
    elif event.type == "change-abandoned":
        status, known_status = "ABANDONED", True
    approvals: dict[str, dict[str, int]] = {}
    who = event.account.username if event.account is not None else ""
    for approval in event.approvals:
        by = approval.by.username if approval.by is not None else who
        approvals.setdefault(approval.label, {})[by or "?"] = approval.value
    return Change(
        project=event.project,
        branch=event.branch,
        number=event.change,
        patchset=event.patchset,
        ref=event.ref,
        revision=event.revision,
        change_id=event.change_id,
        url=event.change_url,
        status=status,
        approvals=approvals,
        files=None,
        status_known=known_status,
        current_known=event.type == "patchset-created",
        votes_complete=False,
    )


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, ensure_ascii=False, separators=(", ", ": "))
