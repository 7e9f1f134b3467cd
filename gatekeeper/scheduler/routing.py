"""Which pipelines an event enters: one routing of each event, for every pipeline.

One path, two callers: the scheduler (with the change as Gerrit reports
it) and ``gatekeeper route`` (a dry run, with the change as the event tells
it, see :mod:`~gatekeeper.scheduler.dryrun`). Both ask
:meth:`Router.decisions`, so a dry run says exactly what the daemon would
do, and says what it could not know without asking Gerrit. The event's
change is looked up at most once, and only when some pipeline's trigger
fired; each interested pipeline's manager is then handed its
:class:`Decision`.

:func:`decide` is the same decision for one pipeline, the plain way, with
nothing prepared: the specification the Router's shortcuts are held to
(``tests/unit/test_routing_equivalence.py``). Which jobs run is
:mod:`~gatekeeper.scheduler.job_filter`'s.

gatekeeper's own events (timer slots, ``trigger: zuul:`` events, see
:mod:`~gatekeeper.scheduler.zuul_events`) take the same path to the same
decisions; they are few, so the Router tries them on each pipeline with such
triggers instead of indexing them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from gatekeeper.config.layout import Layout
from gatekeeper.config.layout_schema import GerritTrigger, PipelineConfig, TimerTrigger
from gatekeeper.model.change import Change
from gatekeeper.model.events import TriggerEvent
from gatekeeper.model.gerrit_vocabulary import KNOWN_TYPES
from gatekeeper.scheduler.job_filter import JobSelection, SelectionCache, select_jobs
from gatekeeper.scheduler.triggers import (
    AnyTrigger,
    ChangeTrigger,
    TriggerMatcher,
    Verdict,
    check_requirements,
    has_requirements,
    matching_triggers,
    own_matching_triggers,
)
from gatekeeper.scheduler.zuul_events import OwnEvent, consequences

__all__ = ["Decision", "Router", "decide", "ref_from_event"]


@dataclass(slots=True)
class Decision:
    """What one pipeline does with one event.

    ``change`` is a ref (``is_ref``) for a ref update, and None when the
    change was not found. ``reason`` says why it is not
    enqueued ('' when it is); ``unchecked`` lists requirements that could
    not be decided from what was known of the change.
    """

    pipeline: str
    change: Change | None
    selection: JobSelection
    reason: str = ""
    unchecked: list[str] = field(default_factory=list)

    @property
    def enqueue(self) -> bool:
        return not self.reason


Selector = Callable[[str, str, str, str, "list[str] | None"], JobSelection]


def decide(
    layout: Layout,
    pipeline: PipelineConfig,
    event: TriggerEvent,
    lookup: Callable[[], Change | None],
) -> Decision | None:
    """None when ``pipeline`` has no interest in ``event``; otherwise its decision.

    ``lookup`` gives the event's change (asked only when a trigger matched).

    :raises ConfigError: a template the project uses cannot be expanded.
    :raises GerritError: from ``lookup``.
    """
    if not layout.jobs_for(event.project, pipeline.name):
        return None
    matched = matching_triggers(pipeline, event)
    if not matched:
        return None

    def select(
        project: str, name: str, branch: str, ref: str, files: list[str] | None
    ) -> JobSelection:
        return select_jobs(layout, project, name, branch, ref, files)

    return _decide_matched(pipeline, event, matched, lookup, select)


def _decide_matched(
    pipeline: PipelineConfig,
    event: TriggerEvent,
    matched: Sequence[AnyTrigger],
    lookup: Callable[[], Change | None],
    select: Selector,
) -> Decision:
    """:func:`decide` once the project is known to run jobs in ``pipeline``
    and ``matched`` (not empty) are the triggers ``event`` fired."""
    if event.change is None:
        return _decide_ref(pipeline.name, event, select)
    fired = [t for t in matched if not isinstance(t, TimerTrigger)]
    return _decide_change(pipeline, lookup(), fired, select, True)


def _decide_ref(pipeline: str, event: TriggerEvent, select: Selector) -> Decision:
    # A ref update: requirements are about changes and do not apply.
    selection = select(event.project, pipeline, event.branch, event.ref, None)
    return Decision(pipeline, ref_from_event(event), selection)


def _decide_change(
    pipeline: PipelineConfig,
    change: Change | None,
    matched: Sequence[ChangeTrigger],
    select: Selector,
    requirements: bool,
) -> Decision:
    """The decision on a change event (``requirements``: whether the pipeline
    or the ``matched`` triggers have any; without, every change may enter)."""
    name = pipeline.name
    if change is None:
        return Decision(name, None, JobSelection(), reason="change not found in Gerrit")
    verdict = check_requirements(pipeline, change, matched) if requirements else Verdict()
    if verdict.reason:
        return Decision(name, change, JobSelection(), verdict.reason, verdict.unchecked)
    selection = select(change.project, name, change.branch, "", change.files)
    return Decision(name, change, selection, "", verdict.unchecked)


@dataclass(frozen=True, slots=True)
class _Route:
    """A pipeline and its Gerrit triggers whose event regexes match one event type.

    ``triggers`` pairs each trigger with its slot among the distinct triggers
    tried for the event (:class:`_Routes`): the same trigger written in
    several pipelines (OpenStack's recheck comment is in three) is tried once
    per event. ``requirements`` is false when neither the pipeline nor these
    triggers require anything of the change.
    """

    pipeline: PipelineConfig
    name: str
    triggers: tuple[tuple[int, GerritTrigger], ...]
    requirements: bool


@dataclass(frozen=True, slots=True)
class _Routes:
    """The routes an event of one type (or of one type and project) may take,
    in layout order, and the distinct triggers their slots number, prepared."""

    routes: tuple[_Route, ...]
    matchers: tuple[TriggerMatcher, ...]

    def narrowed(self, kept: tuple[int, ...]) -> _Routes:
        """Only the routes numbered ``kept``, and only the triggers they try."""
        routes = [self.routes[i] for i in kept]
        slots: dict[int, int] = {}
        for route in routes:
            for slot, _ in route.triggers:
                slots.setdefault(slot, len(slots))
        return _Routes(
            tuple(
                _Route(
                    r.pipeline, r.name, tuple((slots[i], t) for i, t in r.triggers), r.requirements
                )
                for r in routes
            ),
            tuple(self.matchers[i] for i in slots),
        )


_NOWHERE = _Routes((), ())


class Router:
    """Routes each event once for every pipeline of one layout, with what can
    be known in advance looked up instead of recomputed.

    For each event type Gerrit documents, the pipelines with a trigger for
    it are indexed when the Router is built (other types when first seen),
    with those triggers prepared (:class:`TriggerMatcher`); for each (event
    type, project) the routes whose pipeline runs jobs for the project are
    found once. Any other pipeline is passed over without a look. Job
    selections are cached (:class:`SelectionCache`). Built per layout (a new
    layout gets a new Router); used by the scheduler thread, or by one dry run.
    """

    _CACHE = 8192

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.selections = SelectionCache(layout)
        # Bound once: it is called for every decision.
        self.select = self.selections.select
        self._types: dict[str, _Routes] = {kind: self._index(kind) for kind in KNOWN_TYPES}
        self._routes: dict[tuple[str, str], _Routes] = {}
        self._narrowed: dict[tuple[str, tuple[int, ...]], _Routes] = {}
        self._then: dict[str, list[str]] = {}
        #: Pipelines with timer or zuul triggers, in layout order.
        self._own_pipelines = [p for p in layout.pipelines if p.trigger.timer or p.trigger.zuul]

    def _index(self, kind: str) -> _Routes:
        """Every pipeline with a Gerrit trigger whose event regexes match ``kind``."""
        distinct: list[GerritTrigger] = []
        routes: list[_Route] = []
        for pipeline in self.layout.pipelines:
            pairs: list[tuple[int, GerritTrigger]] = []
            for trigger in pipeline.trigger.gerrit:
                if not any(p.match(kind) for p in trigger.event if kind):
                    continue
                # Equal triggers (by value) answer alike; the event regexes,
                # already known to match, may differ.
                slot = next(
                    (i for i, seen in enumerate(distinct) if _same_filters(seen, trigger)),
                    len(distinct),
                )
                if slot == len(distinct):
                    distinct.append(trigger)
                pairs.append((slot, trigger))
            if pairs:
                requirements = has_requirements(pipeline, [t for _, t in pairs])
                routes.append(_Route(pipeline, pipeline.name, tuple(pairs), requirements))
        return _Routes(tuple(routes), tuple(TriggerMatcher(t) for t in distinct))

    def _routes_for(self, event: TriggerEvent) -> _Routes:
        """The routes of the event's type whose pipeline runs jobs for its project."""
        key = (event.type, event.project)
        found = self._routes.get(key)
        if found is None:
            kind = self._types.get(event.type)
            if kind is None:
                if len(self._types) >= self._CACHE:
                    self._types = {k: self._types[k] for k in KNOWN_TYPES}
                    self._narrowed.clear()
                kind = self._types[event.type] = self._index(event.type)
            jobs_for = self.layout.jobs_for
            kept = tuple(i for i, r in enumerate(kind.routes) if jobs_for(event.project, r.name))
            # Most projects share a few sets of pipelines: narrowed once per set.
            narrowed = self._narrowed.get((event.type, kept))
            if narrowed is None:
                narrowed = kind.narrowed(kept) if kept else _NOWHERE
                self._narrowed[(event.type, kept)] = narrowed
            found = narrowed
            if len(self._routes) >= self._CACHE:
                self._routes.clear()
            self._routes[key] = found
        return found

    def decisions(
        self, event: TriggerEvent, lookup: Callable[[], Change | None]
    ) -> Iterator[Decision]:
        """Every interested pipeline's decision on ``event``, in layout order.

        ``lookup`` (the event's change) is called at most once, and only when
        a trigger fired for a change event; a decision is made when the
        previous one has been taken, so a caller acting on each sees every
        earlier pipeline's action done.

        :raises ConfigError: a template a project uses cannot be expanded.
        :raises GerritError: from ``lookup``.
        """
        if isinstance(event, OwnEvent):
            yield from self._own_decisions(event, lookup)
            return
        found = self._routes_for(event)
        if not found.routes:
            return
        # Whether a trigger fires reads only the event: each tried once.
        fired = [m.matches(event, True) for m in found.matchers]
        select = self.select
        unknown = event.change is not None
        change: Change | None = None
        for route in found.routes:
            matched = [trigger for slot, trigger in route.triggers if fired[slot]]
            if not matched:
                continue
            if event.change is None:
                yield _decide_ref(route.name, event, select)
                continue
            if unknown:
                change, unknown = lookup(), False
            yield _decide_change(route.pipeline, change, matched, select, route.requirements)

    def _own_decisions(
        self, event: OwnEvent, lookup: Callable[[], Change | None]
    ) -> Iterator[Decision]:
        """:meth:`decisions` for one of gatekeeper's own events."""
        unknown = event.change is not None
        change: Change | None = None
        for pipeline in self._own_pipelines:
            if not self.layout.jobs_for(event.project, pipeline.name):
                continue
            matched = own_matching_triggers(pipeline, event)
            if not matched:
                continue
            if event.change is None:
                yield _decide_ref(pipeline.name, event, self.select)
                continue
            if unknown:
                change, unknown = lookup(), False
            fired = [t for t in matched if not isinstance(t, TimerTrigger)]
            requirements = has_requirements(pipeline, fired)
            yield _decide_change(pipeline, change, fired, self.select, requirements)

    def then(self, pipeline: str) -> list[str]:
        """What a change entering ``pipeline`` may set off through zuul
        triggers, in words (:func:`~gatekeeper.scheduler.zuul_events.consequences`,
        worked out once per pipeline)."""
        found = self._then.get(pipeline)
        if found is None:
            found = self._then[pipeline] = consequences(self.layout, self.layout.pipeline(pipeline))
        return found

    def decide(
        self,
        pipeline: PipelineConfig,
        event: TriggerEvent,
        lookup: Callable[[], Change | None],
    ) -> Decision | None:
        """As :func:`decide`, for one pipeline of this layout."""
        for decision in self.decisions(event, lookup):
            if decision.pipeline == pipeline.name:
                return decision
        return None


def _same_filters(one: GerritTrigger, other: GerritTrigger) -> bool:
    """Whether two triggers fire on the same events of a type both their
    event regexes match: equal in everything but ``event``."""
    return one.model_dump(exclude={"event"}) == other.model_dump(exclude={"event"})


def ref_from_event(event: TriggerEvent) -> Change:
    """A ref update as the item a pipeline queues (change number 0)."""
    return Change.ref_update(event.project, event.branch, event.ref, event.old_rev, event.new_rev)
