"""Claiming a READY node: exactly one caller gets it, across threads and processes.

Each strategy marks the oldest READY node of a label USED for one build and
returns it (detached), or returns None when there is none; which one runs
depends on what the database can do (:func:`claim_strategy`):

- PostgreSQL: one statement, ``UPDATE ... WHERE id = (SELECT ... ORDER BY
  id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING ...``, so concurrent
  claimers pass over each other's rows instead of waiting on them. With
  psycopg it is sent precompiled on :attr:`Database.claim_engine`
  (:func:`postgresql`), else built by SQLAlchemy (:func:`returning`).
- SQLite: the same statement without the lock clause (:func:`returning`):
  SQLite runs it under its single write lock, so the row it picks cannot be
  taken meanwhile. Before SQLite 3.35 (no RETURNING), a compare-and-set
  ``UPDATE ... WHERE state='READY'`` whose row count says whether this
  caller won (:func:`compare_and_set`).
- Anything else (MySQL): ``SELECT ... FOR UPDATE SKIP LOCKED`` then an
  update in one transaction (:func:`skip_locked`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from gatekeeper.db.engine import Database, rowcount
from gatekeeper.db.tables import Node
from gatekeeper.model.node import NodeState

log = logging.getLogger(__name__)

#: ``(db, label, worker, build_uuid) -> the claimed node, or None``.
Claim = Callable[[Database, str, str, str], Node | None]


def claim_strategy(db: Database) -> Claim:
    """The claim ``db``'s dialect does best."""
    dialect = db.engine.dialect
    if db.is_sqlite:
        # UPDATE ... RETURNING came with SQLite 3.35.
        return returning if getattr(dialect, "update_returning", False) else compare_and_set
    if dialect.name == "postgresql":
        return postgresql if dialect.driver in ("psycopg2", "psycopg") else returning
    return skip_locked


def _claimed(worker: str, build_uuid: str) -> dict[str, object]:
    return {
        "state": NodeState.USED,
        "state_time": time.time(),
        "claimed_by": worker,
        "build_uuid": build_uuid,
    }


def postgresql(db: Database, label: str, worker: str, build_uuid: str) -> Node | None:
    # The hot path of every worker: one precompiled statement on the claim
    # engine, tried once more if the server dropped the connection it used
    # (that engine does not pre-ping).
    params = {
        "used": NodeState.USED.value,
        "ready": NodeState.READY.value,
        "now": time.time(),
        "worker": worker,
        "build": build_uuid,
        "label": label,
    }
    for attempt in (1, 2):
        try:
            with db.claim_engine.begin() as conn:
                row = conn.exec_driver_sql(_PG_CLAIM, params).first()
            break
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
            log.info("claim: the database dropped a connection; trying again")
    return None if row is None else Node(**row._mapping)


_PG_CLAIM = (
    "UPDATE nodes SET state = %(used)s, state_time = %(now)s, claimed_by = %(worker)s, "
    "build_uuid = %(build)s WHERE id = ("
    "SELECT id FROM nodes WHERE label = %(label)s AND state = %(ready)s "
    "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING "
    + ", ".join(c.name for c in Node.__table__.columns)
)


def returning(db: Database, label: str, worker: str, build_uuid: str) -> Node | None:
    # One statement, one round trip: pick the oldest READY row, mark it,
    # return it. PostgreSQL locks the row it picks and skips rows others
    # have locked; SQLite runs the whole statement under its one write lock.
    oldest = (
        select(Node.id)
        .where(Node.label == label, Node.state == NodeState.READY)
        .order_by(Node.id)
        .limit(1)
    )
    if not db.is_sqlite:
        oldest = oldest.with_for_update(skip_locked=True)
    with db.session() as session:
        node = session.scalars(
            update(Node)
            .where(Node.id == oldest.scalar_subquery(), Node.state == NodeState.READY)
            .values(**_claimed(worker, build_uuid))
            .returning(Node)
            .execution_options(synchronize_session=False)
        ).first()
        if node is not None:
            session.expunge(node)
    return node


def compare_and_set(db: Database, label: str, worker: str, build_uuid: str) -> Node | None:
    while True:
        with db.session() as session:
            candidates = list(
                session.scalars(
                    select(Node.id)
                    .where(Node.label == label, Node.state == NodeState.READY)
                    .order_by(Node.id)
                )
            )
        if not candidates:
            return None
        for node_id in candidates:
            with db.session() as session:
                won = rowcount(
                    session.execute(
                        update(Node)
                        .where(Node.id == node_id, Node.state == NodeState.READY)
                        .values(**_claimed(worker, build_uuid))
                    )
                )
                if not won:
                    continue
                node = session.get(Node, node_id)
                assert node is not None  # we hold the write lock on it
                session.expunge(node)
            return node
        # Every candidate went to someone else; look again for new ones.


def skip_locked(db: Database, label: str, worker: str, build_uuid: str) -> Node | None:
    with db.session() as session:
        node = session.scalars(
            select(Node)
            .where(Node.label == label, Node.state == NodeState.READY)
            .order_by(Node.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if node is None:
            return None
        for key, value in _claimed(worker, build_uuid).items():
            setattr(node, key, value)
        session.flush()
        session.expunge(node)
    return node
