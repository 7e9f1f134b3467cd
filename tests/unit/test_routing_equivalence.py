"""The Router's shortcuts answer as the plain functions do.

The Router prepares each trigger once (TriggerMatcher), finds the pipelines
an event may concern once per (event type, project), and caches job
selections by only what a project's job filters read. These tests hold
each shortcut against the plain code it replaces (kept here as the spec:
reference_matches, reference_select_jobs, reference_decide), on OpenStack's
production layout and on random events, branches, refs and files; and
``gatekeeper route`` on whole lines against the same with the fast event
reader switched off and every pipeline asked the plain way.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.config.layout import Layout, load_layout
from gatekeeper.config.layout_schema import GerritTrigger, JobTree, PipelineConfig
from gatekeeper.gerrit import events as gerrit_events
from gatekeeper.gerrit.events import parse_event
from gatekeeper.model.change import Change
from gatekeeper.model.events import Account, Approval, TriggerEvent
from gatekeeper.scheduler import dryrun, job_filter, routing
from gatekeeper.scheduler.triggers import ZERO_SHA, TriggerMatcher
from gatekeeper.scheduler.zuul_events import consequences

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "testdata"
OPENSTACK = SHARED / "layouts" / "openstack-project-config-2015.yaml"
EVENTS = [
    SHARED / "gerrit" / name for name in ("events-documented-2.13.jsonl", "events-wire-2.13.jsonl")
]

pytestmark = pytest.mark.timeout(120)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def layout() -> Layout:
    if not OPENSTACK.exists():
        pytest.skip(f"{OPENSTACK} is absent (../shared is not beside the repository)")
    return load_layout(OPENSTACK, includes=False)


@pytest.fixture(scope="module")
def pairs(layout: Layout) -> list[tuple[str, str]]:
    """Every (project, pipeline) where the project runs jobs."""
    return [
        (project, p.name)
        for project in layout.project_names
        for p in layout.pipelines
        if layout.jobs_for(project, p.name)
    ]


# -- triggers -----------------------------------------------------------------


def reference_matches(trigger: GerritTrigger, event: TriggerEvent) -> bool:
    """trigger_matches as it was written before TriggerMatcher, kept as the spec."""

    def any_match(patterns: list[Any], value: str, search: bool = False) -> bool:
        return any((p.search if search else p.match)(value) for p in patterns)

    if not any_match(trigger.event, event.type):
        return False
    if trigger.branch and not any_match(trigger.branch, event.branch):
        return False
    if trigger.ref and not any_match(trigger.ref, event.ref):
        if not (event.type == "ref-updated" and event.branch):
            return False
        if not any_match(trigger.ref, event.branch):
            return False
    if trigger.ignore_deletes and event.type == "ref-updated" and event.new_rev == ZERO_SHA:
        return False
    if trigger.comment and not any_match(trigger.comment, event.comment, search=True):
        return False
    account = event.account
    if trigger.username and not (account and any_match(trigger.username, account.username)):
        return False
    if trigger.email and not (account and any_match(trigger.email, account.email)):
        return False
    for wanted in trigger.approval:
        for label, value in wanted.items():
            cast = event.changed_approvals()
            if not any(a.label.lower() == label.lower() and a.value == value for a in cast):
                return False
    return True


# Each filter with two patterns, alone, so that "any of them" decides.
_TWO_PATTERN_FILTERS: list[dict[str, Any]] = [
    {"branch": ["^master$", "^stable/"]},
    {"ref": ["^refs/tags/", "^(?!refs/).*$"], "ignore-deletes": False},
    {"comment": ["(?i)^recheck", "reverify"]},
    {"email": ["@example\\.org$", "^ci@"]},
    {"username": ["^bob", "jenkins"]},
    {"approval": [{"workflow": 1}, {"code-review": 2}]},
]
TWO_PATTERNS = [
    GerritTrigger.model_validate({"event": ["comment-added", "ref-updated"], **extra})
    for extra in _TWO_PATTERN_FILTERS
]


def all_triggers(layout: Layout) -> list[GerritTrigger]:
    mine = load_layout(REPO / "layout.yaml")
    pipelines = [*layout.pipelines, *mine.pipelines]
    return [t for p in pipelines for t in p.trigger.gerrit] + TWO_PATTERNS


KINDS = ["patchset-created", "comment-added", "ref-updated", "change-merged", "change-restored"]
COMMENTS = [
    "",
    "recheck",
    "Patch Set 3:\n\nrecheck",
    "Patch Set 3: Code-Review+1\n\nreverify",
    "Patch Set 3:\n\ncheck experimental",
    "please recheck",
    "Patch Set 3: Workflow+1",
]
approvals = st.builds(
    Approval,
    label=st.sampled_from(["Workflow", "workflow", "Code-Review", "Verified"]),
    value=st.integers(-2, 2),
    old_value=st.none() | st.integers(-2, 2),
)
events = st.builds(
    TriggerEvent,
    type=st.sampled_from(KINDS),
    branch=st.sampled_from(["", "master", "stable/kilo", "feature/x"]),
    ref=st.sampled_from(["", "refs/heads/master", "master", "refs/tags/1.0", "refs/tags/1.0rc1"]),
    new_rev=st.sampled_from(["", ZERO_SHA, "1" * 40]),
    comment=st.sampled_from(COMMENTS) | st.text(max_size=30),
    account=st.none()
    | st.builds(
        Account,
        username=st.sampled_from(["", "bob", "jenkins", "alice"]),
        email=st.sampled_from(["", "bob@example.org", "ci@ci.example.com"]),
    ),
    approvals=st.lists(approvals, max_size=3).map(tuple),
    legacy_approvals=st.booleans(),
)


@SETTINGS
@given(event=events)
def test_prepared_triggers_match_as_the_plain_ones(layout: Layout, event: TriggerEvent) -> None:
    for trigger in all_triggers(layout):
        expected = reference_matches(trigger, event)
        matcher = TriggerMatcher(trigger)
        assert matcher.matches(event) is expected
        if any(p.match(event.type) for p in trigger.event):
            assert matcher.matches(event, True) is expected


# -- job selections -------------------------------------------------------------


def reference_select_jobs(
    layout: Layout,
    project: str,
    pipeline: str,
    branch: str,
    ref: str = "",
    files: list[str] | None = None,
) -> job_filter.JobSelection:
    """select_jobs as it was written before its shortcut for unfiltered jobs."""
    selection = job_filter.JobSelection()

    def prune(trees: list[JobTree]) -> Iterator[JobTree]:
        for tree in trees:
            job = layout.job(tree.name)
            runs, why, undecided = job_filter.job_applies(job, project, branch, ref, files)
            if not runs:
                for dropped in tree.walk():
                    selection.skipped.setdefault(
                        dropped.name, why if dropped is tree else f"runs after {tree.name}"
                    )
                continue
            if undecided:
                selection.undecided[tree.name] = why
            yield JobTree(tree.name, list(prune(tree.children)))

    selection.trees = list(prune(layout.jobs_for(project, pipeline)))
    return selection


FILES = [
    None,
    [],
    ["/COMMIT_MSG"],
    ["/COMMIT_MSG", "doc/source/index.rst"],
    ["/COMMIT_MSG", "nova/compute/api.py"],
    ["/COMMIT_MSG", "requirements.txt"],
]


@SETTINGS
@given(data=st.data())
def test_cached_selections_are_select_jobs(
    layout: Layout, pairs: list[tuple[str, str]], data: st.DataObject
) -> None:
    """One Router asked many times, so later answers come from its cache
    (filled with other branches, refs and files)."""
    router = routing.Router(layout)
    chosen = data.draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=3))
    for _ in range(12):
        project, pipeline = data.draw(st.sampled_from(chosen))
        branch = data.draw(st.sampled_from(["master", "stable/kilo", "stable/liberty", ""]))
        ref = data.draw(st.sampled_from(["", "refs/heads/master", "refs/tags/1.0", "master"]))
        files = data.draw(st.sampled_from(FILES))
        got = router.select(project, pipeline, branch, ref, files)
        expected = reference_select_jobs(layout, project, pipeline, branch, ref, files)
        assert got == expected
        assert got == job_filter.select_jobs(layout, project, pipeline, branch, ref, files)
        assert got.job_names() == expected.job_names()


SMALL_LAYOUT = """
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
  - name: post
    manager: independent
    trigger:
      gerrit:
        - event: ref-updated
