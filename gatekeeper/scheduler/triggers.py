"""Does an event concern a pipeline, and does the change meet its requirements?

Label names match regardless of case: layouts write ``workflow``, Gerrit
sends ``Workflow``. An ``approval:`` filter on a trigger matches only votes
this event changed (Gerrit >= 2.13 repeats all current votes on every
comment, marking changed ones with oldValue), so a later plain comment on
an approved change does not trigger the gate again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gatekeeper.config.layout_schema import (
    ApprovalRequirement,
    GerritTrigger,
    PipelineConfig,
    PipelineRequire,
    TimerTrigger,
    ZuulTrigger,
)
from gatekeeper.model.change import Change
from gatekeeper.model.events import TriggerEvent
from gatekeeper.scheduler.zuul_events import TIMER, OwnEvent

#: A trigger a change event fires: it may require or reject approvals.
ChangeTrigger = GerritTrigger | ZuulTrigger
#: Any trigger of a pipeline.
AnyTrigger = GerritTrigger | ZuulTrigger | TimerTrigger

ZERO_SHA = "0" * 40


# A filter's test on one value: a pattern's bound ``match`` or ``search``
# (a match object or None), or several patterns ORed.
Test = Callable[[str], object]


def _any_of(tests: list[Test]) -> Test | None:
    """One test for a filter (true when any of its patterns matches); None
    when the trigger has no such filter."""
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    return lambda value: any(test(value) for test in tests)


class TriggerMatcher:
    """One Gerrit trigger, prepared to be tried on many events.

    Each filter becomes one test (None when the trigger has no such filter,
    so an absent filter costs one comparison), and ``approval:`` a tuple of
    (lower-cased label, vote). :class:`~gatekeeper.scheduler.routing.Router`
    builds one per distinct trigger and event type and keeps it for the
    layout's life, in the scheduler thread (or a dry run's); immutable once
    built.
    """

    __slots__ = (
        "approval",
        "branch",
        "comment",
        "email",
        "event",
        "ignore_deletes",
        "ref",
        "trigger",
        "username",
    )

    def __init__(self, trigger: GerritTrigger) -> None:
        self.trigger = trigger
        self.event = tuple(p.match for p in trigger.event)
        self.branch = _any_of([p.match for p in trigger.branch])
        self.ref = _any_of([p.match for p in trigger.ref])
        self.ignore_deletes = trigger.ignore_deletes
        self.comment = _any_of([p.search for p in trigger.comment])
        self.username = _any_of([p.match for p in trigger.username])
        self.email = _any_of([p.match for p in trigger.email])
        self.approval = tuple(
            (label.lower(), int(value))
            for wanted in trigger.approval
            for label, value in wanted.items()
        )

    def matches(self, event: TriggerEvent, type_known: bool = False) -> bool:
        """Whether ``event`` fires the trigger (``type_known``: its event regexes matched)."""
        if not type_known and not any(m(event.type) for m in self.event):
            return False
        if self.branch is not None and not self.branch(event.branch):
            return False
        if self.ref is not None and not self.ref(event.ref):
            # Gerrit before 2.13 sent branch updates by short name, and layouts of
            # that time match them so (``ref: ^(?!refs/).*$``): a branch update
            # matches by either name.
            if not (event.type == "ref-updated" and event.branch):
                return False
            if not self.ref(event.branch):
                return False
        if self.ignore_deletes and event.type == "ref-updated" and event.new_rev == ZERO_SHA:
            return False
        if self.comment is not None and not self.comment(event.comment):
            return False
        account = event.account
        if self.username is not None and not (account and self.username(account.username)):
            return False
        if self.email is not None and not (account and self.email(account.email)):
            return False
        if self.approval:
            # Every (label, vote) the trigger names must be among the votes cast.
            cast = [(a.label.lower(), a.value) for a in event.changed_approvals()]
            for wanted in self.approval:
                if wanted not in cast:
                    return False
        return True


def trigger_matches(trigger: GerritTrigger, event: TriggerEvent, type_known: bool = False) -> bool:
    """Whether ``event`` fires ``trigger`` (``type_known``: its event regexes already matched)."""
    return TriggerMatcher(trigger).matches(event, type_known)


def matching_triggers(pipeline: PipelineConfig, event: TriggerEvent) -> Sequence[AnyTrigger]:
    """The pipeline's triggers that ``event`` fires."""
    if isinstance(event, OwnEvent):
        return own_matching_triggers(pipeline, event)
    return [t for t in pipeline.trigger.gerrit if trigger_matches(t, event)]


def zuul_trigger_matches(trigger: ZuulTrigger, event: OwnEvent) -> bool:
    """Whether gatekeeper's ``event`` fires a ``trigger: zuul:`` entry: its
    type matches an ``event`` regex and, for ``parent-change-enqueued``, the
    pipeline the parent entered matches a ``pipeline`` regex (if any)."""
    if not any(p.match(event.type) for p in trigger.event):
        return False
    return not trigger.pipeline or any(p.match(event.pipeline) for p in trigger.pipeline)


def own_matching_triggers(
    pipeline: PipelineConfig, event: OwnEvent
) -> Sequence[ZuulTrigger | TimerTrigger]:
    """The pipeline's zuul or timer triggers that gatekeeper's ``event`` fires.

    A timer event fires only the pipeline whose slot came, and only while
    that pipeline still has the cron line (a reconfigure may have dropped it).
    """
    if event.type == TIMER:
        if event.pipeline != pipeline.name:
            return []
        return [t for t in pipeline.trigger.timer if t.time == event.timespec][:1]
    return [t for t in pipeline.trigger.zuul if zuul_trigger_matches(t, event)]


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


def has_requirements(pipeline: PipelineConfig, triggers: Sequence[ChangeTrigger]) -> bool:
    """Whether :func:`check_requirements` may find anything to say about a
    change that fired ``triggers``: false when neither the pipeline nor any
    of them requires or rejects anything, so every change may enter."""
    require = pipeline.require
    return bool(
        require.open is not None
        or require.current_patchset is not None
        or require.status
        or require.approval
        or pipeline.reject.approval
        or any(t.require_approval or t.reject_approval for t in triggers)
    )


def check_requirements(
    pipeline: PipelineConfig, change: Change, triggers: Sequence[ChangeTrigger] | None = None
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
            if not trigger.require_approval and not trigger.reject_approval:
                return verdict  # what most triggers are: nothing more to meet
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
    pipeline: PipelineConfig, change: Change, triggers: Sequence[ChangeTrigger] | None = None
) -> str:
    """Why the change may not enter the pipeline, or '' if it may."""
    return check_requirements(pipeline, change, triggers).reason


def _describe(requirement: ApprovalRequirement) -> str:
    labels = ", ".join(f"{k}: {v}" for k, v in requirement.labels.items())
    who = f" by {requirement.username.pattern}" if requirement.username else ""
    return f"{labels}{who}"
