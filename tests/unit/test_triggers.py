"""Trigger matching and pipeline requirements, on the repository's own layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.config.layout import Layout, load_layout
from gatekeeper.gerrit.events import parse_event
from gatekeeper.model.change import Change
from gatekeeper.model.events import Account, Approval, TriggerEvent
from gatekeeper.scheduler.triggers import matching_triggers, requirements_unmet

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def layout() -> Layout:
    return load_layout(REPO / "layout.yaml")


def comment(text: str, *approvals: Approval, legacy: bool = False) -> TriggerEvent:
    return TriggerEvent(
        type="comment-added",
        project="openstack/nova",
        branch="master",
        ref="refs/changes/01/1/1",
        change=1,
        patchset=1,
        comment=text,
        approvals=approvals,
        account=Account(username="bob"),
        legacy_approvals=legacy,
    )


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("recheck", True),
        ("Patch Set 1:\n\nrecheck", True),
        ("Patch Set 3: Code-Review+1\n\nrecheck bug 12345", True),
        ("RECHECK", True),
        ("Patch Set 1:\n\nplease do not recheck yet", False),
        ("Patch Set 1: Code-Review+2", False),
    ],
    ids=["bare", "prefixed", "with-votes", "upper", "mid-sentence", "vote-only"],
)
def test_recheck_comment(layout: Layout, text: str, matches: bool) -> None:
    assert bool(matching_triggers(layout.pipeline("check"), comment(text))) is matches


def test_workflow_transition_triggers_gate(layout: Layout) -> None:
    event = comment("Patch Set 1: Workflow+1", Approval("Workflow", 1, old_value=0))
    assert matching_triggers(layout.pipeline("gate"), event)


def test_repeated_current_votes_do_not_trigger_gate(layout: Layout) -> None:
    # Gerrit >= 2.13 repeats the author's current votes on every comment.
    event = comment(
        "Patch Set 1:\n\nLooks good still.",
        Approval("Code-Review", 2),
        Approval("Workflow", 1),
    )
    assert not matching_triggers(layout.pipeline("gate"), event)


def test_legacy_gerrit_votes_count_as_cast(layout: Layout) -> None:
    event = comment("Patch Set 1: Approved", Approval("Workflow", 1), legacy=True)
    assert matching_triggers(layout.pipeline("gate"), event)


def test_workflow_minus_one_does_not_trigger_gate(layout: Layout) -> None:
    event = comment("Patch Set 1: Workflow-1", Approval("Workflow", -1, old_value=0))
    assert not matching_triggers(layout.pipeline("gate"), event)


def test_documented_event_lines_route_as_expected(layout: Layout) -> None:
    shared = REPO.parent / "shared" / "testdata" / "gerrit" / "events-wire-2.13.jsonl"
    if not shared.exists():
        pytest.skip(f"{shared} is absent (../shared is not beside the repository)")
    routed = {"check": 0, "gate": 0}
    for line in shared.read_text().splitlines():
        event = parse_event(line)
        if event is None:
            continue
        for name in routed:
            routed[name] += bool(matching_triggers(layout.pipeline(name), event))
    # patchset-created lines and "recheck" comments; the Workflow+1 transition.
    assert routed["check"] >= 2 and routed["gate"] >= 1


def change(**approvals: dict[str, int]) -> Change:
    return Change(
        project="openstack/nova",
        branch="master",
        number=1,
        patchset=1,
        approvals={k.replace("_", "-"): v for k, v in approvals.items()},
    )


def test_gate_requires_code_review_two_and_workflow(layout: Layout) -> None:
    gate = layout.pipeline("gate")
    assert requirements_unmet(gate, change(Workflow={"bob": 1})).startswith("missing approval")
    assert requirements_unmet(gate, change(Code_Review={"bob": 2})).startswith("missing")
    assert requirements_unmet(gate, change(Code_Review={"bob": 2}, Workflow={"bob": 1})) == ""


def test_gate_refuses_closed_or_outdated_changes(layout: Layout) -> None:
    gate = layout.pipeline("gate")
    approved = change(Code_Review={"bob": 2}, Workflow={"bob": 1})
    approved.status = "MERGED"
    assert "open" in requirements_unmet(gate, approved)
    approved.status, approved.is_current_patchset = "NEW", False
    assert "current patchset" in requirements_unmet(gate, approved)


NEW_EVENTS_LAYOUT = """\
pipelines:
  - name: post-batch
    manager: independent
    trigger:
      gerrit:
        - event: batch-ref-updated
          ref: ^refs/heads/.*$
  - name: heads
    manager: independent
    trigger:
      gerrit:
        - event: project-head-updated
  - name: topics
    manager: independent
    trigger:
      gerrit:
        - event: topic-changed
"""


def test_gerrit_3x_event_types_are_layout_triggers(tmp_path: Path, layout: Layout) -> None:
    """batch-ref-updated and project-head-updated (3.x) may be named by a
    trigger and fire it; the repository's layout names neither, so they
    start nothing there."""
    path = tmp_path / "layout.yaml"
    path.write_text(NEW_EVENTS_LAYOUT)
    new = load_layout(path)
    update = {"oldRev": "a" * 40, "newRev": "b" * 40, "refName": "refs/heads/master"}
    batch = parse_event(
        '{"type": "batch-ref-updated", "submitter": {"username": "ci"}, '
        f'"refUpdates": [{{"project": "openstack/nova", {str(update)[1:-1]}}}], '
        '"eventCreatedOn": 1}'.replace("'", '"')
    )
    head = parse_event(
        '{"type": "project-head-updated", "projectName": "openstack/nova", '
        '"oldHead": "refs/heads/master", "newHead": "refs/heads/main", "eventCreatedOn": 1}'
    )
    assert batch is not None and head is not None
    assert (batch.project, batch.branch, batch.new_rev) == ("openstack/nova", "master", "b" * 40)
    assert (head.project, head.branch) == ("openstack/nova", "main")
    assert matching_triggers(new.pipeline("post-batch"), batch)
    assert not matching_triggers(new.pipeline("post-batch"), head)
    assert matching_triggers(new.pipeline("heads"), head)
    for pipeline in layout.pipelines:
        assert not matching_triggers(pipeline, batch)
        assert not matching_triggers(pipeline, head)