jobs:
  - name: ^.*-stable-skip$
    skip-if:
      - branch: ^stable/
  - name: files-job
    files: ['^src/']
  - name: docs-only-skip
    skip-if:
      - project: ^org/p$
        all-files-match-any: ['^doc/']
  - name: branch-job
    branch: ^master$
projects:
  - name: org/p
    check:
      - plain
      - unit-stable-skip:
          - after-unit
      - files-job
      - docs-only-skip
    post:
      - branch-job
      - plain
"""


@pytest.mark.parametrize("order", [1, -1], ids=["forwards", "backwards"])
def test_each_filter_keys_the_cache_by_what_it_reads(tmp_path: Path, order: int) -> None:
    """A skip-if on branches, files: and skip-if on files, and branch: (which
    reads the ref too), each alone in a pipeline's jobs or with the others."""
    path = tmp_path / "layout.yaml"
    path.write_text(SMALL_LAYOUT)
    small = load_layout(path)
    router = routing.Router(small)
    asked = [
        (pipeline, branch, ref, files)
        for pipeline in ("check", "post")
        for branch in ("master", "stable/kilo", "")
        for ref in ("", "refs/heads/master", "master", "refs/tags/1.0")
        for files in [None, [], ["src/a.py"], ["doc/index.rst"], ["doc/a", "src/b"]]
    ]
    for pipeline, branch, ref, files in asked[::order]:
        got = router.select("org/p", pipeline, branch, ref, files)
        assert got == reference_select_jobs(small, "org/p", pipeline, branch, ref, files)
        assert got == job_filter.select_jobs(small, "org/p", pipeline, branch, ref, files)


