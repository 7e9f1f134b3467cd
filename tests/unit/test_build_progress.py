"""What workers and the dispatcher write in the builds table, and the
database's retry of a transaction whose connection was lost."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gatekeeper.db.builds import BuildStore
from gatekeeper.db.engine import Database
from gatekeeper.db.tables import BuildRecord

pytestmark = pytest.mark.timeout(60)


def _dispatched(store: BuildStore, uuid: str = "b1") -> None:
    store.dispatched(uuid, "job", "org/project", 1, 1, "check", 100.0)


def test_a_run_records_its_start_heartbeat_and_end(db: Database) -> None:
    store = BuildStore(db)
    _dispatched(store)
    assert store.worker_started("b1", "w1", "node-1", "local", 200.0, "http://logs/b1/")
    assert store.heartbeat("w1", ["b1", "unknown"], 205.0) == 1
    assert store.heartbeat("w2", ["b1"], 206.0) == 0  # not its build
    record = store.get("b1")
    assert record is not None
    assert (record.worker, record.node, record.start_time, record.heartbeat) == (
        "w1",
        "node-1",
        200.0,
        205.0,
    )
    assert store.worker_completed("b1", "w1", 200.0, "SUCCESS", 210.0, "http://logs/b1/")
    record = store.get("b1")
    assert record is not None
    assert (record.result, record.end_time, record.log_url) == ("SUCCESS", 210.0, "http://logs/b1/")
    assert store.heartbeat("w1", ["b1"], 211.0) == 0  # ended: no more heartbeats


def test_a_run_given_up_on_cannot_overwrite_its_successor(db: Database) -> None:
    store = BuildStore(db)
    _dispatched(store)
    assert store.worker_started("b1", "w1", "node-1", "local", 200.0, "u")
    # Its Gearman server went away: the dispatcher runs the build again.
    store.retried("b1", 2)
    record = store.get("b1")
    assert record is not None
    assert (record.attempt, record.worker, record.start_time, record.result) == (2, "", None, None)
    assert store.worker_started("b1", "w2", "node-2", "local", 300.0, "u")
    assert not store.worker_completed("b1", "w1", 200.0, "ABORTED", 301.0)
    assert store.heartbeat("w1", ["b1"], 302.0) == 0
    assert store.worker_completed("b1", "w2", 300.0, "SUCCESS", 310.0)
    record = store.get("b1")
    assert record is not None and (record.attempt, record.result, record.worker) == (
        2,
        "SUCCESS",
        "w2",
    )


def test_a_build_with_a_result_is_not_started_or_ended_again(db: Database) -> None:
    store = BuildStore(db)
    _dispatched(store)
    store.completed("b1", "CANCELED", 150.0)
    assert not store.worker_started("b1", "w1", "node-1", "local", 200.0, "u")
    assert not store.worker_completed("b1", "w1", 200.0, "ABORTED", 210.0)
    record = store.get("b1")
    assert record is not None and record.result == "CANCELED" and record.worker == ""
    # A build no scheduler dispatched is not recorded by a worker.
    assert not store.worker_started("nobody", "w1", "node-1", "local", 200.0, "u")
    assert store.get("nobody") is None


def test_retried_without_clear_only_counts(db: Database) -> None:
    store = BuildStore(db)
    _dispatched(store)
    assert store.worker_started("b1", "w2", "node-2", "local", 200.0, "u")
    store.retried("b1", 2, clear=False)  # gearmand handed it to w2 itself
    record = store.get("b1")
    assert record is not None and (record.attempt, record.worker) == (2, "w2")


@pytest.mark.postgresql
def test_transaction_is_run_again_when_its_connection_dies(postgres_db: Database) -> None:
    tries: list[int] = []

    def work(session: Session) -> int:
        tries.append(1)
        if len(tries) == 1:
            # The server ends this very connection, as a restart would.
            session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        session.add(BuildRecord(uuid="b1", job="j", pipeline="p", dispatched_at=1.0))
        return len(tries)

    assert postgres_db.transaction(work) == 2
    assert BuildStore(postgres_db).get("b1") is not None


def test_transaction_does_not_repeat_other_errors(db: Database) -> None:
    store = BuildStore(db)
    _dispatched(store)
    tries: list[int] = []

    def work(session: Session) -> None:
        tries.append(1)
        session.add(BuildRecord(uuid="b1", job="j", pipeline="p", dispatched_at=1.0))
        session.flush()

    with pytest.raises(IntegrityError):
        db.transaction(work)
    assert tries == [1]


def test_site_config_fault_settings() -> None:
    from gatekeeper.config.site import SiteConfig

    site = SiteConfig.model_validate(
        {
            "worker": {"job-timeout": 120, "stop-grace": 10, "heartbeat": 2},
            "gearman": {"registration-grace": 1.5},
        }
    )
    assert (site.worker.job_timeout, site.worker.stop_grace, site.worker.heartbeat) == (120, 10, 2)
    assert site.gearman.registration_grace == 1.5
    defaults = SiteConfig()
    assert (defaults.worker.job_timeout, defaults.worker.stop_grace) == (3600, 60)
