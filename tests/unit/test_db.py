"""The database layer against real SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from gatekeeper.db.builds import BuildStore
from gatekeeper.db.engine import Database, latest_revision
from gatekeeper.db.nodes import NodeStore
from gatekeeper.db.tables import Base
from gatekeeper.model.node import LaunchedNode, NodeState
from tests.fixtures.db import postgres_server_url, scratch_postgres_database


def test_migrated_schema_matches_tables(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrate_twice_is_harmless(db: Database) -> None:
    db.migrate()
    assert {"nodes", "node_requests", "builds"} <= set(inspect(db.engine).get_table_names())


def _migrate_concurrently(url: str) -> None:
    errors: list[BaseException] = []

    def migrate() -> None:
        database = Database(url)
        try:
            database.migrate()
        except BaseException as exc:
            errors.append(exc)
        finally:
            database.dispose()

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    database = Database(url)
    with database.engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    database.dispose()
    assert versions == [(latest_revision(),)]


def test_concurrent_migrations_sqlite(tmp_path: Path) -> None:
    _migrate_concurrently(f"sqlite:///{tmp_path / 'a' / 'b' / 'gk.db'}")


@pytest.mark.postgresql
def test_concurrent_migrations_postgresql() -> None:
    with scratch_postgres_database(postgres_server_url()) as url:
        _migrate_concurrently(url)


def test_sqlite_is_wal_and_creates_parent(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'gk.db'}")
    assert database.is_sqlite
    with database.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    assert (tmp_path / "deep" / "dir").is_dir()
    database.dispose()


def test_session_rolls_back_on_error(db: Database) -> None:
    nodes = NodeStore(db)
    with pytest.raises(RuntimeError), db.session() as session:
        session.execute(
            text(
                "INSERT INTO node_requests (label, requestor, build_uuid, created_at)"
                " VALUES ('x', 'w', 'b', 0)"
            )
        )
        raise RuntimeError("boom")
    assert nodes.pending_requests() == {}


def test_build_lifecycle(db: Database) -> None:
    builds = BuildStore(db)
    builds.dispatched("u1", "tempest", "openstack/nova", 1234, 2, "gate", 100.0)
    builds.started("u1", "node-1", "local", "worker-a", 110.0, "http://logs/u1")
    builds.completed("u1", "SUCCESS", 150.0)
    builds.dispatched("u2", "pep8", "openstack/nova", 1234, 2, "check", 90.0)
    builds.dispatched("u3", "pep8", "openstack/nova", 99, 1, "check", 95.0)

    record = builds.get("u1")
    assert record is not None
    assert (record.job, record.pipeline, record.change, record.patchset) == (
        "tempest",
        "gate",
        1234,
        2,
    )
    assert (record.node, record.provider, record.worker) == ("node-1", "local", "worker-a")
    assert (record.start_time, record.end_time, record.result) == (110.0, 150.0, "SUCCESS")
    assert record.log_url == "http://logs/u1"
    assert [b.uuid for b in builds.for_change(1234)] == ["u2", "u1"]
    assert builds.get("missing") is None


def test_average_durations_are_the_last_ten_successes_per_job(db: Database) -> None:
    """The status page's estimates, every job in one query: the mean of each
    job's ten newest successful runs; failures and running builds do not count."""
    builds = BuildStore(db)
    for n in range(12):  # durations 10, 20, ... 120 s; the two oldest fall out
        uuid = f"t{n}"
        builds.dispatched(uuid, "tempest", "openstack/nova", n, 1, "gate", 1000.0 * n)
        builds.started(uuid, "node", "local", "w", 1000.0 * n, "")
        builds.completed(uuid, "SUCCESS", 1000.0 * n + 10 * (n + 1))
    builds.dispatched("f", "tempest", "openstack/nova", 99, 1, "gate", 20000.0)
    builds.started("f", "node", "local", "w", 20000.0, "")
    builds.completed("f", "FAILURE", 29000.0)
    builds.dispatched("r", "pep8", "openstack/nova", 98, 1, "gate", 20000.0)
    builds.started("r", "node", "local", "w", 20000.0, "")

    found = builds.average_durations(["tempest", "pep8", "tempest", "unknown"])
    assert found == {"tempest": pytest.approx(75.0), "pep8": None, "unknown": None}
    assert found["tempest"] == pytest.approx(builds.average_duration("tempest") or 0)
    assert builds.average_durations([]) == {}


