"""``trigger: zuul:``: events gatekeeper makes itself, routed like Gerrit's.

``project-change-merged``: when the gate merges a change, the open changes
of its project are tested again (OpenStack's merge-check pipeline, which
tells a change that no longer merges). ``parent-change-enqueued``: when a
change enters a pipeline, the changes that need it may follow it somewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gatekeeper.db.tables import BuildRecord
from gatekeeper.sandbox.gerrit_sim.records import ReviewRecord
from gatekeeper.sandbox.harness import Sandbox

pytestmark = pytest.mark.timeout(180)

LAYOUT = """
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
    success:
      gerrit:
        verified: 1
    failure:
      gerrit:
        verified: -1

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
    failure:
      gerrit:
        verified: -2

  # As in OpenStack's 2015 layout: only changes the check passed, and only
  # a merge failure is reported.
  - name: merge-check
    manager: independent
    ignore-dependencies: true
    precedence: low
    require:
      approval:
        - verified: [1, 2]
          username: gatekeeper
    trigger:
      zuul:
        - event: project-change-merged
    merge-failure:
      gerrit:
        verified: -1

  - name: follow
    manager: independent
    trigger:
      zuul:
        - event: parent-change-enqueued
          pipeline: gate
          require-approval:
            - verified: 1
              username: gatekeeper

  - name: follow-check
    manager: independent
    trigger:
      zuul:
        - event: parent-change-enqueued
          pipeline: ^check$

jobs:
  - name: unit
    node: devstack-vm
    # A change that adds fail.txt fails its check.
    run: test ! -e "$ZUUL_PROJECT/fail.txt"

project-templates:
  - name: everywhere
    check: [unit]
    gate: [unit]
    merge-check: [unit]
    follow: [unit]
    follow-check: [unit]

projects:
  - name: openstack/nova
    template: [{name: everywhere}]
  - name: openstack/glance
    template: [{name: everywhere}]
"""


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    layout = tmp_path / "layout.yaml"
    layout.write_text(LAYOUT)
    sandbox = Sandbox(tmp_path / "sandbox", layout, worker_count=4)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def built(box: Sandbox, pipeline: str) -> list[tuple[int | None, str | None]]:
    """(change, result) of every build of ``pipeline``, by change."""
    assert box.app is not None
    with box.app.db.session() as session:
        rows = session.scalars(select(BuildRecord).where(BuildRecord.pipeline == pipeline))
        return sorted((r.change, r.result) for r in rows)


def ours(box: Sandbox, number: int) -> list[ReviewRecord]:
    assert box.sim is not None
    return [
        r
        for r in box.sim.reviews()
        if r.username == "gatekeeper" and r.argv[-1].startswith(f"{number},")
    ]


def test_a_merge_retests_the_open_changes_of_its_project(box: Sandbox) -> None:
    assert box.sim is not None
    merging, _ = box.push_change("openstack/nova", "Shared A", {"nova/shared.txt": "a\n"})
    conflicting, _ = box.push_change("openstack/nova", "Shared B", {"nova/shared.txt": "b\n"})
    clean, _ = box.push_change("openstack/nova", "Elsewhere", {"nova/other.txt": "c\n"})
    failed, _ = box.push_change("openstack/nova", "Broken", {"fail.txt": "x\n"})
    other_project, _ = box.push_change("openstack/glance", "Glance", {"glance/g.txt": "g\n"})
    box.wait_until_settled()
    assert ours(box, failed)[-1].labels == {"Verified": -1}

    box.approve(merging, 1)
    box.wait_until_settled()
    assert box.sim.get_change(merging).status == "MERGED"

    # The open changes of nova the check passed were tested again: the one
    # that touches the same file no longer merges; the other still does.
    # The change the check failed does not meet the pipeline's requirement,
    # and glance's changes are not nova's.
    assert built(box, "merge-check") == [
        (conflicting, "MERGER_FAILURE"),
        (clean, "SUCCESS"),
    ]
    [*_, told] = ours(box, conflicting)
    assert told.labels == {"Verified": -1} and "Merge failed" in (told.message or "")
    # merge-check reports nothing else: the clean change heard only its check.
    assert [r.labels for r in ours(box, clean)] == [{"Verified": 1}]
    assert other_project not in [c for c, _ in built(box, "merge-check")]


def test_a_change_follows_its_parent_into_the_pipeline_named(box: Sandbox) -> None:
    assert box.sim is not None
    parent, _ = box.push_change("openstack/nova", "Parent", {"nova/p.txt": "p\n"})
    parent_id = box.sim.get_change(parent).change_id
    # Two changes need the parent (Depends-On); the check fails one of them.
    child, _ = box.push_change(
        "openstack/glance", f"Child\n\nDepends-On: {parent_id}", {"glance/c.txt": "c\n"}
    )
    box.push_change(
        "openstack/glance", f"Failing child\n\nDepends-On: {parent_id}", {"fail.txt": "x\n"}
    )
    box.wait_until_settled()
    assert built(box, "follow") == [] and built(box, "follow-check") == []

    box.approve(parent, 1)
    box.wait_until_settled()
    assert box.sim.get_change(parent).status == "MERGED"
    # The parent entered the gate: the child the check passed followed it
    # (require-approval), the failing one did not; follow-check wants
    # parents entering check only.
    assert built(box, "follow") == [(child, "SUCCESS")]
    assert built(box, "follow-check") == []
