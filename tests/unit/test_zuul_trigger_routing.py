"""gatekeeper's own events take the Router's path: timer slots reach only
their pipeline, zuul trigger events honour ``pipeline:`` and the
approvals a trigger or pipeline requires, and a dry run says what a change
entering a pipeline may set off."""

from __future__ import annotations

import json

import pytest

from gatekeeper.config.layout import Layout, load_layout
from gatekeeper.model.change import Change
from gatekeeper.scheduler.dryrun import route_lines
from gatekeeper.scheduler.routing import Decision, Router, decide
from gatekeeper.scheduler.timer import branch_tip_event
from gatekeeper.scheduler.zuul_events import (
    PARENT_CHANGE_ENQUEUED,
    PROJECT_CHANGE_MERGED,
    OwnEvent,
    change_event,
)

pytestmark = pytest.mark.timeout(30)

LAYOUT = """
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
  - name: gate
    manager: dependent
    trigger:
      gerrit:
        - event: comment-added
          approval:
            - workflow: 1
    success:
      gerrit:
        verified: 2
        submit: true
  - name: periodic
    manager: independent
    trigger:
      timer:
        - time: '0 6 * * *'
  - name: hourly
    manager: independent
    trigger:
      timer:
        - time: '0 * * * *'
  - name: merge-check
    manager: independent
    require:
      approval:
        - verified: [1, 2]
          username: jenkins
    trigger:
      zuul:
        - event: project-change-merged
  - name: follow
    manager: independent
    trigger:
      zuul:
        - event: parent-change-enqueued
          pipeline: gate
          require-approval:
            - verified: 1
  - name: follow-check
    manager: independent
    trigger:
      zuul:
        - event: parent-change-enqueued
          pipeline: ^check$
jobs:
  - name: unit
projects:
  - name: openstack/nova
    check: [unit]
    gate: [unit]
    periodic: [unit]
    hourly: [unit]
    merge-check: [unit]
    follow: [unit]
    follow-check: [unit]
"""


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    path = tmp_path_factory.mktemp("layout") / "layout.yaml"
    path.write_text(LAYOUT)
    return load_layout(path)


def nova(votes: dict[str, dict[str, int]] | None = None) -> Change:
    return Change(
        "openstack/nova", "master", 7, 2, ref="refs/changes/07/7/2", approvals=votes or {}
    )


def routed(layout: Layout, event: OwnEvent) -> list[Decision]:
    """The Router's decisions, held to the plain per-pipeline specification."""
    decisions = list(Router(layout).decisions(event, lambda: event.known))
    plain = [decide(layout, p, event, lambda: event.known) for p in layout.pipelines]
    assert [(d.pipeline, d.reason) for d in decisions] == [
        (d.pipeline, d.reason) for d in plain if d is not None
    ]
    return decisions


def test_a_timer_slot_enters_only_its_own_pipeline_at_the_branch_tip(layout: Layout) -> None:
    [decision] = routed(layout, branch_tip_event("openstack/nova", "periodic", "0 6 * * *"))
    assert decision.pipeline == "periodic" and decision.enqueue
    change = decision.change
    assert change is not None and change.is_ref and change.is_branch_tip
    assert (change.branch, change.ref) == ("master", "refs/heads/master")
    assert decision.selection.job_names() == ["unit"]


def test_a_timer_line_gone_from_the_layout_enqueues_nothing(layout: Layout) -> None:
    # Put before a reconfigure that changed the line, routed after it.
    assert routed(layout, branch_tip_event("openstack/nova", "periodic", "5 6 * * *")) == []


@pytest.mark.parametrize(
    ("entered", "verified", "expected"),
    [
        ("gate", 1, [("follow", "")]),
        ("gate", -1, [("follow", "no trigger's require-approval/reject-approval is met")]),
        ("check", 1, [("follow-check", "")]),
        ("post", 1, []),
    ],
    ids=["gate", "gate-unverified", "check", "elsewhere"],
)
def test_a_change_follows_its_parent_into_the_pipelines_that_name_where_it_went(
    layout: Layout, entered: str, verified: int, expected: list[tuple[str, str]]
) -> None:
    child = nova({"Verified": {"gatekeeper": verified}})
    decisions = routed(layout, change_event(PARENT_CHANGE_ENQUEUED, child, entered))
    assert [(d.pipeline, d.reason) for d in decisions] == expected


@pytest.mark.parametrize(
    ("voter", "reason"),
    [("jenkins", ""), ("gatekeeper", "missing approval verified: [1, 2] by jenkins")],
)
def test_a_merge_retests_open_changes_the_pipeline_requires_of(
    layout: Layout, voter: str, reason: str
) -> None:
    event = change_event(PROJECT_CHANGE_MERGED, nova({"Verified": {voter: 1}}))
    [decision] = routed(layout, event)
    assert (decision.pipeline, decision.reason) == ("merge-check", reason)
    # The change the event was made with: Gerrit is not asked again.
    assert decision.change is event.known


def test_a_dry_run_says_what_a_change_entering_may_set_off(layout: Layout) -> None:
    line = json.dumps(
        {
            "type": "comment-added",
            "change": {"project": "openstack/nova", "branch": "master", "number": "7"},
            "patchSet": {"number": "2", "ref": "refs/changes/07/7/2"},
            "author": {"username": "bob"},
            "approvals": [{"type": "Workflow", "value": "1", "oldValue": "0"}],
            "comment": "Workflow+1",
        }
    )
    [result] = route_lines(layout, [line])
    [gate] = result["enqueue"]
    assert gate["pipeline"] == "gate"
    assert gate["then"] == [
        "parent-change-enqueued: changes that need it may enter follow",
        "project-change-merged: if it merges, open changes of its project may enter merge-check",
    ]


def test_gerrit_events_never_fire_timer_or_zuul_triggers(layout: Layout) -> None:
    line = json.dumps(
        {
            "type": "patchset-created",
            "change": {"project": "openstack/nova", "branch": "master", "number": "7"},
            "patchSet": {"number": "2", "ref": "refs/changes/07/7/2"},
            "uploader": {"username": "alice"},
        }
    )
    [result] = route_lines(layout, [line])
    assert [e["pipeline"] for e in result["enqueue"]] == ["check"]
    assert result["enqueue"][0]["then"] == [
        "parent-change-enqueued: changes that need it may enter follow-check"
    ]
