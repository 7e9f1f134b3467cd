"""SMTP reporters through the daemon: the check pipeline's results arrive as
mail at a real SMTP server (aiosmtpd, tests/fixtures/smtp.py), and a mail
server that is down holds up nothing but its mail."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.app import Gatekeeper
from gatekeeper.errors import ConfigError
from gatekeeper.sandbox.harness import Sandbox
from gatekeeper.sandbox.seed import PROJECTS
from tests.fixtures.smtp import MailServer

pytestmark = pytest.mark.timeout(180)


# Success mails go to the layout's own address with a subject of Zuul's
# placeholders; failures to the site's default-to, from another sender.
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
      smtp:
        to: nova-core@example.org, Ann Other <ann@example.org>
        subject: "{pipeline.name}: {change.project} {change.number},{change.patchset} passed"
    failure:
      gerrit:
        verified: -1
      smtp:
        from: gate-robot@example.org
jobs:
  - name: unit
    node: devstack-vm
    # Fails when the change adds a FAIL file to nova.
    run: test ! -e openstack/nova/FAIL
projects:
  - name: openstack/nova
    check: [unit]
""" + "".join(f"  - name: {p}\n" for p in PROJECTS[1:])


def _box(tmp_path: Path, mail: MailServer) -> Iterator[Sandbox]:
    layout = tmp_path / "layout.yaml"
    layout.write_text(LAYOUT)
    box = Sandbox(tmp_path / "sandbox", layout, extra_site={"smtp": mail.site()})
    box.start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def box(tmp_path: Path, mail_server: MailServer) -> Iterator[Sandbox]:
    yield from _box(tmp_path, mail_server)


def test_results_arrive_as_mail_with_the_layouts_recipients_and_subject(
    box: Sandbox, mail_server: MailServer
) -> None:
    assert box.sim is not None
    good, ps = box.push_change("openstack/nova", "Fix the detach race", {"a.txt": "a\n"})
    box.wait_until_settled()
    [passed] = mail_server.wait_for(1)
    # The envelope is who it went to; the headers are what people read.
    assert passed.mail_from == "zuul@example.org"
    assert sorted(passed.rcpt_tos) == ["ann@example.org", "nova-core@example.org"]
    assert passed.message["From"] == "zuul@example.org"
    assert passed.message["To"] == "nova-core@example.org, Ann Other <ann@example.org>"
    assert passed.subject == f"check: openstack/nova {good},{ps} passed"
    # The body is the report Gerrit got, job line and all.
    assert "Build succeeded (check pipeline)." in passed.body
    assert "- unit " in passed.body and ": SUCCESS" in passed.body
    assert box.sim.get_change(good).votes["Verified"] == {"gatekeeper": 1}

    bad, ps = box.push_change("openstack/nova", "Break it", {"FAIL": "x\n"})
    box.wait_until_settled()
    [_, failed] = mail_server.wait_for(2)
    assert failed.mail_from == "gate-robot@example.org"
    assert failed.rcpt_tos == ["ci-admins@example.org"]
    # Zuul v2.5's subject when the reporter gives none.
    assert failed.subject == f"Report for change {bad},{ps}"
    assert "Build failed (check pipeline)." in failed.body and ": FAILURE" in failed.body


@pytest.fixture
def down_box(tmp_path: Path) -> Iterator[tuple[Sandbox, MailServer]]:
    """The daemon's mail server is not running yet (nothing listens on its port)."""
    server = MailServer()
    try:
        for box in _box(tmp_path, server):
            yield box, server
    finally:
        server.stop()


def test_a_mail_server_that_is_down_delays_only_the_mail(
    down_box: tuple[Sandbox, MailServer],
) -> None:
    box, server = down_box
    assert box.sim is not None and box.app is not None and box.app.scheduler is not None
    first, _ = box.push_change("openstack/nova", "First while mail is down", {"a.txt": "1\n"})
    box.wait_until_settled()
    mail = box.app.scheduler.context.mail
    assert mail is not None
    # Gerrit got its vote; the mail waits, tried again and again.
    assert box.sim.get_change(first).votes["Verified"] == {"gatekeeper": 1}
    box.wait_for(lambda: len(mail.waiting()) == 1 and mail.sent == 0, 30, "the mail to wait")

    # The scheduler keeps gating meanwhile.
    second, _ = box.push_change("openstack/nova", "Second while mail is down", {"b.txt": "2\n"})
    box.wait_until_settled()
    assert box.sim.get_change(second).votes["Verified"] == {"gatekeeper": 1}
    assert len(mail.waiting()) == 2

    # The server comes up: both arrive, in the order they were made.
    server.start()
    received = server.wait_for(2)
    assert [m.subject for m in received] == [
        f"check: openstack/nova {first},1 passed",
        f"check: openstack/nova {second},1 passed",
    ]
    box.wait_for(lambda: not mail.waiting(), 10, "the queue to empty")
    assert mail.sent == 2 and mail.dropped == 0


def test_a_layout_with_smtp_reporters_needs_the_sites_smtp_section(tmp_path: Path) -> None:
    """Mail with nowhere to go is refused, not dropped in silence: by a
    reconfigure, which keeps the running layout, and at start."""
    layout = tmp_path / "layout.yaml"
    # The same pipelines without their smtp parts.
    layout.write_text(re.sub(r"\n      smtp:\n(        .*\n)+", "\n", LAYOUT))
    box = Sandbox(tmp_path / "sandbox", layout)
    box.start()
    try:
        assert box.app is not None
        running = box.app.layout
        layout.write_text(LAYOUT)
        assert box.app.reconfigure() is False
        assert box.app.layout is running
        with pytest.raises(ConfigError, match=r"success.smtp: the site file has no 'smtp' section"):
            Gatekeeper(box.site)
    finally:
        box.stop()
