"""The events gatekeeper makes itself: ``trigger: zuul:`` and ``trigger: timer:``.

Zuul v2.5 called them its ``zuul`` trigger: ``parent-change-enqueued``
(when a change enters a pipeline, each open change that needs it, its git
children and the changes whose ``Depends-On:`` name it, gets the event,
naming that pipeline) and ``project-change-merged`` (when gatekeeper merges
a change, every open change of its project gets the event: OpenStack's
``merge-check`` pipeline tests them again to find the ones that no longer
merge). A ``timer`` event is one project's share of a cron slot
(:mod:`~gatekeeper.scheduler.timer`).

They are :class:`OwnEvent` objects put on the scheduler's trigger queue like
Gerrit's, and routed by the same :class:`~gatekeeper.scheduler.routing.Router`
(``require-approval``/``reject-approval`` and the pipeline's requirements
apply). They are not Gerrit's: the event ledger, which records what Gerrit
sent, never sees them. :class:`ZuulEvents` makes the change events, in the
scheduler thread, only when some pipeline of the layout listens for them:
each costs Gerrit queries.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from gatekeeper.config.layout import Layout
from gatekeeper.config.layout_schema import PipelineConfig
from gatekeeper.errors import GerritError
from gatekeeper.gerrit.connection import GerritConnection
from gatekeeper.gerrit.source import GerritSource, change_from_query
from gatekeeper.model.change import Change
from gatekeeper.model.events import TriggerEvent
from gatekeeper.model.outside import shown

__all__ = [
    "OWN_TYPES",
    "PARENT_CHANGE_ENQUEUED",
    "PROJECT_CHANGE_MERGED",
    "TIMER",
    "OwnEvent",
    "ZuulEvents",
    "change_event",
    "change_lookup",
    "consequences",
    "is_own",
]

log = logging.getLogger(__name__)

TIMER = "timer"
PARENT_CHANGE_ENQUEUED = "parent-change-enqueued"
PROJECT_CHANGE_MERGED = "project-change-merged"
OWN_TYPES = frozenset({TIMER, PARENT_CHANGE_ENQUEUED, PROJECT_CHANGE_MERGED})


@dataclass
class OwnEvent(TriggerEvent):
    """An event gatekeeper made itself (see the module doc).

    ``pipeline``: for a timer event, the pipeline whose slot came (it
    concerns no other); for ``parent-change-enqueued``, the pipeline the
    parent entered (what the trigger's ``pipeline:`` filter matches).
    ``timespec``: the cron line of a timer event. ``known``: the change as
    Gerrit showed it when the event was made (saves asking again).
    """

    pipeline: str = ""
    timespec: str = ""
    known: Change | None = field(default=None, repr=False)

    def __str__(self) -> str:
        where = f"{self.change},{self.patchset}" if self.change else self.ref
        extra = f" ({self.pipeline})" if self.pipeline else ""
        return f"<{self.type} {self.project} {where}{extra}>"


def is_own(event: TriggerEvent) -> bool:
    """Whether gatekeeper made ``event`` (it is not one of Gerrit's)."""
    return isinstance(event, OwnEvent)


def change_event(kind: str, change: Change, pipeline: str = "") -> OwnEvent:
    """A zuul trigger event about ``change`` at its current patchset."""
    return OwnEvent(
        type=kind,
        project=change.project,
        branch=change.branch,
        ref=change.ref,
        change=change.number,
        patchset=change.patchset,
        change_id=change.change_id,
        change_url=change.url,
        revision=change.revision,
        pipeline=pipeline,
        known=change,
    )


def change_lookup(event: TriggerEvent, source: GerritSource) -> Callable[[], Change | None]:
    """How the router gets ``event``'s change: the one it was made with, or Gerrit's."""
    if isinstance(event, OwnEvent) and event.known is not None:
        known = event.known
        return lambda: known
    return functools.partial(source.change_for_event, event)


def listened(layout: Layout, kind: str) -> bool:
    """Whether some pipeline of ``layout`` has a zuul trigger for ``kind``."""
    return any(
        any(p.match(kind) for p in trigger.event)
        for pipeline in layout.pipelines
        for trigger in pipeline.trigger.zuul
    )


class ZuulEvents:
    """Makes the zuul trigger events; used in the scheduler thread only.

    ``put`` is the scheduler's ``put_trigger``: the events are routed after
    the action that made them, in the same pass.
    """

    def __init__(self, source: GerritSource, put: Callable[[TriggerEvent], None]) -> None:
        self.source = source
        self.put = put
        self._listened: tuple[int, frozenset[str]] = (0, frozenset())

    def _listens(self, layout: Layout, kind: str) -> bool:
        # Asked on every enqueue and merge: worked out once per layout.
        if self._listened[0] != id(layout):
            kinds = frozenset(k for k in OWN_TYPES - {TIMER} if listened(layout, k))
            self._listened = (id(layout), kinds)
        return kind in self._listened[1]

    def enqueued(self, layout: Layout, change: Change, pipeline: str) -> None:
        """``change`` entered ``pipeline``: each open change that needs it gets
        ``parent-change-enqueued``."""
        if change.is_ref or not self._listens(layout, PARENT_CHANGE_ENQUEUED):
            return
        try:
            children = self.source.changes_depending_on(change)
        except GerritError as exc:
            log.warning("no %s events for %s: %s", PARENT_CHANGE_ENQUEUED, change, shown(exc))
            return
        for child in children:
            self.put(change_event(PARENT_CHANGE_ENQUEUED, child, pipeline))

    def merged(self, layout: Layout, change: Change) -> None:
        """gatekeeper merged ``change``: every other open change of its project
        gets ``project-change-merged``."""
        if change.is_ref or not self._listens(layout, PROJECT_CHANGE_MERGED):
            return
        try:
            rows = self.source.connection.query_all(
                f"project:{change.project} status:open", *GerritConnection.CHANGE_OPTIONS
            )
            opened = [change_from_query(row) for row in rows]
        except GerritError as exc:
            log.warning(
                "no %s events for %s: %s", PROJECT_CHANGE_MERGED, change.project, shown(exc)
            )
            return
        for other in sorted(opened, key=lambda c: c.number):
            if other.number != change.number and other.is_open:
                self.put(change_event(PROJECT_CHANGE_MERGED, other))


def consequences(layout: Layout, pipeline: PipelineConfig) -> list[str]:
    """What a change entering ``pipeline`` may set off through zuul triggers,
    in words (for a dry run, which cannot know the changes concerned)."""
    out: list[str] = []
    for other in layout.pipelines:
        for trigger in other.trigger.zuul:
            if not any(p.match(PARENT_CHANGE_ENQUEUED) for p in trigger.event):
                continue
            if trigger.pipeline and not any(p.match(pipeline.name) for p in trigger.pipeline):
                continue
            out.append(f"{PARENT_CHANGE_ENQUEUED}: changes that need it may enter {other.name}")
            break
    if pipeline.success is not None and pipeline.success.submit:
        for other in layout.pipelines:
            if any(p.match(PROJECT_CHANGE_MERGED) for t in other.trigger.zuul for p in t.event):
                out.append(
                    f"{PROJECT_CHANGE_MERGED}: if it merges, open changes of its project "
                    f"may enter {other.name}"
                )
    return out
