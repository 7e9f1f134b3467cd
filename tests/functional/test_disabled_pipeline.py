"""disable-after-consecutive-failures through the daemon: a check pipeline
that fails twice in a row stops voting and only comments (its ``disabled``
reporter), stays so across a restart, and votes again after a reconfiguration.
The status page (Debian's headless Chromium) says the pipeline is disabled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from selenium.webdriver.support.ui import WebDriverWait

from gatekeeper.cli import main
from gatekeeper.sandbox.harness import Sandbox
from gatekeeper.sandbox.seed import PROJECTS

pytestmark = pytest.mark.timeout(180)


LAYOUT = """
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
    start:
      gerrit: {}
    success:
      gerrit:
        verified: 1
    failure:
      gerrit:
        verified: -1
    # While disabled: a comment without votes.
    disabled:
      gerrit: {}
    disable-after-consecutive-failures: 2
jobs:
  - name: unit
    node: devstack-vm
    # Fails when the change adds a FAIL file to nova.
    run: test ! -e openstack/nova/FAIL
projects:
  - name: openstack/nova
    check: [unit]
""" + "".join(f"  - name: {p}\n" for p in PROJECTS[1:])


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    layout = tmp_path / "layout.yaml"
    layout.write_text(LAYOUT)
    sandbox = Sandbox(tmp_path / "sandbox", layout)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def _ours(box: Sandbox, number: int) -> list[str]:
    assert box.sim is not None
    return [m.text for m in box.sim.get_change(number).messages if m.author == "gatekeeper"]


def _check(box: Sandbox, subject: str, fail: bool) -> tuple[int, list[str], dict[str, int]]:
    """Push a change to nova and let check run: its number, our messages on
    it and our Verified vote ({} when none)."""
    assert box.sim is not None
    files = {"FAIL": "x\n"} if fail else {f"{subject.split()[0]}.txt": "ok\n"}
    number, _ = box.push_change("openstack/nova", subject, files)
    box.wait_until_settled()
    votes = box.sim.get_change(number).votes.get("Verified", {})
    return number, _ours(box, number), votes


def _check_status(box: Sandbox) -> dict[str, object]:
    assert box.app is not None
    [check] = box.app.live_status()["pipelines"]
    assert isinstance(check, dict)
    return check


def _status_command(box: Sandbox, tmp_path: Path) -> str:
    """What ``gatekeeper status`` prints, as a person on the scheduler's host runs it."""
    assert box.app is not None and box.app.gearman is not None
    gearman = f"gearman:\n  listen: {{port: {box.app.gearman.port}}}\n"
    site = box.site_file(tmp_path / "gatekeeper.yaml", gearman)
    result = CliRunner().invoke(main, ["status", "-c", str(site)])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_pipeline_disables_itself_until_a_reconfiguration(
    box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, browser: Any, artifacts: Path
) -> None:
    # The status command makes its own token from the site's secret.
    monkeypatch.delenv("GATEKEEPER_TOKEN", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    # Two failures in a row: both reported as usual; then the pipeline is disabled.
    _, messages, votes = _check(box, "first broken", fail=True)
    assert votes == {"gatekeeper": -1} and "Starting check jobs." in messages[0]
    _, _, votes = _check(box, "second broken", fail=True)
    assert votes == {"gatekeeper": -1}
    status = _check_status(box)
    assert status["disabled"] is True and status["consecutive_failures"] == 2

    # Disabled: no start report, no vote, only the disabled reporter's comment.
    _, messages, votes = _check(box, "third broken", fail=True)
    assert votes == {}
    assert len(messages) == 1 and "Build failed (check pipeline)." in messages[0]
    assert "check (independent): empty DISABLED after 3 failures in a row" in _status_command(
        box, tmp_path
    )
    # The status page says so too, though the pipeline is empty.
    assert box.app is not None
    browser.get(box.app.web_url)
    state = WebDriverWait(browser, 60, poll_frequency=0.2).until(
        lambda b: next(
            (e for e in b.find_elements("css selector", ".gk-pipeline-disabled") if e.text),
            None,
        ),
        message="the disabled pipeline's note",
    )
    assert state.text.startswith("disabled after failures in a row")
    browser.save_screenshot(str(artifacts / "disabled.png"))

    # A restart keeps it disabled; a success does not enable it either.
    assert box.app is not None
    box.app.stop()
    box.start_daemon()
    assert _check_status(box)["disabled"] is True
    _, messages, votes = _check(box, "fine after restart", fail=False)
    assert votes == {}
    assert len(messages) == 1 and "Build succeeded (check pipeline)." in messages[0]

    # A reconfiguration enables it: start reports and votes again.
    assert box.app.reconfigure() is True
    assert _check_status(box)["disabled"] is False
    _, messages, votes = _check(box, "fine after reload", fail=False)
    assert votes == {"gatekeeper": 1}
    assert "Starting check jobs." in messages[0]
