"""Which pipelines an event enters, and which of a project's jobs run there.

One decision, two callers: the scheduler (with the change as Gerrit reports
it) and ``gatekeeper route`` (a dry run, with only what the event carries).
Both go through :func:`decide`, so a dry run says exactly what the daemon
would do, and says what it could not know without asking Gerrit.

Jobs are filtered per change as Zuul v2 did: ``branch:`` (matched against
the branch, or the ref for a ref update), ``files:`` (any changed file
matches) and ``skip-if`` (every condition's project, branch and
all-files-match-any hold). A job filtered out takes the jobs that would run
after it along.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.config.layout import (
    GerritTrigger,
    JobConfig,
    JobTree,
    Layout,
    PipelineConfig,
    SkipIf,
)
from gatekeeper.model.change import Change
from gatekeeper.model.events import TriggerEvent
from gatekeeper.scheduler.triggers import TriggerMatcher, check_requirements, matching_triggers

__all__ = [
    "Decision",
    "JobSelection",
    "Router",
    "change_from_event",
    "decide",
    "ref_from_event",
    "select_jobs",
]

# Files Gerrit lists that are not in the tree: a change never touches only these.
META_FILES = frozenset({"/COMMIT_MSG", "/MERGE_LIST"})

NEEDS_FILES = "needs the change's files, which the event does not carry"


@dataclass
class JobSelection:
    """The job trees that run, and why the others do not.

    ``undecided`` names jobs kept although a filter could not be evaluated
    (the files were unknown): the scheduler always knows them, so only a dry
    run sees this.
    """

    trees: list[JobTree] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    undecided: dict[str, str] = field(default_factory=dict)
    _names: list[str] | None = field(default=None, repr=False, compare=False)

    def job_names(self) -> list[str]:
        """Every job that runs, parents before their children, in layout order."""
        if self._names is None:
            self._names = [tree.name for root in self.trees for tree in root.walk()]
        return list(self._names)


def _matches_any(patterns: list[re.Pattern[str]], *values: str) -> bool:
    return any(p.match(v) for p in patterns for v in values if v)


def _tree_files(files: list[str]) -> list[str]:
    return [f for f in files if f not in META_FILES]


def _skip_condition(
    condition: SkipIf, project: str, branch: str, files: list[str] | None
) -> bool | None:
    """Whether this ``skip-if`` entry holds (None: the files would decide)."""
    if condition.project is not None and not condition.project.match(project):
        return False
    if condition.branch is not None and not condition.branch.match(branch):
        return False
    if not condition.all_files_match_any:
        return True
    if files is None:
        return None
    changed = _tree_files(files)
    # A change that touches no file in the tree (a commit message edit) is not skipped.
    return bool(changed) and all(
        any(p.match(f) for p in condition.all_files_match_any) for f in changed
    )


def job_applies(
    job: JobConfig, project: str, branch: str, ref: str, files: list[str] | None
) -> tuple[bool, str, bool]:
    """(runs, why not or why undecided, undecided) for one job and one change or ref."""
    if job.branch and not _matches_any(job.branch, branch, ref):
        return False, f"branch {branch or ref} does not match branch:", False
    undecided = False
    if job.files:
        if files is None:
            undecided = True
        elif not any(p.match(f) for p in job.files for f in files):
            return False, "no changed file matches files:", False
    for condition in job.skip_if:
        holds = _skip_condition(condition, project, branch, files)
        if holds:
            return False, "skip-if holds", False
        if holds is None:
            undecided = True
    return True, NEEDS_FILES if undecided else "", undecided


def select_jobs(
    layout: Layout,
    project: str,
    pipeline: str,
    branch: str,
    ref: str = "",
    files: list[str] | None = None,
) -> JobSelection:
    """The trees of ``project`` in ``pipeline`` that run for this change or ref.

    ``files`` None means unknown: filters that need them let the job run
    and mark it undecided.

    :raises ConfigError: a template the project uses cannot be expanded.
    """
    selection = JobSelection()

    def prune(trees: list[JobTree]) -> list[JobTree]:
        kept: list[JobTree] = []
        for tree in trees:
            job = layout.job(tree.name)
            # Most jobs have no filter, and job_applies would say they run.
            if job.branch or job.files or job.skip_if:
                runs, why, undecided = job_applies(job, project, branch, ref, files)
                if not runs:
                    for dropped in tree.walk():
                        selection.skipped.setdefault(
                            dropped.name, why if dropped is tree else f"runs after {tree.name}"
                        )
                    continue
                if undecided:
                    selection.undecided[tree.name] = why
            kept.append(JobTree(tree.name, prune(tree.children) if tree.children else []))
        return kept

    selection.trees = prune(layout.jobs_for(project, pipeline))
    return selection


@dataclass
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
    select: Selector | None = None,
    for_type: list[GerritTrigger] | None = None,
) -> Decision | None:
    """None when ``pipeline`` has no interest in ``event``; otherwise its decision.

    ``lookup`` gives the event's change (asked only when a trigger matched);
    ``select`` chooses the jobs (default :func:`select_jobs` on ``layout``);
    ``for_type`` are the pipeline's triggers for the event's type, if known.

    :raises ConfigError: a template the project uses cannot be expanded.
    :raises GerritError: from ``lookup``.
    """
    if not layout.jobs_for(event.project, pipeline.name):
        return None
    matched = matching_triggers(pipeline, event, for_type)
    if not matched:
        return None
    if select is None:

        def select(
            project: str, name: str, branch: str, ref: str, files: list[str] | None
        ) -> JobSelection:
            return select_jobs(layout, project, name, branch, ref, files)

    return _decide_matched(pipeline, event, matched, lookup, select)


def _decide_matched(
    pipeline: PipelineConfig,
    event: TriggerEvent,
    matched: list[GerritTrigger],
    lookup: Callable[[], Change | None],
    select: Selector,
) -> Decision:
    """:func:`decide` once the project is known to run jobs in ``pipeline``
    and ``matched`` (not empty) are the triggers ``event`` fired."""
    if event.change is None:
        # A ref update: requirements are about changes and do not apply.
        selection = select(event.project, pipeline.name, event.branch, event.ref, None)
        return Decision(pipeline.name, ref_from_event(event), selection)
    change = lookup()
    if change is None:
        return Decision(pipeline.name, None, JobSelection(), reason="change not found in Gerrit")
    verdict = check_requirements(pipeline, change, matched)
    if verdict.reason:
        return Decision(pipeline.name, change, JobSelection(), verdict.reason, verdict.unchecked)
    selection = select(change.project, pipeline.name, change.branch, "", change.files)
    return Decision(pipeline.name, change, selection, "", verdict.unchecked)


@dataclass(frozen=True)
class _Route:
    """A pipeline and its Gerrit triggers whose event regexes match one event type."""

    pipeline: PipelineConfig
    triggers: tuple[TriggerMatcher, ...]

    def matched(self, event: TriggerEvent) -> list[GerritTrigger]:
        return [m.trigger for m in self.triggers if m.matches(event, True)]  # type known


@dataclass(frozen=True)
class _Inputs:
    """What a project's job selection in one pipeline reads besides the
    project: the branch (a job's ``branch:``, a ``skip-if`` branch), the ref
    (a job's ``branch:`` is matched against it too) and the files (``files:``,
    a ``skip-if`` on files). Most jobs have no filter, so most selections are
    the same for every branch, ref and list of files: one cache entry, not
    one per tag pushed or per list of files.
    """

    branch: bool
    ref: bool
    files: bool

    @classmethod
    def of(cls, layout: Layout, project: str, pipeline: str) -> _Inputs:
        branch = ref = files = False
        for root in layout.jobs_for(project, pipeline):
            for tree in root.walk():
                job = layout.job(tree.name)
                if job.branch:
                    branch = ref = True
                if job.files:
                    files = True
                for condition in job.skip_if:
                    if condition.branch is not None:
                        branch = True
                    if condition.all_files_match_any:
                        files = True
        return cls(branch, ref, files)


class Router:
    """:func:`decide` for every pipeline of one layout, with what can be known
    in advance looked up instead of recomputed.

    Most events concern few pipelines: for each (event type, project) the
    pipelines with a trigger for the type and jobs for the project are found
    once, with those triggers prepared (:class:`TriggerMatcher`); any other
    pipeline is passed over without a look. Job selections are cached by
    what decides them (project and pipeline, and the branch, ref and files
    only when a job's filters read them). Built per layout (a new layout gets
    a new Router); used by the scheduler thread, or by one dry run.
    """

    _CACHE = 8192

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._types: dict[str, tuple[_Route, ...]] = {}
        self._routes: dict[tuple[str, str], tuple[_Route, ...]] = {}
        self._selections: dict[tuple[Any, ...], JobSelection] = {}
        self._inputs: dict[tuple[str, str], _Inputs] = {}

    def _for_type(self, kind: str) -> tuple[_Route, ...]:
        """Every pipeline with a Gerrit trigger whose event regexes match ``kind``."""
        found = self._types.get(kind)
        if found is None:
            found = tuple(
                _Route(p, matchers)
                for p in self.layout.pipelines
                if (
                    matchers := tuple(
                        TriggerMatcher(t) for t in p.trigger.gerrit if _matches_any(t.event, kind)
                    )
                )
            )
            if len(self._types) >= self._CACHE:
                self._types.clear()
            self._types[kind] = found
        return found

    def _routes_for(self, event: TriggerEvent) -> tuple[_Route, ...]:
        """Those of :meth:`_for_type` whose pipeline runs jobs for the event's project."""
        key = (event.type, event.project)
        found = self._routes.get(key)
        if found is None:
            jobs_for = self.layout.jobs_for
            found = tuple(
                r for r in self._for_type(event.type) if jobs_for(event.project, r.pipeline.name)
            )
            if len(self._routes) >= self._CACHE:
                self._routes.clear()
            self._routes[key] = found
        return found

    def triggers_for_type(self, pipeline: PipelineConfig, kind: str) -> list[GerritTrigger]:
        """The pipeline's Gerrit triggers whose event regexes match ``kind``."""
        for route in self._for_type(kind):
            if route.pipeline is pipeline:
                return [m.trigger for m in route.triggers]
        return [t for t in pipeline.trigger.gerrit if _matches_any(t.event, kind)]

    def candidates(self, event: TriggerEvent) -> tuple[PipelineConfig, ...]:
        """The pipelines, in layout order, with a trigger for the event's type
        and jobs for its project: the only ones :func:`decide` may answer for."""
        return tuple(route.pipeline for route in self._routes_for(event))

    def select(
        self, project: str, pipeline: str, branch: str, ref: str, files: list[str] | None
    ) -> JobSelection:
        """:func:`select_jobs`, cached; the selection is shared: do not change it."""
        inputs = self._inputs.get((project, pipeline))
        if inputs is None:
            if len(self._inputs) >= self._CACHE:
                self._inputs.clear()
            inputs = self._inputs[(project, pipeline)] = _Inputs.of(self.layout, project, pipeline)
        key = (
            project,
            pipeline,
            branch if inputs.branch else None,
            ref if inputs.ref else None,
            # None: unknown, or no filter reads the files.
            tuple(files) if inputs.files and files is not None else None,
        )
        found = self._selections.get(key)
        if found is None:
            if len(self._selections) >= self._CACHE:
                self._selections.clear()
            found = select_jobs(self.layout, project, pipeline, branch, ref, files)
            self._selections[key] = found
        return found

    def decide(
        self,
        pipeline: PipelineConfig,
        event: TriggerEvent,
        lookup: Callable[[], Change | None],
    ) -> Decision | None:
        """As :func:`decide`, for one pipeline of this layout."""
        for route in self._routes_for(event):
            # ``in`` on the old tuple of candidates compared so: by identity, then value.
            if route.pipeline is pipeline or route.pipeline == pipeline:
                matched = route.matched(event)
                if not matched:
                    return None
                return _decide_matched(pipeline, event, matched, lookup, self.select)
        return None

    def decisions(
        self, event: TriggerEvent, lookup: Callable[[], Change | None]
    ) -> Iterator[Decision]:
        """Every interested pipeline's decision on ``event``, in layout order."""
        for route in self._routes_for(event):
            matched = route.matched(event)
            if matched:
                yield _decide_matched(route.pipeline, event, matched, lookup, self.select)


def ref_from_event(event: TriggerEvent) -> Change:
    """A ref update as the item a pipeline queues (change number 0)."""
    return Change(
        project=event.project,
        branch=event.branch,
        number=0,
        patchset=0,
        ref=event.ref,
        revision=event.new_rev,
        old_rev=event.old_rev,
        new_rev=event.new_rev,
    )


def _raw_change(event: TriggerEvent) -> dict[str, Any]:
    change = event.raw.get("change")
    return change if isinstance(change, dict) else {}


def change_from_event(event: TriggerEvent) -> Change | None:
    """The event's change as far as the event tells it (for a dry run).

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
