"""A flaky job through the whole daemon and the Gerrit simulator: it fails,
passes on ``recheck`` with nothing changed, and is counted; the CLI and the
web (in Chromium) show the incident, and the next failure's comment in
Gerrit says how often the job failed on unchanged code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from gatekeeper.cli import main
from gatekeeper.db.tables import BuildRecord
from gatekeeper.sandbox.harness import Sandbox
from tests.functional.test_gate import PROJECTS, UNCONFINED

pytestmark = pytest.mark.timeout(240)

FLAKY_LINE = re.compile(r"^  this job failed on unchanged code in (\d+)% of recent runs$", re.M)


def layout(flags: Path) -> str:
    """check runs on a new patch set and on "recheck"; tempest fails while
    the test's 'broken' flag exists, whatever the change holds."""
    others = "".join(f"  - name: {p}\n" for p in PROJECTS[1:])
    return rf"""
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
        - event: comment-added
          comment: (?s)\APatch Set [0-9]+:\n\nrecheck\Z
    success:
      gerrit:
        verified: 1
    failure:
      gerrit:
        verified: -1
jobs:
  - name: tempest
    node: devstack-vm
    run: |
      if [ -e {flags}/broken ]; then echo "tempest: a test timed out"; exit 1; fi
      echo "tempest: all passed"
projects:
  - name: openstack/nova
    check: [tempest]
{others}"""


@pytest.fixture
def flags(tmp_path: Path) -> Path:
    path = tmp_path / "flags"
    path.mkdir()
    return path


@pytest.fixture
def box(tmp_path: Path, flags: Path) -> Iterator[Sandbox]:
    path = tmp_path / "layout.yaml"
    path.write_text(layout(flags))
    sandbox = Sandbox(
        tmp_path / "sandbox",
        path,
        # The job reads the flag outside its node: unconfined (see test_gate).
        # Two runs are enough history to speak of, and every report reads
        # the rate afresh, so the story need not wait out the cache.
        extra_site={
            "providers": [UNCONFINED],
            "insights": {"flaky-min-runs": 2, "flaky-cache": 0},
        },
    )
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def messages(box: Sandbox, number: int) -> list[str]:
    assert box.sim is not None
    return [m.text for m in box.sim.get_change(number).messages if m.author == "gatekeeper"]


def results(box: Sandbox, number: int) -> list[tuple[str, str | None]]:
    assert box.app is not None
    with box.app.db.session() as session:
        query = (
            select(BuildRecord.uuid, BuildRecord.result)
            .where(BuildRecord.change == number)
            .order_by(BuildRecord.dispatched_at)
        )
        return [(uuid, result) for uuid, result in session.execute(query)]


def test_a_job_that_passes_on_recheck_is_flaky_and_the_next_failure_says_so(
    box: Sandbox, flags: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    broken = flags / "broken"
    broken.touch()
    number, ps = box.push_change("openstack/nova", "Fix a typo", {"nova/typo.txt": "x\n"})
    box.wait_until_settled()
    [failed] = messages(box, number)
    assert "- tempest " in failed and ": FAILURE" in failed
    # Nothing to say yet: the job has never passed on code it failed on.
    assert not FLAKY_LINE.search(failed)

    # The fault goes away by itself; the developer rechecks, changing nothing.
    broken.unlink()
    box.comment(number, ps, "recheck")
    box.wait_until_settled()
    assert box.sim is not None
    assert box.sim.get_change(number).votes["Verified"] == {"gatekeeper": 1}
    (failed_uuid, first), (passed_uuid, second) = results(box, number)
    assert (first, second) == ("FAILURE", "SUCCESS")

    # Another change fails the same job: its comment says the job is flaky
    # (one flaky failure in the three runs so far, this one included).
    broken.touch()
    other, _ = box.push_change("openstack/nova", "Add a test", {"nova/test.txt": "y\n"})
    box.wait_until_settled()
    [comment] = messages(box, other)
    job_lines = comment.splitlines()
    at = next(i for i, line in enumerate(job_lines) if line.startswith("- tempest "))
    assert ": FAILURE" in job_lines[at]
    assert job_lines[at + 1] == "  this job failed on unchanged code in 33% of recent runs"

    # The CLI counts it: three runs, two failures, one of them flaky.
    site = tmp_path / "gatekeeper.yaml"
    site.write_text(f"database: {box.site.database}\n")
    out = CliRunner().invoke(main, ["insights", "flaky", "-c", str(site), "--job", "tempest"])
    assert out.exit_code == 0, out.output
    rows = [line.split() for line in out.output.splitlines()]
    assert ["tempest", "3", "2", "1", "1", "33%"] in rows
    [incident] = [line for line in out.output.splitlines() if failed_uuid[:12] in line]
    assert f"{number},{ps}" in incident and passed_uuid[:12] in incident
    assert "(FAILURE on local)" in incident

    # The web shows it in Chromium (last: where Chromium is missing, the
    # rest of the story has been told): from the nav to the index to the
    # flaky page, on to the failed build's page and its logs.
    browser = request.getfixturevalue("browser")
    artifacts: Path = request.getfixturevalue("artifacts")
    from selenium.webdriver.common.by import By

    assert box.app is not None
    browser.get(box.app.web_url)
    browser.find_element(By.ID, "gk-nav-insights").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Insights"
    links = browser.find_elements(By.CSS_SELECTOR, "#gk-insights a")
    assert [a.text for a in links] == ["Providers", "Flaky jobs", "Known failures"]
    links[1].click()
    assert browser.current_url.endswith("/insights/flaky")
    [row] = browser.find_elements(By.CSS_SELECTOR, "#gk-flaky-jobs tbody tr")
    assert row.text.split() == ["tempest", "3", "2", "1", "1", "33%"]
    [incident_row] = browser.find_elements(By.CSS_SELECTOR, "#gk-flaky-incidents tbody tr")
    assert f"{number},{ps}" in incident_row.text and "openstack/nova" in incident_row.text
    browser.save_screenshot(str(artifacts / "insights-flaky.png"))
    incident_row.find_element(By.LINK_TEXT, f"FAILURE {failed_uuid[:7]}").click()
    assert browser.current_url.endswith(f"/build/{failed_uuid}")
    assert "tempest: a test timed out" in browser.find_element(By.ID, "gk-console").text
    browser.back()
    logs = browser.find_elements(By.CSS_SELECTOR, "#gk-flaky-incidents a")
    [log_link] = [
        a for a in logs if a.text == "logs" and failed_uuid[:7] in a.get_attribute("href")
    ]
    log_link.click()
    assert "console.txt" in browser.find_element(By.TAG_NAME, "body").text
