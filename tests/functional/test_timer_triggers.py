"""A periodic pipeline: a cron slot enqueues every project with jobs in it
(and a failure is mailed, as OpenStack's periodic-stable pipeline did).

The cron line names one second of the day a few seconds after the layout
is written, so the slot comes once while the test runs (and the daemon
fires a slot that came while it was starting, within a minute of it).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gatekeeper.db.tables import BuildRecord, SchedulerState
from gatekeeper.sandbox.harness import Sandbox
from tests.fixtures.smtp import MailServer

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

  - name: periodic
    description: Nightly jobs, on a timer.
    manager: independent
    precedence: low
    trigger:
      timer:
        - time: '{cron}'

jobs:
  - name: periodic-tip
    node: devstack-vm
    run: |
      mkdir -p logs
      git -C "$ZUUL_PROJECT" rev-parse HEAD > logs/head.txt
      echo "$ZUUL_PIPELINE $ZUUL_PROJECT $ZUUL_BRANCH $ZUUL_REF ${{ZUUL_COMMIT:-none}}" \\
        > logs/params.txt
    logs:
      - logs/**
  - name: unit
    node: devstack-vm
    run: "true"

projects:
  - name: openstack/nova
    check: [unit]
    periodic: [periodic-tip]
  - name: openstack/glance
    periodic: [periodic-tip]
  - name: openstack/keystone
    check: [unit]
"""


@pytest.fixture
def slot() -> datetime:
    """A second of the day, soon: the daily slot the test waits for."""
    return (datetime.now(UTC) + timedelta(seconds=5)).replace(microsecond=0)


@pytest.fixture
def box(tmp_path: Path, slot: datetime) -> Iterator[Sandbox]:
    layout = tmp_path / "layout.yaml"
    # Zuul v2's field order: minute hour day month weekday [second].
    layout.write_text(LAYOUT.format(cron=f"{slot.minute} {slot.hour} * * * {slot.second}"))
    sandbox = Sandbox(tmp_path / "sandbox", layout)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def periodic_builds(box: Sandbox) -> list[BuildRecord]:
    assert box.app is not None
    with box.app.db.session() as session:
        return list(
            session.scalars(
                select(BuildRecord)
                .where(BuildRecord.pipeline == "periodic")
                .order_by(BuildRecord.project)
            )
        )


def test_a_slot_runs_the_jobs_of_every_project_once_even_across_a_restart(
    box: Sandbox, slot: datetime
) -> None:
    assert box.sim is not None and box.app is not None
    box.wait_for(
        lambda: len([b for b in periodic_builds(box) if b.result]) == 2, 90, "two periodic builds"
    )
    box.wait_until_settled()

    glance, nova = periodic_builds(box)
    # Only the projects with jobs in the pipeline; keystone has none there.
    assert (glance.project, nova.project) == ("openstack/glance", "openstack/nova")
    for build in (glance, nova):
        assert build.result == "SUCCESS" and build.change is None and build.branch == "master"
        # Zuul v2.5's periodic log path: <pipeline>/<job>/<uuid[:7]>.
        path = f"periodic/periodic-tip/{build.uuid[:7]}"
        assert build.log_url.rstrip("/").endswith(path)
        logs = box.site.log_root / path / "logs"  # type: ignore[operator]
        # The branch's tip when the build ran; Zuul v2.5 sent no ZUUL_COMMIT for these.
        assert (logs / "head.txt").read_text().strip() == box.sim.branch_head(build.project)
        assert (logs / "params.txt").read_text().split() == [
            "periodic",
            build.project,
            "master",
            "refs/heads/master",
            "none",
        ]
    # A ref has no change to review: Gerrit heard nothing from the periodic run.
    assert not [r for r in box.sim.reviews() if r.username == "gatekeeper"]
    with box.app.db.session() as session:
        state = session.get(SchedulerState, "timer:periodic")
        assert state is not None and float(state.value) == slot.timestamp()

    # A restart within the minute of the slot: it is recorded as fired, so
    # the new daemon (which looks back a minute for slots it may have missed
    # while starting) does not run it again.
    box.app.stop()
    box.start_daemon()
    assert box.app.timer is not None and box.app.scheduler is not None
    timer, scheduler = box.app.timer, box.app.scheduler
    box.wait_for(lambda: scheduler.restored is not None, 60, "the restore")
    # The new timer's first pass has run once it has chosen when to wake next.
    box.wait_for(lambda: timer.passes > 0, 30, "the timer's first pass")
    box.wait_until_settled()
    assert list(timer.fired) == []
    assert len(periodic_builds(box)) == 2


# OpenStack's periodic-stable: nothing said to Gerrit (a ref has no change),
# a failure mailed to the team.
MAILING = """
pipelines:
  - name: periodic-stable
    manager: independent
    precedence: low
    trigger:
      timer:
        - time: '{cron}'
    failure:
      smtp:
        from: jenkins@openstack.org
        to: openstack-stable-maint@lists.openstack.org
        subject: 'Stable check of {{change.project}} failed'
jobs:
  - name: periodic-broken
    node: devstack-vm
    run: "false"
projects:
  - name: openstack/nova
    periodic-stable: [periodic-broken]
"""


@pytest.fixture
def mailing_box(tmp_path: Path, slot: datetime, mail_server: MailServer) -> Iterator[Sandbox]:
    layout = tmp_path / "layout.yaml"
    layout.write_text(MAILING.format(cron=f"{slot.minute} {slot.hour} * * * {slot.second}"))
    sandbox = Sandbox(tmp_path / "sandbox", layout, extra_site={"smtp": mail_server.site()})
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def test_a_periodic_failure_is_mailed_as_openstacks_periodic_stable_did(
    mailing_box: Sandbox, mail_server: MailServer
) -> None:
    [mail] = mail_server.wait_for(1, timeout=90)
    assert mail.rcpt_tos == ["openstack-stable-maint@lists.openstack.org"]
    assert mail.mail_from == "jenkins@openstack.org"
    assert mail.subject == "Stable check of openstack/nova failed"
    assert "periodic-broken" in mail.body and ": FAILURE" in mail.body
    mailing_box.wait_until_settled()
    assert mailing_box.sim is not None
    assert not [r for r in mailing_box.sim.reviews() if r.username == "gatekeeper"]
