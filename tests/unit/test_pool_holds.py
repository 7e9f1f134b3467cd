"""The hold cap and the pool's room for waiting builds, on SQLite and
PostgreSQL, with the local provider's real nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.config.site import LabelConfig, ProviderConfig, SiteConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.nodes import NodeStore
from gatekeeper.dispatch.protocol import decode_complete, encode
from gatekeeper.model.build import Build, BuildResult
from gatekeeper.model.node import LaunchedNode, NodeState
from gatekeeper.model.results import CompleteData, NodeWait
from gatekeeper.pool.pool import Pool
from gatekeeper.pool.providers import make_provider
from gatekeeper.scheduler.reports import job_line

pytestmark = pytest.mark.timeout(60)


def _used(nodes: NodeStore, name: str, label: str = "trusty") -> None:
    """A node a build has claimed (so it can be released)."""
    nodes.add(name, label, "local")
    nodes.set_ready(name, LaunchedNode(external_id=f"/x/{name}", address="localhost"))
    nodes.set_state(name, NodeState.USED)


def _states(nodes: NodeStore) -> dict[str, str]:
    return {n.name: n.state for n in nodes.list()}


def test_a_failure_beyond_hold_max_releases_the_oldest_automatic_hold(db: Database) -> None:
    nodes = NodeStore(db)
    for name in ("a", "b", "c", "other"):
        _used(nodes, name, "xenial" if name == "other" else "trusty")
    assert nodes.release("other", True, 3600, "build o FAILURE", hold_max=2) == NodeState.HOLD
    assert nodes.release("a", True, 3600, "build 1 FAILURE", hold_max=2) == NodeState.HOLD
    assert nodes.release("b", True, 3600, "build 2 FAILURE", hold_max=2) == NodeState.HOLD
    assert nodes.release("c", True, 3600, "build 3 FAILURE", hold_max=2) == NodeState.HOLD
    # Per label: xenial's hold is not trusty's to give up.
    assert _states(nodes) == {
        "a": NodeState.DELETE,
        "b": NodeState.HOLD,
        "c": NodeState.HOLD,
        "other": NodeState.HOLD,
    }
    released = nodes.get("a")
    assert released is not None and "hold-max" in released.comment
    assert released.hold_until is not None  # what it had; DELETE ignores it


def test_operator_holds_count_but_are_never_released_by_the_cap(db: Database) -> None:
    nodes = NodeStore(db)
    for name in ("op1", "auto", "op2", "new"):
        _used(nodes, name)
    nodes.hold("op1", None, "debugging bug 1")
    assert nodes.release("auto", True, 3600, "build 1 FAILURE", hold_max=2) == NodeState.HOLD
    # The operator's second hold goes over the cap: an operator may, and the
    # cap takes room back from automatic holds only.
    nodes.hold("op2", 3600, "debugging bug 2")
    assert nodes.release("new", True, 3600, "build 2 FAILURE", hold_max=2) == NodeState.DELETE
    assert _states(nodes) == {
        "op1": NodeState.HOLD,
        "auto": NodeState.DELETE,
        "op2": NodeState.HOLD,
        "new": NodeState.DELETE,
    }
    new = nodes.get("new")
    assert new is not None and "operators' holds" in new.comment and new.hold_until is None
    assert [n.auto_hold for n in nodes.list(state=NodeState.HOLD)] == [False, False]


def test_hold_max_zero_holds_nothing(db: Database) -> None:
    nodes = NodeStore(db)
    _used(nodes, "a")
    assert nodes.release("a", True, 3600, "build 1 TIMED_OUT", hold_max=0) == NodeState.DELETE


def test_a_lowered_cap_is_enforced_by_the_pool(db: Database) -> None:
    nodes = NodeStore(db)
    for name in ("a", "b", "c", "op"):
        _used(nodes, name)
    nodes.hold("op", None, "keep")
    for name in ("a", "b", "c"):
        nodes.release(name, True, 3600, f"build {name} FAILURE", hold_max=4)
    assert nodes.enforce_hold_max(lambda label: 2) == ["a", "b"]
    assert _states(nodes) == {
        "a": NodeState.DELETE,
        "b": NodeState.DELETE,
        "c": NodeState.HOLD,
        "op": NodeState.HOLD,
    }
    assert nodes.enforce_hold_max(lambda label: 2) == []


def test_site_hold_max_per_label_and_default() -> None:
    site = SiteConfig.model_validate(
        {"pool": {"hold-max": 3}, "labels": [{"name": "big", "hold-max": 0}, {"name": "dflt"}]}
    )
    assert (site.hold_max("big"), site.hold_max("dflt"), site.hold_max("unlisted")) == (0, 3, 3)
    assert SiteConfig().hold_max("any") == 2


@pytest.fixture
def full_pool(tmp_path: Path, db: Database) -> Iterator[Pool]:
    """max-servers 2, min-ready 0; the pool is never started: rounds are run by hand."""
    config = ProviderConfig.model_validate(
        {"name": "local", "driver": "local", "root": tmp_path / "nodes", "max-servers": 2}
    )
    label = LabelConfig.model_validate({"name": "trusty", "min-ready": 0, "hold-max": 2})
    site = SiteConfig(providers=[config], labels=[label])
    pool = Pool(site, db, {"local": make_provider(config)}, [label])
    yield pool
    pool.stop()


def _round(pool: Pool) -> None:
    pool.run_once()
    assert pool.wait_for_launches(timeout=30)


def _fail_two(pool: Pool) -> list[str]:
    """Two builds that fail on the pool's two nodes: the provider is full of holds."""
    nodes = pool.nodes
    names = []
    for build in ("b1", "b2"):
        request = nodes.request("trusty", "w", build)
        _round(pool)
        node = nodes.claim("trusty", "w", build)
        nodes.cancel_request(request)
        assert node is not None
        nodes.release(node.name, True, 3600, f"build {build} FAILURE", hold_max=2)
        names.append(node.name)
    return names


