"""The node table's operations: claim, release, and the pool's bookkeeping.

A claim is atomic across threads and processes: exactly one caller gets a
READY node. It is one statement, ``UPDATE ... WHERE id = (SELECT ... LIMIT
1) RETURNING ...``: on PostgreSQL the inner select is ``FOR UPDATE SKIP
LOCKED``, so concurrent claimers pass over each other's rows; SQLite runs
the statement under its single write lock. Where RETURNING is missing
(MySQL, SQLite before 3.35), a ``SELECT ... FOR UPDATE SKIP LOCKED`` then
an update, or on old SQLite a compare-and-set ``UPDATE ... WHERE
state='READY'`` whose row count says whether this caller won.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, delete, event, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from gatekeeper.db.engine import Database, rowcount
from gatekeeper.db.tables import Node, NodeRequest, NodeState
from gatekeeper.errors import PoolError

if TYPE_CHECKING:
    from gatekeeper.pool.providers.base import LaunchedNode

log = logging.getLogger(__name__)

# States that occupy a provider's capacity (max-servers): a server whose
# delete was sent but not yet seen through still counts. (DELETE rows are
# deleted at the start of every pool round, before any launch.)
OCCUPYING = (
    NodeState.BUILDING,
    NodeState.READY,
    NodeState.USED,
    NodeState.HOLD,
    NodeState.DELETING,
)


class NodeStore:
    """Node rows and node requests. Thread-safe: used by the pool thread,
    its launcher threads and every worker thread; each method is its own
    transaction and returns detached rows.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- workers ---------------------------------------------------------

    def claim(self, label: str, worker: str, build_uuid: str) -> Node | None:
        """Take the oldest READY node of ``label`` for a build; None if there is none."""
        dialect = self.db.engine.dialect
        if dialect.name == "postgresql" and dialect.driver in ("psycopg2", "psycopg"):
            return self._claim_postgresql(label, worker, build_uuid)
        if dialect.name == "postgresql" or (self.db.is_sqlite and _sqlite_returning(dialect)):
            return self._claim_returning(label, worker, build_uuid)
        if self.db.is_sqlite:
            return self._claim_compare_and_set(label, worker, build_uuid)
        return self._claim_skip_locked(label, worker, build_uuid)

    def _claim_skip_locked(self, label: str, worker: str, build_uuid: str) -> Node | None:
        with self.db.session() as session:
            query = (
                select(Node)
                .where(Node.label == label, Node.state == NodeState.READY)
                .order_by(Node.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            node = session.scalars(query).first()
            if node is None:
                return None
            _mark_used(node, worker, build_uuid)
            session.flush()
            session.expunge(node)
        log.info("node %s claimed by %s for build %s", node.name, worker, build_uuid)
        return node

    def _claim_postgresql(self, label: str, worker: str, build_uuid: str) -> Node | None:
        # The hot path of every worker: one precompiled statement on the
        # claim engine (see _claim_engine), retried once if the server
        # dropped the connection it used.
        params = {
            "used": NodeState.USED,
            "ready": NodeState.READY,
            "now": time.time(),
            "worker": worker,
            "build": build_uuid,
            "label": label,
        }
        for attempt in (1, 2):
            try:
                with _claim_engine(self.db).begin() as conn:
                    row = conn.exec_driver_sql(_PG_CLAIM, params).first()
                break
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
                log.info("claim: the database dropped a connection; trying again")
        if row is None:
            return None
        node = Node(**row._mapping)
        log.info("node %s claimed by %s for build %s", node.name, worker, build_uuid)
        return node

    def _claim_returning(self, label: str, worker: str, build_uuid: str) -> Node | None:
        # One statement, one round trip: pick the oldest READY row, mark it,
        # return it. PostgreSQL locks the row it picks and skips rows others
        # have locked; SQLite runs the whole statement under its one write
        # lock, so the row it picks cannot be taken meanwhile.
        oldest = (
            select(Node.id)
            .where(Node.label == label, Node.state == NodeState.READY)
            .order_by(Node.id)
            .limit(1)
        )
        if not self.db.is_sqlite:
            oldest = oldest.with_for_update(skip_locked=True)
        with self.db.session() as session:
            node = session.scalars(
                update(Node)
                .where(Node.id == oldest.scalar_subquery(), Node.state == NodeState.READY)
                .values(
                    state=NodeState.USED,
                    state_time=time.time(),
                    claimed_by=worker,
                    build_uuid=build_uuid,
                )
                .returning(Node)
                .execution_options(synchronize_session=False)
            ).first()
            if node is None:
                return None
            session.expunge(node)
        log.info("node %s claimed by %s for build %s", node.name, worker, build_uuid)
        return node

    def _claim_compare_and_set(self, label: str, worker: str, build_uuid: str) -> Node | None:
        while True:
            with self.db.session() as session:
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
                with self.db.session() as session:
                    now = time.time()
                    won = rowcount(
                        session.execute(
                            update(Node)
                            .where(Node.id == node_id, Node.state == NodeState.READY)
                            .values(
                                state=NodeState.USED,
                                state_time=now,
                                claimed_by=worker,
                                build_uuid=build_uuid,
                            )
                        )
                    )
                    if not won:
                        continue
                    node = session.get(Node, node_id)
                    assert node is not None  # we hold the write lock on it
                    session.expunge(node)
                log.info("node %s claimed by %s for build %s", node.name, worker, build_uuid)
                return node
            # Every candidate went to someone else; look again for new ones.

    def request(self, label: str, requestor: str, build_uuid: str) -> int:
        """Tell the pool a worker is waiting for a node of ``label``."""
        with self.db.session() as session:
            req = NodeRequest(
                label=label, requestor=requestor, build_uuid=build_uuid, created_at=time.time()
            )
            session.add(req)
            session.flush()
            return req.id

    def cancel_request(self, request_id: int) -> None:
        """Withdraw a request (the worker got a node or gave up). Idempotent."""
        with self.db.session() as session:
            session.execute(delete(NodeRequest).where(NodeRequest.id == request_id))

    def pending_requests(self) -> dict[str, int]:
        with self.db.session() as session:
            rows = session.execute(
                select(NodeRequest.label, func.count()).group_by(NodeRequest.label)
            )
            return {label: int(n) for label, n in rows}

    def discard_used(self, build_uuids: list[str], comment: str) -> int:
        """USED nodes of builds no one runs any more go to DELETE: what ran on
        them is unknown. Returns how many did."""
        if not build_uuids:
            return 0
        with self.db.session() as session:
            return rowcount(
                session.execute(
                    update(Node)
                    .where(Node.build_uuid.in_(build_uuids), Node.state == NodeState.USED)
                    .values(state=NodeState.DELETE, state_time=time.time(), comment=comment)
                )
            )

    def release(self, node_name: str, passed: bool, hold_seconds: float, comment: str = "") -> str:
        """Give back a USED node: DELETE if the build passed, else HOLD it.

        :raises PoolError: the node is not USED (or does not exist).
        """
        now = time.time()
        if passed:
            values: dict[str, object] = {"state": NodeState.DELETE, "hold_until": None}
        else:
            values = {"state": NodeState.HOLD, "hold_until": now + hold_seconds}
        values["state_time"] = now
        if comment:
            values["comment"] = comment

        def work(session: Session) -> int:
            return rowcount(
                session.execute(
                    update(Node)
                    .where(Node.name == node_name, Node.state == NodeState.USED)
                    .values(**values)
                )
            )

        # Tried again through a database restart: a node never given back
        # would stay USED, out of the pool, for good.
        done = self.db.transaction(work)
        if not done:
            raise PoolError(f"cannot release node {node_name}: it is not in use")
        state = str(values["state"])
        log.info("node %s released: %s", node_name, state)
        return state

    # -- the pool --------------------------------------------------------

    def add(
        self,
        name: str,
        label: str,
        provider: str,
        state: str = NodeState.BUILDING,
        external_id: str = "",
        address: str = "",
        port: int = 22,
        username: str = "",
        comment: str = "",
    ) -> Node:
        """Insert a node row.

        :raises PoolError: a node of that name exists, or the state is unknown.
        """
        _check_state(state)
        now = time.time()
        node = Node(
            name=name,
            label=label,
            provider=provider,
            state=state,
            state_time=now,
            created_at=now,
            hold_until=None,
            external_id=external_id,
            address=address,
            port=port,
            username=username,
            claimed_by="",
            build_uuid="",
            comment=comment,
        )
        with self.db.session() as session:
            if session.scalars(select(Node.id).where(Node.name == name)).first() is not None:
                raise PoolError(f"node {name} already exists")
            session.add(node)
            session.flush()
            session.expunge(node)
        return node

    def add_building(self, nodes: list[tuple[str, str, str]]) -> None:
        """Insert BUILDING rows for ``(name, label, provider)`` in one transaction
        (a round's launches, so they start together).

        :raises PoolError: a name is taken (nothing is inserted).
        """
        if not nodes:
            return
        now = time.time()
        rows = [
            Node(
                name=name,
                label=label,
                provider=provider,
                state=NodeState.BUILDING,
                state_time=now,
                created_at=now,
                hold_until=None,
                external_id="",
                address="",
                port=22,
                username="",
                claimed_by="",
                build_uuid="",
                comment="",
            )
            for name, label, provider in nodes
        ]
        try:
            with self.db.session() as session:
                session.add_all(rows)
        except IntegrityError as exc:
            raise PoolError(f"a node name is taken: {exc.orig}") from exc

    def set_ready(self, name: str, launched: LaunchedNode, image: str = "") -> None:
        """Record where a launched node is and make it claimable.

        :raises PoolError: the node is gone or no longer BUILDING.
        """
        with self.db.session() as session:
            done = rowcount(
                session.execute(
                    update(Node)
                    .where(Node.name == name, Node.state == NodeState.BUILDING)
                    .values(
                        state=NodeState.READY,
                        state_time=time.time(),
                        external_id=launched.external_id,
                        address=launched.address,
                        port=launched.port,
                        username=launched.username,
                        host_keys=launched.host_keys,
                        image=image,
                    )
                )
            )
        if not done:
            raise PoolError(f"node {name} is no longer BUILDING")

    def set_state(self, name: str, state: str, comment: str = "") -> None:
        """Move a node to ``state``. Going back to READY forgets the last claim.

        :raises PoolError: unknown state or no such node.
        """
        _check_state(state)
        values: dict[str, object] = {"state": state, "state_time": time.time()}
        if comment:
            values["comment"] = comment
        if state == NodeState.READY:
            values.update(claimed_by="", build_uuid="", hold_until=None)
        with self.db.session() as session:
            done = rowcount(session.execute(update(Node).where(Node.name == name).values(**values)))
        if not done:
            raise PoolError(f"no node {name}")

    def change_state(self, name: str, old: str, new: str, comment: str = "") -> bool:
        """Move a node from ``old`` to ``new`` only if it is still in ``old``:
        whether it moved (someone may have claimed or changed it meanwhile)."""
        _check_state(new)
        values: dict[str, object] = {"state": new, "state_time": time.time()}
        if comment:
            values["comment"] = comment
        with self.db.session() as session:
            return bool(
                rowcount(
                    session.execute(
                        update(Node).where(Node.name == name, Node.state == old).values(**values)
                    )
                )
            )

    def hold(self, name: str, seconds: float | None, reason: str) -> Node:
        """Hold any node that is not being deleted: for ``seconds``, or until
        released (None).

        :raises PoolError: no such node, or it is being deleted.
        """
        now = time.time()
        until = None if seconds is None else now + seconds
        with self.db.session() as session:
            done = rowcount(
                session.execute(
                    update(Node)
                    .where(
                        Node.name == name,
                        Node.state.in_((NodeState.READY, NodeState.USED, NodeState.HOLD)),
                    )
                    .values(state=NodeState.HOLD, state_time=now, hold_until=until, comment=reason)
                )
            )
        if not done:
            node = self.get(name)
            state = node.state if node is not None else "missing"
            raise PoolError(f"cannot hold node {name}: it is {state}")
        node = self.get(name)
        assert node is not None
        log.info("node %s held: %s", name, reason)
        return node

    def release_hold(self, name: str) -> None:
        """End a hold now: the node is deleted (it may have been changed).

        :raises PoolError: the node is not held.
        """
        if not self.change_state(name, NodeState.HOLD, NodeState.DELETE, "hold released"):
            raise PoolError(f"node {name} is not held")

    def expire_holds(self, now: float | None = None) -> list[str]:
        """Move HOLD nodes whose hold has passed to DELETE; return their names."""
        now = time.time() if now is None else now
        with self.db.session() as session:
            names = list(
                session.scalars(
                    select(Node.name).where(
                        Node.state == NodeState.HOLD,
                        Node.hold_until.is_not(None),
                        Node.hold_until <= now,
                    )
                )
            )
            expired = []
            for name in names:
                # Re-checked per row: someone may have changed the node meanwhile.
                if rowcount(
                    session.execute(
                        update(Node)
                        .where(Node.name == name, Node.state == NodeState.HOLD)
                        .values(state=NodeState.DELETE, state_time=now)
                    )
                ):
                    expired.append(name)
        return expired

    def remove(self, name: str) -> None:
        """Delete the row. Idempotent."""
        with self.db.session() as session:
            session.execute(delete(Node).where(Node.name == name))

    def find(self, ident: str) -> Node:
        """A node by its number or its name.

        :raises PoolError: no such node.
        """
        with self.db.session() as session:
            node = None
            if ident.isdigit():
                node = session.get(Node, int(ident))
            if node is None:
                node = session.scalars(select(Node).where(Node.name == ident)).first()
        if node is None:
            raise PoolError(f"no node {ident}")
        return node

    def get(self, name: str) -> Node | None:
        with self.db.session() as session:
            return session.scalars(select(Node).where(Node.name == name)).first()

    def list(
        self, label: str | None = None, provider: str | None = None, state: str | None = None
    ) -> list[Node]:
        query = select(Node).order_by(Node.id)
        if label is not None:
            query = query.where(Node.label == label)
        if provider is not None:
            query = query.where(Node.provider == provider)
        if state is not None:
            query = query.where(Node.state == state)
        with self.db.session() as session:
            return list(session.scalars(query))

    def counts(self) -> dict[tuple[str, str], int]:
        """``(label, state) -> number of nodes``."""
        with self.db.session() as session:
            rows = session.execute(
                select(Node.label, Node.state, func.count()).group_by(Node.label, Node.state)
            )
            return {(label, state): int(n) for label, state, n in rows}

    def provider_usage(self, provider: str, deleting: bool = False) -> int:
        """Nodes that count against ``provider``'s max-servers; with
        ``deleting``, also those waiting for their delete to be sent."""
        states = (*OCCUPYING, NodeState.DELETE) if deleting else OCCUPYING
        with self.db.session() as session:
            query = select(func.count()).where(Node.provider == provider, Node.state.in_(states))
            return int(session.scalar(query) or 0)


_PG_CLAIM = (
    "UPDATE nodes SET state = %(used)s, state_time = %(now)s, claimed_by = %(worker)s, "
    "build_uuid = %(build)s WHERE id = ("
    "SELECT id FROM nodes WHERE label = %(label)s AND state = %(ready)s "
    "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING "
    + ", ".join(c.name for c in Node.__table__.columns)
)
_claim_engines: weakref.WeakKeyDictionary[Database, Engine] = weakref.WeakKeyDictionary()
_claim_engines_lock = threading.Lock()


def _claim_engine(db: Database) -> Engine:
    """The engine claims on ``db`` use: one per Database, disposed with its
    engine. Claims are many, small and come from every worker thread, so
    this pool skips the shared engine's pre-ping round trip (a connection
    the server dropped shows as a failed statement, and the claim is
    tried once more) and never makes a claimer wait for a connection.
    """
    with _claim_engines_lock:
        engine = _claim_engines.get(db)
        if engine is None:
            # pool_size 0: no limit, as many connections as threads claim at once.
            engine = create_engine(db.engine.url, pool_size=0)
            _claim_engines[db] = engine
            event.listen(db.engine, "engine_disposed", lambda _e: _drop_claim_engine(db))
        return engine


def _drop_claim_engine(db: Database) -> None:
    with _claim_engines_lock:
        engine = _claim_engines.pop(db, None)
    if engine is not None:
        engine.dispose()


def _sqlite_returning(dialect: object) -> bool:
    # UPDATE ... RETURNING came with SQLite 3.35.
    return bool(getattr(dialect, "update_returning", False))


def _mark_used(node: Node, worker: str, build_uuid: str) -> None:
    node.state = NodeState.USED
    node.state_time = time.time()
    node.claimed_by = worker
    node.build_uuid = build_uuid


def _check_state(state: str) -> None:
    if state not in NodeState.ALL:
        raise PoolError(f"unknown node state {state!r}")
