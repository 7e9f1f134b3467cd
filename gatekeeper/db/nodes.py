"""The node table's operations: claim, release, and the pool's bookkeeping.

How a claim stays atomic across threads and processes is
:mod:`gatekeeper.db.claims`'s business; this module records everything else
a node goes through (see :mod:`gatekeeper.model.node` for its states).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gatekeeper.db.claims import claim_strategy
from gatekeeper.db.engine import Database, rowcount
from gatekeeper.db.tables import Node, NodeRequest
from gatekeeper.errors import PoolError
from gatekeeper.model.node import LaunchedNode, NodeState

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
        self._claim = claim_strategy(db)

    # -- workers ---------------------------------------------------------

    def claim(self, label: str, worker: str, build_uuid: str) -> Node | None:
        """Take the oldest READY node of ``label`` for a build; None if there is none."""
        node = self._claim(self.db, label, worker, build_uuid)
        if node is not None:
            log.info("node %s claimed by %s for build %s", node.name, worker, build_uuid)
        return node

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

    def release(
        self,
        node_name: str,
        hold: bool,
        hold_seconds: float,
        comment: str = "",
        hold_max: int | None = None,
    ) -> NodeState:
        """Give back a USED node: HOLD it for ``hold_seconds`` if ``hold``, else DELETE.

        With ``hold_max``, the node's label keeps at most that many held
        nodes: the oldest holds made for failed builds are released (DELETE)
        to make room, and if operators' holds alone fill the cap, this node
        is not held. What was released is logged.

        :raises PoolError: the node is not USED (or does not exist).
        """
        now = time.time()

        def work(session: Session) -> tuple[NodeState, list[str]]:
            node = session.scalars(
                select(Node).where(Node.name == node_name, Node.state == NodeState.USED)
            ).first()
            if node is None:
                return NodeState.USED, []
            released: list[str] = []
            keep = hold
            if keep and hold_max is not None:
                released = _make_room(session, node.label, hold_max - 1, now)
                keep = _held(session, node.label) < hold_max
            state = NodeState.HOLD if keep else NodeState.DELETE
            values: dict[str, object] = {
                "state": state,
                "state_time": now,
                "hold_until": now + hold_seconds if keep else None,
                "auto_hold": keep,
            }
            if comment:
                values["comment"] = comment
            if hold and not keep:
                why = f"not held: {node.label} is at hold-max {hold_max} with operators' holds"
                values["comment"] = f"{comment}; {why}" if comment else why
            done = rowcount(
                session.execute(
                    update(Node)
                    .where(Node.name == node_name, Node.state == NodeState.USED)
                    .values(**values)
                )
            )
            return (state if done else NodeState.USED), released

        # Tried again through a database restart: a node never given back
        # would stay USED, out of the pool, for good.
        state, released = self.db.transaction(work)
        if state == NodeState.USED:
            raise PoolError(f"cannot release node {node_name}: it is not in use")
        for name in released:
            log.info(
                "node %s hold released: hold-max %s reached, %s is a newer failure",
                name,
                hold_max,
                node_name,
            )
        if hold and state == NodeState.DELETE:
            log.info(
                "node %s not held: hold-max %s is taken by operators' holds", node_name, hold_max
            )
        log.info("node %s released: %s", node_name, state)
        return state

    def enforce_hold_max(self, hold_max: Callable[[str], int]) -> list[str]:
        """Release the oldest automatic holds of every label holding more
        than ``hold_max(label)`` (a lowered cap, or two releases that raced);
        return their names."""
        now = time.time()

        def work(session: Session) -> list[str]:
            labels = session.scalars(
                select(Node.label).where(Node.state == NodeState.HOLD).distinct()
            )
            released = []
            for label in sorted(labels):
                released += _make_room(session, label, hold_max(label), now)
            return released

        return self.db.transaction(work)

    def release_oldest_holds(self, provider: str, n: int, why: str) -> list[Node]:
        """Up to ``n`` of ``provider``'s automatic holds, oldest first, go to
        DELETE (to free capacity for waiting builds); return them."""
        now = time.time()
        with self.db.session() as session:
            oldest = list(
                session.scalars(
                    select(Node)
                    .where(
                        Node.provider == provider,
                        Node.state == NodeState.HOLD,
                        Node.auto_hold.is_(True),
                    )
                    .order_by(Node.state_time, Node.id)
                    .limit(max(0, n))
                )
            )
            released = []
            for node in oldest:
                if rowcount(
                    session.execute(
                        update(Node)
                        .where(Node.id == node.id, Node.state == NodeState.HOLD)
                        .values(state=NodeState.DELETE, state_time=now, comment=why)
                    )
                ):
                    session.expunge(node)
                    released.append(node)
        return released

    # -- the pool --------------------------------------------------------

    def add(
        self,
        name: str,
        label: str,
        provider: str,
        state: NodeState = NodeState.BUILDING,
    ) -> Node:
        """Insert a node row.

        :raises PoolError: a node of that name exists, or the state is unknown.
        """
        node = _new_row(name, label, provider, _check_state(state), time.time())
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
            _new_row(name, label, provider, NodeState.BUILDING, now)
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
                        region=launched.region,
                        availability_zone=launched.availability_zone,
                        image=image,
                    )
                )
            )
        if not done:
            raise PoolError(f"node {name} is no longer BUILDING")

    def set_state(self, name: str, state: NodeState, comment: str = "") -> None:
        """Move a node to ``state``. Going back to READY forgets the last claim.

        :raises PoolError: unknown state or no such node.
        """
        values: dict[str, object] = {"state": _check_state(state), "state_time": time.time()}
        if comment:
            values["comment"] = comment
        if state == NodeState.READY:
            values.update(claimed_by="", build_uuid="", hold_until=None, auto_hold=False)
        with self.db.session() as session:
            done = rowcount(session.execute(update(Node).where(Node.name == name).values(**values)))
        if not done:
            raise PoolError(f"no node {name}")

    def change_state(self, name: str, old: str, new: NodeState, comment: str = "") -> bool:
        """Move a node from ``old`` to ``new`` only if it is still in ``old``:
        whether it moved (someone may have claimed or changed it meanwhile)."""
        values: dict[str, object] = {"state": _check_state(new), "state_time": time.time()}
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
        """An operator holds any node that is not being deleted: for
        ``seconds``, or until released (None). The hold cap never releases
        it (it counts toward the cap, though).

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
                    .values(
                        state=NodeState.HOLD,
                        state_time=now,
                        hold_until=until,
                        comment=reason,
                        auto_hold=False,
                    )
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

    def census(self) -> dict[tuple[str, str, str], int]:
        """``(label, provider, state) -> number of nodes``: what ``pool
        status``, the web's pages and the metrics show."""
        with self.db.session() as session:
            rows = session.execute(
                select(Node.label, Node.provider, Node.state, func.count()).group_by(
                    Node.label, Node.provider, Node.state
                )
            )
            return {(label, provider, state): int(n) for label, provider, state, n in rows}

    def provider_usage(self, provider: str, deleting: bool = False) -> int:
        """Nodes that count against ``provider``'s max-servers; with
        ``deleting``, also those waiting for their delete to be sent."""
        states = (*OCCUPYING, NodeState.DELETE) if deleting else OCCUPYING
        with self.db.session() as session:
            query = select(func.count()).where(Node.provider == provider, Node.state.in_(states))
            return int(session.scalar(query) or 0)


