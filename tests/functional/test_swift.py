"""A job's ``swift:`` target through the daemon: the build's environment holds
a signature that verifies with the site's key.

No Swift runs here (nothing in the sandbox could stand for one), so the
test plays the formpost middleware's part: it recomputes the HMAC-SHA1.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from gatekeeper.db.tables import BuildRecord
from gatekeeper.sandbox.harness import Sandbox

pytestmark = pytest.mark.timeout(120)

KEY = "a-temp-url-key"

LAYOUT = """
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
jobs:
  - name: ^.*$
    swift:
      - name: logs
  - name: unit
    node: devstack-vm
    run: "mkdir -p logs && env | grep '^SWIFT_' > logs/swift.txt"
    logs: [logs/**]
projects:
  - name: openstack/nova
    check: [unit]
"""


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    path = tmp_path / "layout.yaml"
    path.write_text(LAYOUT)
    swift = {
        "storage-url": "https://swift.example.org/v1/AUTH_ci",
        "temp-url-key": KEY,
        "default-container": "logs",
    }
    sandbox = Sandbox(tmp_path / "sandbox", path, extra_site={"swift": swift})
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def test_a_build_gets_a_signed_upload_url(box: Sandbox) -> None:
    number, _ = box.push_change("openstack/nova", "A change", {"a.txt": "a\n"})
    box.wait_until_settled()

    assert box.app is not None
    with box.app.db.session() as session:
        [record] = session.scalars(select(BuildRecord).where(BuildRecord.change == number))
    assert record.result == "SUCCESS"
    root = box.site.log_root
    assert root is not None
    text = (root / record.log_url[len(box.site.log_url) :] / "logs" / "swift.txt").read_text()
    env = dict(line.split("=", 1) for line in text.splitlines())
    # The HMAC body spans lines; the job's env dump shows its first one only.
    url = env["SWIFT_logs_URL"]
    body = f"{urlsplit(url).path}\n\n{env['SWIFT_logs_MAX_FILE_SIZE']}\n"
    body += f"{env['SWIFT_logs_MAX_FILE_COUNT']}\n{env['SWIFT_logs_EXPIRY']}"
    signature = hmac.new(KEY.encode(), body.encode(), hashlib.sha1).hexdigest()
    assert env["SWIFT_logs_SIGNATURE"] == signature
    log_path = f"{str(number)[-2:]}/{number}/1/check/unit/{record.uuid[:7]}"
    assert url == f"https://swift.example.org/v1/AUTH_ci/logs/{log_path}"
