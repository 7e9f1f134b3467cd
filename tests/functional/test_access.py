"""Access failures are loud: the whole daemon against a simulator whose
access rules refuse gatekeeper's account something (Gerrit 3.x's Stream
Events capability, a label permission, a submit requirement)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.sandbox.harness import Sandbox
from tests.functional.conftest import REPO

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox whose simulator runs but whose daemon the test starts."""
    sandbox = Sandbox(tmp_path / "sandbox", REPO / "layout.yaml")
    try:
        sandbox.start_gerrit()
        yield sandbox
    finally:
        sandbox.stop()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_account_that_may_not_stream_is_an_error_at_start(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    assert box.sim is not None
    box.sim.set_stream_events("gatekeeper", False)
    box.start_daemon()
    assert box.listener is not None
    listener = box.listener
    box.wait_for(lambda: bool(listener.access_error), 30, "the listener to be refused")
    assert any(
        "refuses account gatekeeper a stream" in m and "Stream Events" in m for m in errors(caplog)
    )
    assert box.sim.stream_count() == 0

    # An administrator grants it: the next try streams, and changes are tested.
    box.sim.set_stream_events("gatekeeper", True)
    box.wait_for(lambda: box.sim is not None and box.sim.stream_count() == 1, 30, "a stream")
    number, _ = box.push_change("openstack/nova", "Fix it", {"nova/a.txt": "a\n"})
    box.wait_until_settled()
    assert box.sim.get_change(number).votes.get("Verified") == {"gatekeeper": 1}


def test_a_refused_vote_is_an_error_on_the_report(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    assert box.sim is not None
    # Only the CI group votes Verified, and gatekeeper's account is not in it.
    box.sim.grant_label("Verified", "CI", -2, 2)
    box.start_daemon()
    number, _ = box.push_change("openstack/nova", "Fix it", {"nova/a.txt": "a\n"})
    box.wait_until_settled()
    change = box.sim.get_change(number)
    assert "Verified" not in change.votes
    assert not [m for m in change.messages if m.author == "gatekeeper"]
    assert any(
        "Gerrit refused the" in m and 'Applying label "Verified": 1 is restricted' in m
        for m in errors(caplog)
    )


def test_a_change_gerrit_will_not_submit_is_a_merge_failure_naming_why(box: Sandbox) -> None:
    assert box.sim is not None
    sim = box.sim
    box.start_daemon()
    number, ps = box.push_change("openstack/nova", "Fix it", {"nova/a.txt": "a\n"})
    box.wait_until_settled()
    # A veto the gate's 'require' does not look at (it wants a +2, which bob
    # gives), but Gerrit's submit requirements do: Code-Review -2 blocks.
    box.review("alice", number, ps, "--code-review", "-2")
    box.approve(number, ps)
    box.wait_until_settled()
    assert sim.get_change(number).status == "NEW"
    mine = [r for r in sim.reviews() if r.username == "gatekeeper"]
    # No submit was tried: the head's check read the submit records first.
    assert not any(r.submit for r in mine)
    assert mine[-2].labels == {"Verified": 2} and mine[-2].exit_status == 0
    failure = [m.text for m in sim.get_change(number).messages if m.author == "gatekeeper"][-1]
    assert "submit requirements are not met: blocked by Code-Review" in failure
