"""A change's whole path: push, check, approve, gate, merge; and failures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gatekeeper.db.nodes import NodeStore
from gatekeeper.model.node import NodeState
from gatekeeper.sandbox.harness import Sandbox

pytestmark = pytest.mark.timeout(240)

JOB_LINE = re.compile(r"^- gate-devstack-vm (\S+) : (SUCCESS|FAILURE) in \S+", re.M)

BROKEN_NOVA = '''"""Nova (sandbox): the arithmetic of flavors."""


def vcpus_for(flavor: str) -> int:
    return 0
'''


def gatekeeper_messages(sandbox: Sandbox, number: int) -> list[str]:
    assert sandbox.sim is not None
    change = sandbox.sim.get_change(number)
    return [m.text for m in change.messages if m.author == "gatekeeper"]


def archive_dir(sandbox: Sandbox, url: str) -> Path:
    root = sandbox.site.log_root
    assert root is not None and url.startswith(sandbox.site.log_url)
    return root / url[len(sandbox.site.log_url) :]


# Both dialects: 3.x's integer numbers and batch-ref-updated, and 2.13's strings.
@pytest.mark.parametrize("gerrit_version", ["3.11.1", "2.13"])
def test_check_then_gate_merges(sandbox: Sandbox, gerrit_version: str) -> None:
    assert sandbox.sim is not None and sandbox.sim.version == gerrit_version
    head_before = sandbox.sim.branch_head("openstack/nova")
    number, ps = sandbox.push_change("openstack/nova", "Add a flavor", {"nova/extra.txt": "x\n"})
    sandbox.wait_until_settled()

    change = sandbox.sim.get_change(number)
    assert change.votes["Verified"] == {"gatekeeper": 1}
    [check] = gatekeeper_messages(sandbox, number)
    assert "(check pipeline)" in check
    url = JOB_LINE.search(check).group(1)  # type: ignore[union-attr]
    logs = archive_dir(sandbox, url)
    assert "NODE_PROVIDER=local" in (logs / "console.txt").read_text()
    assert (logs / "index.html").exists()

    sandbox.approve(number, ps)
    sandbox.wait_until_settled()
    change = sandbox.sim.get_change(number)
    assert change.status == "MERGED"
    assert change.votes["Verified"] == {"gatekeeper": 2}
    assert sandbox.sim.branch_head("openstack/nova") != head_before
    gate = [m for m in gatekeeper_messages(sandbox, number) if "(gate pipeline)" in m]
    assert any(JOB_LINE.search(m) for m in gate)


def test_failing_job_votes_against_and_holds_node(sandbox: Sandbox) -> None:
    assert sandbox.sim is not None and sandbox.app is not None
    number, ps = sandbox.push_change(
        "openstack/nova", "Break flavors", {"nova/__init__.py": BROKEN_NOVA}
    )
    sandbox.wait_until_settled()
    change = sandbox.sim.get_change(number)
    assert change.votes["Verified"] == {"gatekeeper": -1}
    [message] = gatekeeper_messages(sandbox, number)
    match = JOB_LINE.search(message)
    assert match and match.group(2) == "FAILURE"
    logs = archive_dir(sandbox, match.group(1))
    # The stand-in devstack's flavors exercise reads them through nova's code.
    console = (logs / "console.txt").read_text()
    assert "FAILED flavors" in console and "AssertionError" in console
    held = NodeStore(sandbox.app.db).list(state=NodeState.HOLD)
    assert len(held) == 1 and held[0].hold_until is not None

    sandbox.approve(number, ps)
    sandbox.wait_until_settled()
    change = sandbox.sim.get_change(number)
    assert change.status == "NEW"
    assert change.votes["Verified"] == {"gatekeeper": -2}


def test_recheck_reruns_check(sandbox: Sandbox) -> None:
    assert sandbox.sim is not None
    number, ps = sandbox.push_change("openstack/glance", "Tidy", {"README.rst": "tidy\n"})
    sandbox.wait_until_settled()
    assert len(gatekeeper_messages(sandbox, number)) == 1
    sandbox.comment(number, ps, "I think that was a fluke.")
    sandbox.wait_until_settled()
    assert len(gatekeeper_messages(sandbox, number)) == 1
    sandbox.comment(number, ps, "recheck")
    sandbox.wait_until_settled()
    messages = gatekeeper_messages(sandbox, number)
    assert len(messages) == 2 and "(check pipeline)" in messages[1]


def test_new_patchset_cancels_the_old_one(sandbox: Sandbox) -> None:
    assert sandbox.sim is not None and sandbox.app is not None
    scheduler = sandbox.app.scheduler
    assert scheduler is not None
    slow = {"contrib/ci/pre_test_hook.sh": "sleep 120\n"}  # run by the job's kit
    number, ps1 = sandbox.push_change("openstack/nova", "Slow", slow)

    def ps1_running() -> bool:
        return any(
            b.started_at
            for m in scheduler.managers
            for i in list(m.items)
            for b in list(i.builds.values())
        )

    sandbox.wait_for(ps1_running, 60, "patchset 1's build to start")
    change_id = sandbox.sim.get_change(number).change_id
    _, ps2 = sandbox.push_change(
        "openstack/nova", "Fast", {"README.rst": "fast\n"}, change_id=change_id
    )
    assert ps2 == ps1 + 1
    sandbox.wait_until_settled()
    reviews = [r for r in sandbox.sim.reviews() if r.username == "gatekeeper"]
    assert [r.argv[-1] for r in reviews] == [f"{number},{ps2}"]
    builds = sandbox.app.scheduler.context.builds.for_change(number)
    # The running build was stopped on its worker: ABORTED, not left running.
    assert sorted(b.result or "" for b in builds) == ["ABORTED", "SUCCESS"]


HOSTILE = "it's \"quoted\" $(touch /tmp/pwned) `id`; rm -rf / \\ \n--submit\n'; echo '"


def test_hostile_text_reaches_gerrit_literally(sandbox: Sandbox) -> None:
    assert sandbox.sim is not None
    number, ps = sandbox.push_change("openstack/nova", f"Subject {HOSTILE}", {"README.rst": "x\n"})
    sandbox.wait_until_settled()
    sandbox.comment(number, ps, HOSTILE)
    sandbox.wait_until_settled()
    change = sandbox.sim.get_change(number)
    assert change.status == "NEW"
    assert any(m.text.endswith(HOSTILE) for m in change.messages if m.author == "alice")
    assert change.votes["Verified"] == {"gatekeeper": 1}
    assert not Path("/tmp/pwned").exists()


def test_check_tests_a_change_with_what_it_depends_on(sandbox: Sandbox) -> None:
    assert sandbox.sim is not None
    a, _ = sandbox.push_change("openstack/keystone", "Keystone part", {"k.txt": "k\n"})
    sandbox.wait_until_settled()
    needed = sandbox.sim.get_change(a).change_id
    b, _ = sandbox.push_change(
        "openstack/nova", f"Nova part\n\nDepends-On: {needed}", {"n.txt": "n\n"}
    )
    sandbox.wait_until_settled()
    [report] = gatekeeper_messages(sandbox, b)
    url = JOB_LINE.search(report).group(1)  # type: ignore[union-attr]
    console = (archive_dir(sandbox, url) / "console.txt").read_text()
    # Tested with the keystone change merged in, although it is not merged in Gerrit.
    assert (
        f"ZUUL_CHANGES=openstack/keystone:master:refs/changes/{a:02d}/{a}/1"
        f"^openstack/nova:master:refs/changes/{b:02d}/{b}/1"
    ) in console
    assert sandbox.sim.get_change(a).status == "NEW"
