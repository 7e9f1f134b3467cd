"""A post pipeline: the merge's ref-updated runs a job at the branch's new tip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gatekeeper.db.tables import BuildRecord
from gatekeeper.sandbox.harness import Sandbox

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]

POST_PIPELINE = """
  - name: post
    description: Runs after a change merges, on the branch's new tip.
    manager: independent
    precedence: low
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^refs/heads/.*$
"""

POST_JOB = """  - name: post-head
    node: devstack-vm
    run: |
      mkdir -p logs
      git -C openstack/nova rev-parse HEAD > logs/head.txt
      echo "$ZUUL_NEWREV $ZUUL_OLDREV $ZUUL_REF" > logs/params.txt
    logs:
      - logs/**
"""


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    text = (REPO / "layout.yaml").read_text()
    text = text.replace("\njobs:\n", POST_PIPELINE + "\njobs:\n" + POST_JOB, 1)
    text = text.replace(
        "    gate:\n      - gate-devstack-vm\n",
        "    gate:\n      - gate-devstack-vm\n    post:\n      - post-head\n",
        1,
    )
    layout = tmp_path / "layout.yaml"
    layout.write_text(text)
    sandbox = Sandbox(tmp_path / "sandbox", layout)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def test_merge_runs_post_job_at_the_new_tip(box: Sandbox) -> None:
    assert box.sim is not None and box.app is not None and box.app.scheduler is not None
    old_head = box.sim.branch_head("openstack/nova")
    number, ps = box.push_change("openstack/nova", "Merge me", {"nova/post.txt": "x\n"})
    box.wait_until_settled()
    box.approve(number, ps)
    box.wait_until_settled()
    assert box.sim.get_change(number).status == "MERGED"
    new_head = box.sim.branch_head("openstack/nova")
    assert new_head != old_head

    with box.app.db.session() as session:
        [post] = session.scalars(select(BuildRecord).where(BuildRecord.pipeline == "post")).all()
    assert post.change is None and post.project == "openstack/nova"
    assert post.result == "SUCCESS" and post.pipeline == "post"
    # Zuul's layout for refs: <newrev[:2]>/<newrev>/<pipeline>/<job>/<uuid[:7]>
    expected = f"{new_head[:2]}/{new_head}/post/post-head/{post.uuid[:7]}"
    assert post.log_url.rstrip("/").endswith(expected)
    logs = box.site.log_root / expected / "logs"  # type: ignore[operator]
    assert (logs / "head.txt").read_text().strip() == new_head
    assert (logs / "params.txt").read_text().split() == [new_head, old_head, "refs/heads/master"]
    # Nothing was said to Gerrit about the ref: only the check and gate reports.
    reports = [r for r in box.sim.reviews() if r.username == "gatekeeper"]
    assert all(r.argv[-1] == f"{number},{ps}" for r in reports)
