"""Held nodes never starve the pool (issue 13, attack 4), through the real
daemon against the Gerrit simulator, with the local provider's real nodes.

Before: four failed builds held four nodes for a day against max-servers 4,
every later build waited node-wait and ended NODE_FAILURE, reported only as
``(no logs) : NODE_FAILURE in 0s``; an aborted build held its node too.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.db.nodes import NodeStore
from gatekeeper.model.node import NodeState
from gatekeeper.sandbox.harness import Sandbox
from tests.functional.test_end_to_end import BROKEN_NOVA, gatekeeper_messages

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def _box(tmp_path: Path, extra: dict[str, Any]) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path / "sandbox", REPO / "layout.yaml", extra_site=extra)
    try:
        box.start()
        yield box
    finally:
        box.stop()


class HeldSampler:
    """The most nodes seen held at once, looked at every 20 ms in its own
    thread for as long as the test runs (the cap itself is kept in the
    release's transaction; this watches the daemon keep it end to end)."""

    def __init__(self, nodes: NodeStore) -> None:
        self.nodes = nodes
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="held-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.most = max(self.most, len(self.nodes.list(state=NodeState.HOLD)))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.most


@pytest.mark.parametrize(
    ("pool", "most_held"),
    [
        # The default cap (2): the third failure releases the oldest hold.
        pytest.param({}, 2, id="default-hold-max"),
        # A cap as large as max-servers lets four holds fill the provider:
        # the pool releases the oldest hold for the build that waits.
        pytest.param({"hold-max": 4}, 4, id="hold-max-fills-the-provider"),
    ],
)
def test_failed_builds_do_not_starve_the_next_one(
    tmp_path: Path, pool: dict[str, Any], most_held: int
) -> None:
    # node-wait is what a starved build would wait before NODE_FAILURE; the
    # local provider boots a node in well under a second.
    extra = {"worker": {"count": 2, "node-wait": 20}, "pool": {"interval": 0.5, **pool}}
    with _box(tmp_path, extra) as sandbox:
        assert sandbox.sim is not None and sandbox.app is not None
        nodes = NodeStore(sandbox.app.db)
        sampler = HeldSampler(nodes)
        failed = []
        for i in range(4):
            number, _ = sandbox.push_change(
                "openstack/nova", f"Break flavors {i}", {"nova/__init__.py": BROKEN_NOVA}
            )
            failed.append(number)
            sandbox.wait_until_settled()
            assert sandbox.sim.get_change(number).votes["Verified"] == {"gatekeeper": -1}

        number, _ = sandbox.push_change("openstack/nova", "Tidy", {"README.rst": "tidy\n"})
        sandbox.wait_until_settled()
        most = sampler.stop()

        [message] = gatekeeper_messages(sandbox, number)
        assert "NODE_FAILURE" not in message
        assert re.search(r"^- gate-devstack-vm \S+ : SUCCESS in ", message, re.M), message
        assert sandbox.sim.get_change(number).votes["Verified"] == {"gatekeeper": 1}
        assert most <= most_held
        # The first failure's node was the one given up (the oldest hold).
        builds = sandbox.app.scheduler.context.builds  # type: ignore[union-attr]
        [first] = builds.for_change(failed[0])
        [last] = builds.for_change(failed[-1])
        held = {n.name for n in nodes.list(state=NodeState.HOLD)}
        assert first.node not in held and last.node in held
        assert all(n.auto_hold for n in nodes.list(state=NodeState.HOLD))


def test_a_build_aborted_by_a_new_patchset_holds_nothing(tmp_path: Path) -> None:
    with _box(tmp_path, {}) as sandbox:
        assert sandbox.sim is not None and sandbox.app is not None
        scheduler = sandbox.app.scheduler
        assert scheduler is not None
        # Fails if it is ever let finish: only the abort can end it early.
        slow = {"contrib/ci/pre_test_hook.sh": "sleep 120\nexit 1\n"}  # run by the job's kit
        number, _ = sandbox.push_change("openstack/nova", "Slow", slow)

        def running() -> bool:
            return any(
                b.started_at
                for m in scheduler.managers
                for i in list(m.items)
                for b in list(i.builds.values())
            )

        sandbox.wait_for(running, 60, "patchset 1's build to start")
        change_id = sandbox.sim.get_change(number).change_id
        sandbox.push_change("openstack/nova", "Fast", {"README.rst": "x\n"}, change_id=change_id)
        sandbox.wait_until_settled()
        aborted = [b for b in scheduler.context.builds.for_change(number) if b.result == "ABORTED"]
        assert len(aborted) == 1 and aborted[0].node
        nodes = NodeStore(sandbox.app.db)
        assert nodes.list(state=NodeState.HOLD) == []
        node = nodes.get(aborted[0].node)
        assert node is None or node.state in (NodeState.DELETE, NodeState.DELETING)


def test_node_failure_report_says_what_the_pool_had(tmp_path: Path) -> None:
    # A provider allowed no servers: no build can get a node, and the report
    # must say why instead of "(no logs) : NODE_FAILURE in 0s".
    extra = {
        "worker": {"count": 2, "node-wait": 2},
        "providers": [{"name": "local", "driver": "local", "max-servers": 0}],
    }
    with _box(tmp_path, extra) as sandbox:
        assert sandbox.sim is not None
        number, _ = sandbox.push_change("openstack/nova", "Tidy", {"README.rst": "tidy\n"})
        sandbox.wait_until_settled()
        [message] = gatekeeper_messages(sandbox, number)
        line = next(x for x in message.splitlines() if x.startswith("- gate-devstack-vm"))
        assert re.fullmatch(
            r"- gate-devstack-vm \(no logs\) : NODE_FAILURE \(no devstack-vm node after "
            r"[\d.]+s: 0 ready, 0 building, 0 in use, 0 held, 0 of capacity 0 taken \(local\)\)",
            line,
        ), line
        assert sandbox.sim.get_change(number).votes["Verified"] == {"gatekeeper": -1}