def _held(session: Session, label: str) -> int:
    query = select(func.count()).where(Node.label == label, Node.state == NodeState.HOLD)
    return int(session.scalar(query) or 0)


def _make_room(session: Session, label: str, keep: int, now: float) -> list[str]:
    """Release ``label``'s oldest automatic holds until at most ``keep`` nodes
    of it are held (or none automatic is left); return their names.

    Oldest by when the hold began: the newest failure is the one its
    developer is most likely still looking at.
    """
    excess = _held(session, label) - max(0, keep)
    if excess <= 0:
        return []
    oldest = session.scalars(
        select(Node.name)
        .where(Node.label == label, Node.state == NodeState.HOLD, Node.auto_hold.is_(True))
        .order_by(Node.state_time, Node.id)
        .limit(excess)
    )
    released = []
    for name in list(oldest):
        if rowcount(
            session.execute(
                update(Node)
                .where(Node.name == name, Node.state == NodeState.HOLD)
                .values(
                    state=NodeState.DELETE,
                    state_time=now,
                    comment=f"hold released: {label} reached hold-max",
                )
            )
        ):
            released.append(name)
    return released


def _check_state(state: str) -> NodeState:
    """:raises PoolError: ``state`` is not a node state (a caller outside mypy's sight)."""
    try:
        return NodeState(state)
    except ValueError:
        raise PoolError(f"unknown node state {state!r}") from None


def _new_row(name: str, label: str, provider: str, state: NodeState, now: float) -> Node:
    """A node row not yet launched, reached or claimed."""
    return Node(
        name=name,
        label=label,
        provider=provider,
        state=state,
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
        auto_hold=False,
    )
