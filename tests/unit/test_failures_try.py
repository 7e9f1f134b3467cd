"""``gatekeeper failures try``: a signature tried on the archived logs of
recent failed builds before it is added, on a real SQLite site."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekeeper.cli import main
from gatekeeper.config.loader import load_site
from gatekeeper.db.builds import BuildStore
from gatekeeper.db.engine import Database

pytestmark = pytest.mark.timeout(30)

SIGNATURE = """\
id: mysql-gone-away
description: MySQL server has gone away
files: [logs/screen-*.txt*]
patterns: ['OperationalError: \\(2006, .MySQL server has gone away']
project: ^openstack/
"""


def failed_build(
    db: Database, root: Path, uuid: str, job: str, project: str, logs: dict[str, str], ago: float
) -> None:
    """A FAILURE of ``ago`` seconds ago, its logs archived as the worker does."""
    log_path = f"{uuid[:2]}/{uuid}"
    builds = BuildStore(db)
    when = time.time() - ago
    builds.dispatched(uuid, job, project, 1000, 1, "check", when, parameters={"LOG_PATH": log_path})
    builds.completed(uuid, "FAILURE", when + 60, log_url=f"http://logs/{log_path}/")
    for name, text in logs.items():
        (root / log_path / name).parent.mkdir(parents=True, exist_ok=True)
        (root / log_path / name).write_text(text)


def test_a_new_signature_is_tried_on_recent_failed_builds(tmp_path: Path) -> None:
    site_file = tmp_path / "gatekeeper.yaml"
    site_file.write_text(f"state-dir: {tmp_path / 'state'}\n")
    site = load_site(site_file, tmp_path)
    assert site.log_root is not None
    db = Database(site.database)
    db.migrate()
    gone = "ERROR oslo_db OperationalError: (2006, 'MySQL server has gone away')\n"
    failed_build(
        db,
        site.log_root,
        "a" * 32,
        "gate-nova-python27",
        "openstack/nova",
        {"logs/screen-n-api.txt": "ok\n" + gone},
        ago=3600,
    )
    failed_build(
        db,
        site.log_root,
        "b" * 32,
        "gate-nova-python27",
        "openstack/nova",
        {"logs/screen-n-api.txt": "ok\nall fine\n"},
        ago=7200,
    )
    # Outside the window: not scanned.
    failed_build(
        db,
        site.log_root,
        "c" * 32,
        "gate-nova-python27",
        "openstack/nova",
        {"logs/screen-n-api.txt": gone},
        ago=10 * 86400,
    )
    # Its filter leaves this project out.
    failed_build(
        db, site.log_root, "d" * 32, "gate-x", "stackforge/x", {"logs/screen-x.txt": gone}, ago=60
    )
    db.dispose()
    signature = tmp_path / "new.yaml"
    signature.write_text(SIGNATURE)

    result = CliRunner().invoke(main, ["failures", "try", str(signature), "-c", str(site_file)])
    assert result.exit_code == 0, result.output
    assert "a" * 12 in result.output and "logs/screen-n-api.txt:2" in result.output
    assert "b" * 12 not in result.output and "c" * 12 not in result.output
    assert "mysql-gone-away: matched 1 of 2 failed builds of the last 7 days" in result.output

    wider = CliRunner().invoke(
        main, ["failures", "try", str(signature), "-c", str(site_file), "--days", "30"]
    )
    assert "matched 2 of 3 failed builds of the last 30 days" in wider.output


def test_a_signature_that_does_not_load_says_where(tmp_path: Path) -> None:
    signature = tmp_path / "bad.yaml"
    signature.write_text(SIGNATURE.replace("\\(2006", "(2006"))
    site_file = tmp_path / "gatekeeper.yaml"
    site_file.write_text(f"state-dir: {tmp_path / 'state'}\n")
    result = CliRunner().invoke(main, ["failures", "try", str(signature), "-c", str(site_file)])
    assert result.exit_code == 1
    assert f"{signature}:4: patterns[0]: not an RE2 expression: missing )" in result.output