# -- decisions ----------------------------------------------------------------------


def reference_decide(
    layout: Layout,
    pipeline: PipelineConfig,
    event: TriggerEvent,
    lookup: Callable[[], Change | None],
) -> routing.Decision | None:
    """decide with the plain trigger match and job selection above."""
    if not layout.jobs_for(event.project, pipeline.name):
        return None
    matched = [t for t in pipeline.trigger.gerrit if reference_matches(t, event)]
    if not matched:
        return None

    def select(
        project: str, name: str, branch: str, ref: str, files: list[str] | None
    ) -> job_filter.JobSelection:
        return reference_select_jobs(layout, project, name, branch, ref, files)

    return routing._decide_matched(pipeline, event, matched, lookup, select)


@pytest.fixture(scope="module")
def shapes() -> list[dict[str, Any]]:
    missing = [path for path in EVENTS if not path.exists()]
    if missing:
        pytest.skip(f"{missing[0]} is absent (../shared is not beside the repository)")
    lines = [line for path in EVENTS for line in path.read_text().splitlines()]
    return [d for d in map(json.loads, lines) if d["type"] != "dropped-output"]


@pytest.fixture(scope="module")
def router(layout: Layout) -> routing.Router:
    """One Router for every example, so that most answers come from its caches."""
    return routing.Router(layout)


@SETTINGS
@given(data=st.data())
def test_router_decides_as_decide(
    layout: Layout, router: routing.Router, shapes: list[dict[str, Any]], data: st.DataObject
) -> None:
    shape = copy.deepcopy(data.draw(st.sampled_from(shapes)))
    project = data.draw(st.sampled_from([*layout.project_names[:40], "unknown/project"]))
    for key in ("change", "refUpdate"):
        if key in shape:
            shape[key]["project"] = project
    if "project" in shape:
        shape["project"] = project
    if "change" in shape:
        shape["change"]["branch"] = data.draw(st.sampled_from(["master", "stable/kilo"]))
    if "refUpdate" in shape:
        shape["refUpdate"]["refName"] = data.draw(
            st.sampled_from(["master", "refs/heads/stable/kilo", "refs/tags/1.0", "refs/meta/x"])
        )
        shape["refUpdate"]["newRev"] = data.draw(st.sampled_from([ZERO_SHA, "1" * 40]))
    shape["comment"] = data.draw(st.sampled_from(COMMENTS))
    event = parse_event(json.dumps(shape))
    assert event is not None

    def lookup() -> Any:
        return dryrun.change_from_event(event)

    for pipeline in layout.pipelines:
        expected = reference_decide(layout, pipeline, event, lookup)
        assert router.decide(pipeline, event, lookup) == expected
        assert routing.decide(layout, pipeline, event, lookup) == expected
    assert list(router.decisions(event, lookup)) == [
        d for p in layout.pipelines if (d := reference_decide(layout, p, event, lookup)) is not None
    ]


