"""The pool loop with the local provider, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatekeeper.config.site import LabelConfig, ProviderConfig, SiteConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.nodes import NodeStore
from gatekeeper.model.node import NodeState
from gatekeeper.pool.pool import Pool, local_node_name
from gatekeeper.pool.providers import make_provider
from gatekeeper.pool.providers.local import LocalProvider

PoolFactory = Callable[..., Pool]


def _label(name: str, min_ready: int, providers: list[str] | None = None) -> LabelConfig:
    return LabelConfig.model_validate(
        {"name": name, "min-ready": min_ready, "providers": providers or []}
    )


def _pool(tmp_path: Path, db: Database, labels: list[LabelConfig], max_servers: int = 4) -> Pool:
    config = ProviderConfig.model_validate(
        {"name": "local", "driver": "local", "root": tmp_path / "nodes", "max-servers": max_servers}
    )
    site = SiteConfig(providers=[config], labels=labels)
    return Pool(site, db, {"local": make_provider(config)}, labels)


def _round(pool: Pool) -> None:
    pool.run_once()
    assert pool.wait_for_launches(timeout=30)


@pytest.fixture
def pool_factory(tmp_path: Path, db: Database) -> Iterator[PoolFactory]:
    pools: list[Pool] = []

    def make(labels: list[LabelConfig], max_servers: int = 4) -> Pool:
        pool = _pool(tmp_path, db, labels, max_servers)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.stop()


def _states(db: Database) -> dict[str, str]:
    return {n.name: n.state for n in NodeStore(db).list()}


def test_min_ready_is_kept(tmp_path: Path, db: Database, pool_factory: PoolFactory) -> None:
    image = tmp_path / "images" / "trusty"
    image.mkdir(parents=True)
    (image / "devstack").write_text("baked in")
    pool = pool_factory([_label("trusty", 2)])

    _round(pool)
    _round(pool)

    nodes = NodeStore(db).list()
    assert [n.state for n in nodes] == [NodeState.READY] * 2
    for node in nodes:
        assert node.name.startswith("trusty-local-")
        assert Path(node.external_id) == tmp_path / "nodes" / node.name
        assert (Path(node.external_id) / "devstack").read_text() == "baked in"
    assert sorted(LocalProvider(pool.providers["local"].config).list()) == sorted(
        n.external_id for n in nodes
    )


def test_max_servers_is_honoured(db: Database, pool_factory: PoolFactory) -> None:
    pool = pool_factory([_label("trusty", 5)], max_servers=2)
    _round(pool)
    _round(pool)
    assert list(_states(db).values()) == [NodeState.READY] * 2
    # A claimed node still counts against max-servers.
    NodeStore(db).claim("trusty", "w", "b")
    _round(pool)
    assert sorted(_states(db).values()) == [NodeState.READY, NodeState.USED]


def test_request_triggers_launch(db: Database, pool_factory: PoolFactory) -> None:
    pool = pool_factory([_label("trusty", 0)])
    nodes = NodeStore(db)
    _round(pool)
    assert _states(db) == {}
    request = nodes.request("trusty", "worker-a", "build-1")
    _round(pool)
    assert list(_states(db).values()) == [NodeState.READY]
    node = nodes.claim("trusty", "worker-a", "build-1")
    nodes.cancel_request(request)
    assert node is not None
    _round(pool)
    assert _states(db) == {node.name: NodeState.USED}


def test_release_passed_deletes_node(db: Database, pool_factory: PoolFactory) -> None:
    pool = pool_factory([_label("trusty", 1)])
    nodes = NodeStore(db)
    _round(pool)
    node = nodes.claim("trusty", "w", "b")
    assert node is not None
    path = Path(node.external_id)
    (path / "workspace").mkdir()
    (path / "workspace" / "ro").mkdir(mode=0o500)
    assert nodes.release(node.name, hold=False, hold_seconds=3600) == NodeState.DELETE
    _round(pool)
    assert not path.exists()
    states = _states(db)
    assert node.name not in states
    assert list(states.values()) == [NodeState.READY]  # a replacement


def test_release_failed_holds_then_expires(db: Database, pool_factory: PoolFactory) -> None:
    pool = pool_factory([_label("trusty", 0)])
    nodes = NodeStore(db)
    nodes.request("trusty", "w", "b")
    _round(pool)
    first = nodes.claim("trusty", "w", "b")
    nodes.request("trusty", "w", "c")
    _round(pool)
    second = nodes.claim("trusty", "w", "c")
    assert first is not None and second is not None

    before = time.time()
    assert nodes.release(first.name, hold=True, hold_seconds=3600) == NodeState.HOLD
    assert nodes.release(second.name, hold=True, hold_seconds=0) == NodeState.HOLD
    held = nodes.get(first.name)
    assert held is not None and held.hold_until is not None
    assert before + 3600 <= held.hold_until <= time.time() + 3600

    _round(pool)
    assert _states(db)[first.name] == NodeState.HOLD
    assert Path(first.external_id).exists()
    assert second.name not in _states(db)
    assert not Path(second.external_id).exists()


def test_failed_launch_removes_row_and_retries(
    tmp_path: Path, db: Database, pool_factory: PoolFactory
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken").write_text("a file where the image directory should be")
    pool = pool_factory([_label("broken", 1)])
    _round(pool)
    # The failed node is gone, or DELETE until the next round sees it gone.
    assert set(_states(db).values()) <= {NodeState.DELETE}
    (images / "broken").unlink()
    _round(pool)
    _round(pool)
    assert list(_states(db).values()) == [NodeState.READY]


def test_request_for_unconfigured_label_launches(db: Database, pool_factory: PoolFactory) -> None:
    pool = pool_factory([])
    nodes = NodeStore(db)
    request = nodes.request("devstack", "worker-a", "build-1")
    _round(pool)
    assert [n.label for n in nodes.list(state=NodeState.READY)] == ["devstack"]
    assert nodes.claim("devstack", "worker-a", "build-1") is not None
    nodes.cancel_request(request)
    _round(pool)
    assert [n.state for n in nodes.list()] == [NodeState.USED]


def test_label_providers_restrict_placement(db: Database, pool_factory: PoolFactory) -> None:
    pool = pool_factory([_label("trusty", 1, ["elsewhere"])])
    _round(pool)
    assert _states(db) == {}


def test_interrupted_launches_are_cleaned_at_start(
    tmp_path: Path, db: Database, pool_factory: PoolFactory
) -> None:
    NodeStore(db).add("trusty-local-stale", "trusty", "local")
    (tmp_path / "nodes" / "trusty-local-stale").mkdir(parents=True)
    pool = pool_factory([_label("trusty", 1)])
    pool.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = _states(db)
        if "trusty-local-stale" not in states and list(states.values()) == [NodeState.READY]:
            break
        pool.wake()
        threading.Event().wait(0.05)
    pool.stop()
    assert not (tmp_path / "nodes" / "trusty-local-stale").exists()
    assert list(_states(db).values()) == [NodeState.READY]


def test_local_node_names_are_safe() -> None:
    name = local_node_name("ubuntu/trusty 14.04", "../cloud")
    assert "/" not in name and " " not in name and ".." not in name
    assert name != local_node_name("ubuntu/trusty 14.04", "../cloud")
