"""Which of a project's jobs run for one change or ref: ``branch:``, ``files:``, ``skip-if``.

Jobs are filtered per change as Zuul v2 did: ``branch:`` (matched against
the branch, or the ref for a ref update), ``files:`` (any changed file
matches) and ``skip-if`` (every condition's project, branch and
all-files-match-any hold). A job filtered out takes the jobs that would run
after it along.

:class:`SelectionCache` keeps selections for a layout's life; the
:class:`~gatekeeper.scheduler.routing.Router` owns one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.config.layout import Layout
from gatekeeper.config.layout_schema import JobConfig, JobTree, SkipIf

__all__ = [
    "META_FILES",
    "NEEDS_FILES",
    "JobSelection",
    "SelectionCache",
    "job_applies",
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


class SelectionCache:
    """:func:`select_jobs` for one layout, cached by what decides a selection:
    project and pipeline, and the branch, ref and files only when a job's
    filters read them. Bounded (cleared when full). Used by one thread: the
    scheduler's, or a dry run's.
    """

    _CACHE = 8192

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._selections: dict[tuple[Any, ...], JobSelection] = {}
        self._inputs: dict[tuple[str, str], _Inputs] = {}

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
