"""Does an event concern a pipeline, and does the change meet its requirements?

Label names match regardless of case: layouts write ``workflow``, Gerrit
sends ``Workflow``. An ``approval:`` filter on a trigger matches only votes
this event changed (Gerrit >= 2.13 repeats all current votes on every
comment, marking changed ones with oldValue), so a later plain comment on
an approved change does not trigger the gate again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gatekeeper.config.layout import (
    ApprovalRequirement,
    GerritTrigger,
    PipelineConfig,
    PipelineRequire,
)
from gatekeeper.model.change import Change
from gatekeeper.model.events import TriggerEvent

ZERO_SHA = "0" * 40


def _any_match(patterns: list[re.Pattern[str]], value: str, search: bool = False) -> bool:
    if search:
        return any(p.search(value) for p in patterns)
    return any(p.match(value) for p in patterns)


def trigger_matches(trigger: GerritTrigger, event: TriggerEvent, type_known: bool = False) -> bool:
    """Whether ``event`` fires ``trigger`` (``type_known``: its event regexes already matched)."""
    if not type_known and not _any_match(trigger.event, event.type):
        return False
    if trigger.branch and not _any_match(trigger.branch, event.branch):
        return False
    if trigger.ref and not _any_match(trigger.ref, event.ref):
        # Gerrit before 2.13 sent branch updates by short name, and layouts of
        # that time match them so (``ref: ^(?!refs/).*$``): a branch update
        # matches by either name.
        if not (event.type == "ref-updated" and event.branch):
            return False
        if not _any_match(trigger.ref, event.branch):
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


def matching_triggers(
    pipeline: PipelineConfig,
    event: TriggerEvent,
    for_type: list[GerritTrigger] | None = None,
) -> list[GerritTrigger]:
    """The pipeline's triggers that ``event`` fires; ``for_type`` (if given) are
    the ones whose event regexes match its type, looked up in advance."""
    if for_type is not None:
        return [t for t in for_type if trigger_matches(t, event, type_known=True)]
    return [t for t in pipeline.trigger.gerrit if trigger_matches(t, event)]


def event_matches(pipeline: PipelineConfig, event: TriggerEvent) -> bool:
    return bool(matching_triggers(pipeline, event))


def _votes(change: Change, label: str) -> dict[str, int]:
    for name, votes in change.approvals.items():
        if name.lower() == label.lower():
            return votes
    return {}


def approval_met(requirement: ApprovalRequirement, change: Change) -> bool | None:
    """Whether some vote satisfies every label of the requirement.

    None when the change's votes are incomplete (made from an event) and
    the votes it does carry do not settle it.
    """
    unknown = False
    for label, accepted in requirement.labels.items():
        ok = False
        for username, value in _votes(change, label).items():
            if requirement.username and not requirement.username.match(username):
                continue
            if value in accepted:
                ok = True
                break
        if not ok:
            if change.votes_complete:
                return False
            unknown = True
    return None if unknown else True


@dataclass
class Verdict:
    """Whether a change may enter a pipeline.

    ``reason`` says why not ('' if it may); ``unchecked`` lists requirements
    that could not be decided from what is known of the change (only for a
    change made from an event; they are assumed met).
    """

    reason: str = ""
    unchecked: list[str] = field(default_factory=list)


def _state(require: PipelineRequire, change: Change, verdict: Verdict) -> None:
    if require.open is not None:
        if not change.status_known:
            verdict.unchecked.append(f"open: {str(require.open).lower()}")
        elif change.is_open != require.open:
            verdict.reason = f"change is {'not ' if require.open else ''}open"
            return
    if require.current_patchset is not None:
        if not change.current_known:
            verdict.unchecked.append(f"current-patchset: {str(require.current_patchset).lower()}")
        elif change.is_current_patchset != require.current_patchset:
            verdict.reason = (
                "not the current patchset" if require.current_patchset else "current patchset"
            )
            return
    if require.status:
        if not change.status_known:
            verdict.unchecked.append(f"status: {', '.join(require.status)}")
        elif change.status not in require.status:
            verdict.reason = f"status {change.status} not in {require.status}"


def check_requirements(
    pipeline: PipelineConfig, change: Change, triggers: list[GerritTrigger] | None = None
) -> Verdict:
    """May ``change`` enter ``pipeline`` (``triggers``: the ones its event matched)?"""
    verdict = Verdict()
    _state(pipeline.require, change, verdict)
    if verdict.reason:
        return verdict
    for requirement in pipeline.require.approval:
        met = approval_met(requirement, change)
        if met is False:
            verdict.reason = f"missing approval {_describe(requirement)}"
            return verdict
        if met is None:
            verdict.unchecked.append(f"require approval {_describe(requirement)}")
    for requirement in pipeline.reject.approval:
        if not requirement.labels:
            continue
        met = approval_met(requirement, change)
        if met is True:
            verdict.reason = f"rejected by approval {_describe(requirement)}"
            return verdict
        if met is None or not change.votes_complete:
            # Votes by others could still reject it.
            verdict.unchecked.append(f"reject approval {_describe(requirement)}")
    if triggers:
        unchecked: list[str] = []
        for trigger in triggers:
            required = [approval_met(r, change) for r in trigger.require_approval]
            rejected = [approval_met(r, change) for r in trigger.reject_approval if r.labels]
            if False in required or True in rejected:
                continue
            if None in required or None in rejected or (rejected and not change.votes_complete):
                unchecked.extend(
                    [f"trigger require-approval {_describe(r)}" for r in trigger.require_approval]
                    + [f"trigger reject-approval {_describe(r)}" for r in trigger.reject_approval]
                )
                continue
            return verdict
        if unchecked:
            verdict.unchecked.extend(dict.fromkeys(unchecked))
            return verdict
        verdict.reason = "no trigger's require-approval/reject-approval is met"
    return verdict


def requirements_unmet(
    pipeline: PipelineConfig, change: Change, triggers: list[GerritTrigger] | None = None
) -> str:
    """Why the change may not enter the pipeline, or '' if it may."""
    return check_requirements(pipeline, change, triggers).reason


def _describe(requirement: ApprovalRequirement) -> str:
    labels = ", ".join(f"{k}: {v}" for k, v in requirement.labels.items())
    who = f" by {requirement.username.pattern}" if requirement.username else ""
    return f"{labels}{who}"
