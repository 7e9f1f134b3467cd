"""Known failures through the daemon: a failed build whose logs carry a
signature of the site's ``failures/`` is named in its Gerrit report, and the
match is stored for /insights/failures; a failure no signature explains is
left uncategorised."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from gatekeeper.db.tables import BuildRecord, FailureMatch
from gatekeeper.sandbox.harness import Sandbox

pytestmark = pytest.mark.timeout(240)

#: The job fails, and archives (gzipped, as devstack-gate does) the nova-compute
#: log the change under test carries: the change decides what the log says.
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
jobs:
  - name: gate-tempest-dsvm-full
    node: devstack-vm
    run: |
      mkdir -p logs
      echo "nova-compute started" > screen.txt
      cat openstack/nova/fixture-n-cpu.txt >> screen.txt 2>/dev/null
      gzip -c screen.txt > logs/screen-n-cpu.txt.gz
      echo "tempest: 1 test failed"
      exit 1
    logs: [logs/**]
projects:
  - name: openstack/nova
    check: [gate-tempest-dsvm-full]
"""

SIGNATURE = """\
id: libvirt-eof
description: libvirt closed the connection under nova-compute
bug: https://bugs.launchpad.net/nova/+bug/1643911
files: [logs/screen-n-cpu.txt*]
patterns:
  - 'libvirtError: End of file while reading data: Input/output error'
job: ^gate-tempest-dsvm-
"""

COMPUTE_LOG = (
    "2026-12-06 10:01:02.345 ERROR nova.compute.manager [req-1] Instance failed to spawn\n"
    "2026-12-06 10:01:02.346 ERROR nova.compute.manager libvirtError: End of file while "
    "reading data: Input/output error\n"
)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    layout = tmp_path / "layout.yaml"
    layout.write_text(LAYOUT)
    sandbox = Sandbox(tmp_path / "sandbox", layout)
    # The site's failures-dir (the sandbox keeps it in its state) is read at start.
    sandbox.failures_dir.mkdir(parents=True)
    (sandbox.failures_dir / "libvirt-eof.yaml").write_text(SIGNATURE)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def gatekeeper_messages(box: Sandbox, number: int) -> list[str]:
    assert box.sim is not None
    return [m.text for m in box.sim.get_change(number).messages if m.author == "gatekeeper"]


def build_of(box: Sandbox, number: int) -> BuildRecord:
    assert box.app is not None
    with box.app.db.session() as session:
        [record] = session.scalars(select(BuildRecord).where(BuildRecord.change == number))
        return record


def test_a_known_failure_is_named_in_the_report_and_an_unknown_one_is_uncategorised(
    box: Sandbox,
) -> None:
    assert box.app is not None
    known, _ = box.push_change(
        "openstack/nova", "Spawn on a flaky libvirt", {"fixture-n-cpu.txt": COMPUTE_LOG}
    )
    unknown, _ = box.push_change(
        "openstack/nova", "Break something new", {"fixture-n-cpu.txt": "all quiet\n"}
    )
    box.wait_until_settled()

    [report] = gatekeeper_messages(box, known)
    lines = report.splitlines()
    job = next(i for i, line in enumerate(lines) if line.startswith("- gate-tempest-dsvm-full"))
    assert ": FAILURE" in lines[job]
    # Right under its job's line, so a reader sees which job it explains.
    assert lines[job + 1] == (
        "  Recognised: libvirt closed the connection under nova-compute "
        "https://bugs.launchpad.net/nova/+bug/1643911"
    )
    [other] = gatekeeper_messages(box, unknown)
    assert ": FAILURE" in other and "Recognised" not in other

    # The match is stored with where it was found (line 3: after the job's own line).
    record = build_of(box, known)
    with box.app.db.session() as session:
        [match] = session.scalars(select(FailureMatch))
    assert (match.build_uuid, match.signature) == (record.uuid, "libvirt-eof")
    assert (match.file, match.line_number) == ("logs/screen-n-cpu.txt.gz", 3)
    assert "libvirtError: End of file" in match.line

    # The page of known failures shows the hit and the build left unexplained.
    assert box.app.web is not None
    web = TestClient(box.app.web.app, base_url=box.app.web_url.rstrip("/"))
    page = web.get("/insights/failures")
    assert page.status_code == 200
    assert "libvirt-eof" in page.text
    assert f"/build/{build_of(box, unknown).uuid}" in page.text
    data = web.get("/api/insights/failures").json()
    assert [s["id"] for s in data["signatures"]] == ["libvirt-eof"]
    assert data["signatures"][0]["total"] == 1
    assert [b["uuid"] for b in data["uncategorised"]] == [build_of(box, unknown).uuid]


def test_a_signature_added_and_reconfigured_is_recognised_from_the_next_build(
    box: Sandbox,
) -> None:
    assert box.app is not None
    (box.failures_dir / "quiet.yaml").write_text(
        "id: compute-too-quiet\ndescription: nova-compute said nothing\n"
        "files: [logs/screen-n-cpu.txt*]\npatterns: ['^all quiet$']\n"
    )
    # A broken file beside it is refused with its errors and the rest stay as they were.
    (box.failures_dir / "broken.yaml").write_text("id: broken\ndescription: d\npatterns: ['(']\n")
    assert box.app.reconfigure()
    before, _ = box.push_change("openstack/nova", "Quiet", {"fixture-n-cpu.txt": "all quiet\n"})
    box.wait_until_settled()
    assert "Recognised" not in gatekeeper_messages(box, before)[0]

    (box.failures_dir / "broken.yaml").unlink()
    assert box.app.reconfigure()  # what `gatekeeper reconfigure` (SIGHUP) runs
    after, _ = box.push_change(
        "openstack/nova", "Quiet again", {"fixture-n-cpu.txt": "all quiet\n"}
    )
    box.wait_until_settled()
    [report] = gatekeeper_messages(box, after)
    assert "  Recognised: nova-compute said nothing\n" in report