# -- gatekeeper route, whole lines ------------------------------------------------


class PlainRouter:
    """The Router's interface answered the plain way: every pipeline asked."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def decisions(
        self, event: TriggerEvent, lookup: Callable[[], Change | None]
    ) -> Iterator[routing.Decision]:
        for pipeline in self.layout.pipelines:
            decision = reference_decide(self.layout, pipeline, event, lookup)
            if decision is not None:
                yield decision

    def then(self, pipeline: str) -> list[str]:
        return consequences(self.layout, self.layout.pipeline(pipeline))


def plain_route_lines(layout: Layout, lines: list[str | bytes]) -> list[dict[str, Any]]:
    """route_lines with the fast event reader off and the PlainRouter."""
    with (
        mock.patch.object(
            gerrit_events, "_read_well_formed", side_effect=gerrit_events._UnusualShapeError
        ),
        mock.patch.object(routing, "Router", PlainRouter),
    ):
        return list(dryrun.route_lines(layout, lines))


BAD_LINES: list[str | bytes] = [
    "",
    "   ",
    "\u2003",
    "not json",
    '["list"]',
    '{"type": 3}',
    '{"type": "dropped-output"}',
    b"\xff\xfe{}",
    "[" * 100_000,
    '{"type": "patchset-created", "eventCreatedOn": ' + "9" * 400 + "}",
    '{"type": "patchset-created", "change": {"project": "openstack/nova", "number": "x"}}',
    '{"type": "ref-updated", "refUpdate": {"project": "openstack/nova", "refName": 1}}',
    '{"type": "topic-changed", "change": {"project": "openstack/nova", "number": "1"}}',
    '{"type": "ref-replicated", "project": "openstack/nova", "ref": "refs/heads/master"}',
]


def _varied(layout: Layout, shapes: list[dict[str, Any]]) -> list[str]:
    """Each real event for a few projects (one unknown) and branches, with
    comments that do and do not trigger, and hostile text in its fields."""
    lines: list[str] = []
    projects = [*layout.project_names[:6], "openstack/nova", "unknown/project"]
    texts = [*COMMENTS, "é☃ recheck", "\u202erecheck", "recheck\u0000", "x" * 5000]
    for number, shape in enumerate(shapes):
        for project in projects:
            data = copy.deepcopy(shape)
            for key in ("change", "refUpdate"):
                if key in data:
                    data[key]["project"] = project
            if "change" in data:
                data["change"]["branch"] = ["master", "stable/kilo", "féature/ü"][number % 3]
            data["comment"] = texts[(number + len(lines)) % len(texts)]
            lines.append(json.dumps(data))
            lines.append(json.dumps(data, ensure_ascii=False))
    return lines


def test_route_lines_answers_as_the_plain_code(
    layout: Layout, shapes: list[dict[str, Any]]
) -> None:
    """Every shared event type, varied, and bad lines: the same output, line
    for line, with the fast reader and the Router as without them."""
    lines: list[str | bytes] = [*_varied(layout, shapes), *BAD_LINES]
    lines += [line.encode() if isinstance(line, str) else line for line in lines[::7]]
    got = list(dryrun.route_lines(layout, lines))
    expected = plain_route_lines(layout, lines)
    assert len(got) == len(expected) > len(shapes) * 8
    for one, other in zip(got, expected, strict=True):
        assert one == other
    assert any(r.get("enqueue") for r in got) and any("error" in r for r in got)
    assert {r["type"] for r in got if "type" in r} >= {s["type"] for s in shapes}
