"""Does an event concern a pipeline, and does the change meet its requirements?

Label names match regardless of case: layouts write ``workflow``, Gerrit
sends ``Workflow``. An ``approval:`` filter on a trigger matches only votes
this event changed (Gerrit >= 2.13 repeats all current votes on every
comment, marking changed ones with oldValue), so a later plain comment on
an approved change does not trigger the gate again.
"""

from __future__ import annotations

import re
from typing import Any

from gatekeeper.config.layout import ApprovalRequirement, GerritTrigger, PipelineConfig
from gatekeeper.model.change import Change
from gatekeeper.model.events import TriggerEvent

ZERO_SHA = "0" * 40


def _any_match(patterns: list[re.Pattern[str]], value: str, search: bool = False) -> bool:
    if search:
        return any(p.search(value) for p in patterns)
    return any(p.match(value) for p in patterns)


def trigger_matches(trigger: GerritTrigger, event: TriggerEvent) -> bool:
    if not _any_match(trigger.event, event.type):
        return False
    if trigger.branch and not _any_match(trigger.branch, event.branch):
        return False
    if trigger.ref and not _any_match(trigger.ref, event.ref):
        return False
    if trigger.ignore_deletes and event.type == "ref-updated" and event.new_rev == ZERO_SHA:
        return False
    if trigger.comment and not _any_match(trigger.comment, event.comment, search=True):
        return False
    account = event.account
    if trigger.username and not (account and _any_match(trigger.username, account.username)):
        return False
    if trigger.email and not (account and _any_match(trigger.email, account.email)):
        return False
    if trigger.approval:
        cast = event.changed_approvals()
        for wanted in trigger.approval:
            for label, value in wanted.items():
                if not any(
                    a.label.lower() == label.lower() and a.value == int(value) for a in cast
                ):
                    return False
    return True


def matching_triggers(pipeline: PipelineConfig, event: TriggerEvent) -> list[GerritTrigger]:
    return [t for t in pipeline.trigger.gerrit if trigger_matches(t, event)]


def event_matches(pipeline: PipelineConfig, event: TriggerEvent) -> bool:
    return bool(matching_triggers(pipeline, event))


def _votes(change: Change, label: str) -> dict[str, int]:
    for name, votes in change.approvals.items():
        if name.lower() == label.lower():
            return votes
    return {}


def approval_met(requirement: ApprovalRequirement, change: Change) -> bool:
    """Some vote on the change satisfies every label of the requirement."""
    for label, accepted in requirement.labels.items():
        ok = False
        for username, value in _votes(change, label).items():
            if requirement.username and not requirement.username.match(username):
                continue
            if value in accepted:
                ok = True
                break
        if not ok:
            return False
    return True


def _state_unmet(require: Any, change: Change, rejecting: bool) -> str:
    if require.open is not None and change.is_open != require.open:
        if not rejecting:
            return f"change is {'not ' if require.open else ''}open"
    if (
        require.current_patchset is not None
        and not rejecting
        and change.is_current_patchset != require.current_patchset
    ):
        return "not the current patchset" if require.current_patchset else "current patchset"
    if require.status and not rejecting and change.status not in require.status:
        return f"status {change.status} not in {require.status}"
    return ""


def requirements_unmet(
    pipeline: PipelineConfig, change: Change, triggers: list[GerritTrigger] | None = None
) -> str:
    """Why the change may not enter the pipeline, or '' if it may."""
    why = _state_unmet(pipeline.require, change, rejecting=False)
    if why:
        return why
    for requirement in pipeline.require.approval:
        if not approval_met(requirement, change):
            return f"missing approval {_describe(requirement)}"
    for requirement in pipeline.reject.approval:
        if requirement.labels and approval_met(requirement, change):
            return f"rejected by approval {_describe(requirement)}"
    if triggers:
        for trigger in triggers:
            if all(approval_met(r, change) for r in trigger.require_approval) and not any(
                approval_met(r, change) for r in trigger.reject_approval if r.labels
            ):
                return ""
        return "no trigger's require-approval/reject-approval is met"
    return ""


def _describe(requirement: ApprovalRequirement) -> str:
    labels = ", ".join(f"{k}: {v}" for k, v in requirement.labels.items())
    who = f" by {requirement.username.pattern}" if requirement.username else ""
    return f"{labels}{who}"
