"""Gerrit misbehaving while gatekeeper reports: a review that stalls, and a
submit whose answer is lost. The scheduler must neither freeze nor report
a change that merged as a merge failure."""

from __future__ import annotations

import pytest

from gatekeeper.sandbox.harness import Sandbox
from gatekeeper.scheduler.reporter import GerritReporter

pytestmark = pytest.mark.timeout(240)


def gatekeeper_messages(sandbox: Sandbox, number: int) -> list[str]:
    assert sandbox.sim is not None
    return [m.text for m in sandbox.sim.get_change(number).messages if m.author == "gatekeeper"]


def quick_retries(sandbox: Sandbox) -> GerritReporter:
    """The reporter gives up waiting on a review after a second (a minute on a
    real site) and tries again soon, many times: the test decides when the
    stall ends, not the retry budget."""
    assert sandbox.app is not None and sandbox.app.scheduler is not None
    reporter = sandbox.app.scheduler.context.reporter
    assert isinstance(reporter, GerritReporter)
    reporter.timeout, reporter.backoff, reporter.backoff_max, reporter.attempts = 1.0, 0.2, 0.5, 400
    return reporter


def test_a_stalled_review_holds_up_only_its_own_change(sandbox: Sandbox) -> None:
    assert sandbox.sim is not None
    sim = sandbox.sim
    quick_retries(sandbox)
    stuck, stuck_ps = sandbox.push_change("openstack/nova", "Tidy flavors", {"nova/a.txt": "a\n"})
    sandbox.wait_until_settled()
    assert len(gatekeeper_messages(sandbox, stuck)) == 1

    # Gerrit stalls on gatekeeper's reviews of this change; a recheck's report hangs.
    sim.hold_reviews(stuck, "gatekeeper")
    sandbox.comment(stuck, stuck_ps, "recheck")
    sandbox.wait_for(lambda: sim.stalled_reviews(stuck) >= 1, 60, "the recheck report to stall")

    # Meanwhile another change goes through check and then the gate.
    other, other_ps = sandbox.push_change("openstack/glance", "Fix images", {"g.txt": "g\n"})
    sandbox.wait_for(
        lambda: sim.get_change(other).votes.get("Verified") == {"gatekeeper": 1},
        90,
        "the other change's check report",
    )
    sandbox.approve(other, other_ps)
    sandbox.wait_for(
        lambda: sim.get_change(other).status == "MERGED", 90, "the other change to merge"
    )
    # The stalled report was given up on and sent again, and has not landed.
    sandbox.wait_for(lambda: sim.stalled_reviews(stuck) >= 2, 60, "the report to be retried")
    assert len(gatekeeper_messages(sandbox, stuck)) == 1

    sim.release_reviews(stuck)
    sandbox.wait_until_settled()
    messages = gatekeeper_messages(sandbox, stuck)
    assert len(messages) == 2 and "(check pipeline)" in messages[1]
    assert sim.get_change(stuck).votes["Verified"] == {"gatekeeper": 1}
    # The stalled tries never ran: one review per report reached Gerrit.
    ran = [r for r in sim.reviews() if r.username == "gatekeeper" and f"{stuck},1" in r.targets]
    assert len(ran) == 2


def test_a_submit_whose_answer_is_lost_is_reported_merged_once(sandbox: Sandbox) -> None:
    assert sandbox.sim is not None
    sim = sandbox.sim
    quick_retries(sandbox)
    number, ps = sandbox.push_change("openstack/nova", "Add a flavor", {"nova/b.txt": "b\n"})
    sandbox.wait_until_settled()

    # Gerrit merges the change, then the connection drops before it answers.
    sim.cut_after_submit(number)
    sandbox.approve(number, ps)
    sandbox.wait_until_settled()

    change = sim.get_change(number)
    assert change.status == "MERGED"
    assert change.votes["Verified"] == {"gatekeeper": 2}
    submits = [
        r
        for r in sim.reviews()
        if r.username == "gatekeeper" and r.submit and f"{number},{ps}" in r.targets
    ]
    assert len(submits) == 1
    assert sandbox.app is not None
    [gate] = [p for p in sandbox.app.layout.pipelines if p.name == "gate"]
    merge_failure = gate.merge_failure_message.strip().splitlines()[0]
    messages = gatekeeper_messages(sandbox, number)
    assert not [m for m in messages if merge_failure in m]
    assert len([m for m in messages if "Build succeeded (gate pipeline)" in m]) == 1