def test_completed_without_dispatch_is_kept(db: Database) -> None:
    builds = BuildStore(db)
    builds.completed("orphan", "LOST", 10.0, node="n", provider="p")
    record = builds.get("orphan")
    assert record is not None and record.result == "LOST" and record.node == "n"


def _ready(nodes: NodeStore, name: str, label: str = "trusty") -> None:
    nodes.add(name, label, "local")
    nodes.set_ready(name, LaunchedNode(external_id=f"/x/{name}", address="localhost"))


def test_claim_takes_ready_node_once(db: Database) -> None:
    nodes = NodeStore(db)
    nodes.add("building", "trusty", "local")
    _ready(nodes, "n1")
    _ready(nodes, "other", label="precise")

    node = nodes.claim("trusty", "worker-a", "build-1")
    assert node is not None
    assert (node.name, node.state, node.claimed_by, node.build_uuid) == (
        "n1",
        NodeState.USED,
        "worker-a",
        "build-1",
    )
    assert node.external_id == "/x/n1"
    assert nodes.claim("trusty", "worker-b", "build-2") is None


@pytest.mark.timeout(60)
def test_claim_race_has_exactly_one_winner_per_node(db: Database) -> None:
    nodes = NodeStore(db)
    for i in range(3):
        _ready(nodes, f"n{i}")
    barrier = threading.Barrier(8)
    won: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claimer(i: int) -> None:
        try:
            barrier.wait()
            for attempt in range(3):
                node = nodes.claim("trusty", f"worker-{i}", f"build-{i}-{attempt}")
                if node is not None:
                    with lock:
                        won.append(node.name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=50)
    assert errors == []
    assert sorted(won) == ["n0", "n1", "n2"]
    assert all(n.state == NodeState.USED for n in nodes.list())


def test_release_passed_and_failed(db: Database) -> None:
    nodes = NodeStore(db)
    _ready(nodes, "a")
    _ready(nodes, "b")
    nodes.claim("trusty", "w", "b1")
    nodes.claim("trusty", "w", "b2")
    assert nodes.release("a", hold=False, hold_seconds=60) == NodeState.DELETE
    assert nodes.release("b", hold=True, hold_seconds=60, comment="tempest failed") == (
        NodeState.HOLD
    )
    held = nodes.get("b")
    assert held is not None and held.hold_until is not None and held.comment == "tempest failed"
    assert nodes.expire_holds(now=held.hold_until - 1) == []
    assert nodes.expire_holds(now=held.hold_until) == ["b"]
    assert nodes.counts() == {("trusty", NodeState.DELETE): 2}


def test_release_of_unused_node_fails(db: Database) -> None:
    from gatekeeper.errors import PoolError

    nodes = NodeStore(db)
    _ready(nodes, "a")
    with pytest.raises(PoolError):
        nodes.release("a", hold=False, hold_seconds=0)
    with pytest.raises(PoolError):
        nodes.release("nope", hold=False, hold_seconds=0)


def test_requests_and_listing(db: Database) -> None:
    nodes = NodeStore(db)
    r1 = nodes.request("trusty", "w1", "b1")
    nodes.request("trusty", "w2", "b2")
    nodes.request("precise", "w3", "b3")
    assert nodes.pending_requests() == {"trusty": 2, "precise": 1}
    nodes.cancel_request(r1)
    nodes.cancel_request(r1)
    assert nodes.pending_requests() == {"trusty": 1, "precise": 1}

    _ready(nodes, "a")
    nodes.add("s1", "precise", "static")
    assert [n.name for n in nodes.list(label="trusty")] == ["a"]
    assert [n.name for n in nodes.list(provider="static")] == ["s1"]
    assert [n.name for n in nodes.list(state=NodeState.BUILDING)] == ["s1"]
    assert nodes.provider_usage("local") == 1
    nodes.set_state("s1", NodeState.DELETE, comment="gone")
    assert nodes.provider_usage("static") == 0
    nodes.remove("s1")
    nodes.remove("s1")
    assert nodes.get("s1") is None