def test_a_waiting_build_gets_the_room_of_the_oldest_hold(full_pool: Pool) -> None:
    nodes = full_pool.nodes
    oldest, newest = _fail_two(full_pool)
    request = nodes.request("trusty", "w", "b3")
    _round(full_pool)  # full: the oldest hold is released and deleted
    assert oldest not in _states(nodes)
    _round(full_pool)  # its room is launched into
    node = nodes.claim("trusty", "w", "b3")
    nodes.cancel_request(request)
    assert node is not None and node.name not in (oldest, newest)
    assert _states(nodes) == {newest: NodeState.HOLD, node.name: NodeState.USED}


def test_no_hold_is_released_for_min_ready_or_an_operators_hold(
    full_pool: Pool, db: Database
) -> None:
    nodes = full_pool.nodes
    first, second = _fail_two(full_pool)
    nodes.hold(first, None, "an operator keeps it")
    # min-ready alone: the holds stay (they would last only until the pool got busy).
    full_pool.labels[0].min_ready = 1
    _round(full_pool)
    _round(full_pool)
    assert _states(nodes) == {first: NodeState.HOLD, second: NodeState.HOLD}
    # A waiting build: the automatic hold goes, the operator's stays.
    nodes.request("trusty", "w", "b3")
    _round(full_pool)
    _round(full_pool)
    states = _states(nodes)
    assert states.pop(first) == NodeState.HOLD and second not in states
    assert list(states.values()) == [NodeState.READY]
    _round(full_pool)
    nodes.hold(next(iter(states)), None, "the operator takes the new one too")
    _round(full_pool)
    _round(full_pool)
    # Only operators' holds left: nothing to release; the build waits.
    assert sorted(_states(nodes).values()) == [NodeState.HOLD, NodeState.HOLD]


def test_node_failure_travels_to_its_report_line() -> None:
    wait = NodeWait(
        label="devstack-vm",
        waited=600.0,
        held=4,
        capacity=4,
        occupied=4,
        providers=["local"],
        backing_off=["local"],
    )
    sent = CompleteData(uuid="u", result="NODE_FAILURE", node_wait=wait)
    got = decode_complete(encode(sent))
    assert got == sent
    build = Build(job="gate-devstack-vm", item_uuid="i", result=BuildResult.NODE_FAILURE)
    build.node_wait, build.started_at, build.ended_at = got.node_wait, 1.0, 1.0
    assert job_line(build) == (
        "- gate-devstack-vm (no logs) : NODE_FAILURE (no devstack-vm node after 600s: "
        "0 ready, 0 building, 0 in use, 4 held, 4 of capacity 4 taken (local); "
        "backing off: local)"
    )
    unserved = NodeWait(label="arm64", waited=2.5)
    assert unserved.describe() == "no arm64 node after 2.5s: no provider serves arm64"
    # Other results keep their line; a NODE_FAILURE from an older worker too.
    build.node_wait = None
    assert job_line(build) == "- gate-devstack-vm (no logs) : NODE_FAILURE in 0s"
    build.result, build.url, build.ended_at = BuildResult.FAILURE, "http://l/1", 63.0
    assert job_line(build) == "- gate-devstack-vm http://l/1 : FAILURE in 1m 02s"
