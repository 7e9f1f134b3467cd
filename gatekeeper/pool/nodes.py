"""The node table's operations: claim, release, and the pool's bookkeeping.

A claim is atomic across threads and processes: exactly one caller gets a
READY node. PostgreSQL locks the row with ``SELECT ... FOR UPDATE SKIP
LOCKED`` so concurrent claimers pass over each other's rows; SQLite has no
row locks, so a claim is a compare-and-set ``UPDATE ... WHERE state='READY'``
whose row count says whether this caller won, and a loser tries the next
node.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import CursorResult

from gatekeeper.db.engine import Database
from gatekeeper.db.tables import Node, NodeRequest, NodeState
from gatekeeper.errors import PoolError

if TYPE_CHECKING:
    from gatekeeper.pool.providers.base import LaunchedNode

log = logging.getLogger(__name__)

# States that occupy a provider's capacity (max-servers).
OCCUPYING = (NodeState.BUILDING, NodeState.READY, NodeState.USED, NodeState.HOLD)


class NodeStore:
    """Node rows and node requests. Thread-safe: used by the pool thread,
    its launcher threads and every worker thread; each method is its own
    transaction and returns detached rows.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- workers ---------------------------------------------------------

    def claim(self, label: str, worker: str, build_uuid: str) -> Node | None:
        """Take a READY node of ``label`` for a build; None if there is none."""
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
                    won = _rowcount(
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
        with self.db.session() as session:
            done = _rowcount(
                session.execute(
                    update(Node)
                    .where(Node.name == node_name, Node.state == NodeState.USED)
                    .values(**values)
                )
            )
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

    def set_ready(self, name: str, launched: LaunchedNode) -> None:
        """Record where a launched node is and make it claimable.

        :raises PoolError: the node is gone or no longer BUILDING.
        """
        with self.db.session() as session:
            done = _rowcount(
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
            done = _rowcount(
                session.execute(update(Node).where(Node.name == name).values(**values))
            )
        if not done:
            raise PoolError(f"no node {name}")

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
                if _rowcount(
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

    def provider_usage(self, provider: str) -> int:
        """Nodes that count against ``provider``'s max-servers."""
        with self.db.session() as session:
            query = select(func.count()).where(Node.provider == provider, Node.state.in_(OCCUPYING))
            return int(session.scalar(query) or 0)


def _mark_used(node: Node, worker: str, build_uuid: str) -> None:
    node.state = NodeState.USED
    node.state_time = time.time()
    node.claimed_by = worker
    node.build_uuid = build_uuid


def _check_state(state: str) -> None:
    if state not in NodeState.ALL:
        raise PoolError(f"unknown node state {state!r}")


def _rowcount(result: object) -> int:
    # Session.execute() is typed as returning Result; DML gives a CursorResult.
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
