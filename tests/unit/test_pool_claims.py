"""Claims under load: many threads (and, on PostgreSQL, several processes)
take nodes from one pool; no node is ever given to two claimers."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from typing import Any

import pytest

from gatekeeper.db.engine import Database
from gatekeeper.db.nodes import NodeStore
from gatekeeper.model.node import NodeState
from tests.fixtures.db import insert_ready_nodes as fill


def claim_all(db: Database, threads: int, claimer: str) -> list[tuple[str, str]]:
    """Claim until the pool is empty from ``threads`` threads: ``(node, build)`` pairs."""
    store = NodeStore(db)
    got: list[tuple[str, str]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(n: int) -> None:
        mine = []
        try:
            for i in range(1_000_000):
                build = f"{claimer}-{n}-{i}"
                node = store.claim("trusty", f"{claimer}-{n}", build)
                if node is None:
                    break
                assert node.state == NodeState.USED and node.build_uuid == build
                mine.append((node.name, build))
        except BaseException as exc:
            errors.append(exc)
        with lock:
            got.extend(mine)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert errors == []
    return got


def _check(db: Database, claims: list[tuple[str, str]], total: int) -> None:
    doubles = [name for name, n in Counter(name for name, _ in claims).items() if n > 1]
    assert doubles == []
    assert len(claims) == total
    rows = {n.name: n for n in NodeStore(db).list()}
    assert all(n.state == NodeState.USED for n in rows.values())
    # The database agrees with every claimer about who got what.
    assert {(name, rows[name].build_uuid) for name, _ in claims} == set(claims)


@pytest.mark.timeout(300)
def test_threads_never_share_a_node(db: Database) -> None:
    total = 1500 if db.is_sqlite else 2500
    fill(db, total)
    claims = claim_all(db, 16, "t")
    _check(db, claims, total)


def _process_claims(
    url: str,
    threads: int,
    tag: str,
    queue: multiprocessing.Queue,  # type: ignore[type-arg]
    ready: Any,
    go: Any,
) -> None:
    db = Database(url)
    try:
        # Claim only once every process is up: a process still importing
        # would otherwise find every node gone and prove nothing.
        ready.release()
        go.wait(120)
        queue.put(claim_all(db, threads, tag))
    finally:
        db.dispose()


@pytest.mark.postgresql
@pytest.mark.timeout(300)
def test_processes_and_threads_never_share_a_node(postgres_db: Database) -> None:
    total = 2000
    fill(postgres_db, total)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    url = postgres_db.engine.url.render_as_string(hide_password=False)
    ready, go = context.Semaphore(0), context.Event()
    processes = [
        context.Process(target=_process_claims, args=(url, 4, f"p{i}", queue, ready, go))
        for i in range(3)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        assert ready.acquire(timeout=120)
    go.set()
    claims: list[tuple[str, str]] = []
    for _ in processes:
        claims.extend(queue.get(timeout=240))
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    _check(postgres_db, claims, total)
    # Every process got some: they really did compete.
    assert len({build.split("-")[0] for _, build in claims}) == 3


def test_claims_take_the_oldest_ready_node_of_the_label(db: Database) -> None:
    fill(db, 3)
    fill(db, 2, label="xenial")
    store = NodeStore(db)
    first = store.claim("trusty", "w", "b1")
    second = store.claim("xenial", "w", "b2")
    assert first is not None and first.name == "trusty-rax-000000"
    assert second is not None and second.name == "xenial-rax-000000"
