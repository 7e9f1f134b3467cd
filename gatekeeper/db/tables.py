"""The tables. Every change to them goes through an alembic migration.

A node's and an image's ``state`` hold a :class:`NodeState` or
:class:`ImageState` (see :mod:`gatekeeper.model.node` for the node life cycle).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Node(Base):
    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    label: Mapped[str] = mapped_column(String(255))
    provider: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    state_time: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)
    hold_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    external_id: Mapped[str] = mapped_column(String(255), default="")
    address: Mapped[str] = mapped_column(String(255), default="")
    port: Mapped[int] = mapped_column(Integer, default=22)
    username: Mapped[str] = mapped_column(String(255), default="")
    # Who holds it: the worker and build that claimed it.
    claimed_by: Mapped[str] = mapped_column(String(255), default="")
    build_uuid: Mapped[str] = mapped_column(String(64), default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    # HOLD because its build failed (the hold cap may release it), not
    # because an operator held it (never released by the cap).
    auto_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    # The pool image it was booted from ("" for a provider's base image).
    image: Mapped[str] = mapped_column(String(255), default="")
    # The node's SSH host keys as seen at boot (known_hosts lines).
    host_keys: Mapped[str] = mapped_column(Text, default="")
    # Where the cloud says it runs ("" where the provider reports nothing).
    region: Mapped[str] = mapped_column(String(255), default="")
    availability_zone: Mapped[str] = mapped_column(String(255), default="")

    __table_args__ = (Index("ix_nodes_label_state", "label", "state"),)

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.provider} {self.label} {self.state}>"


class Image(Base):
    """A pool image of one label on one provider (a snapshot, or a directory
    for ``local``): the newest READY one is current, the one before it is kept."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    provider: Mapped[str] = mapped_column(String(255))
    label: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    state_time: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)
    external_id: Mapped[str] = mapped_column(String(255), default="")
    comment: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_images_provider_label", "provider", "label"),)

    def __repr__(self) -> str:
        return f"<Image {self.name} {self.provider} {self.label} {self.state}>"


class NodeRequest(Base):
    """A worker waiting for a node of a label: the pool launches for these."""

    __tablename__ = "node_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    label: Mapped[str] = mapped_column(String(255), index=True)
    requestor: Mapped[str] = mapped_column(String(255))
    build_uuid: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[float] = mapped_column(Float)


class BuildRecord(Base):
    """Every build ever dispatched, with where it ran and how it ended."""

    __tablename__ = "builds"

    uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    job: Mapped[str] = mapped_column(String(255))
    project: Mapped[str] = mapped_column(String(255), default="")
    change: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    patchset: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pipeline: Mapped[str] = mapped_column(String(255))
    node: Mapped[str] = mapped_column(String(255), default="")
    provider: Mapped[str] = mapped_column(String(255), default="")
    worker: Mapped[str] = mapped_column(String(255), default="")
    dispatched_at: Mapped[float] = mapped_column(Float)
    start_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    result: Mapped[str | None] = mapped_column(String(32), nullable=True)
    log_url: Mapped[str] = mapped_column(Text, default="")
    # The queue item it was built for; restored queues find their builds here.
    item_uuid: Mapped[str] = mapped_column(String(64), default="", index=True)
    # 1 for the first run; a build lost with its worker runs again as attempt 2...
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # Refreshed by the worker while the build runs: a restarted scheduler
    # tells a build still running (re-attach) from one whose worker died.
    heartbeat: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Who the build was handed to, from its certificate (``worker:<name>``),
    # recorded when it starts; only that worker's result counts.
    worker_identity: Mapped[str] = mapped_column(String(255), default="")
    # What the build asked for (the job's node label), the branch of its
    # change, and the parameters it was given (JSON of ZUUL_* and LOG_PATH),
    # recorded when it is dispatched; the web shows and filters by them.
    label: Mapped[str] = mapped_column(String(255), default="")
    branch: Mapped[str] = mapped_column(String(255), default="")
    parameters: Mapped[str] = mapped_column(Text, default="{}")
    # Where the worker running it serves its live console (host:port),
    # recorded when it starts; the web dials only addresses found here.
    console_address: Mapped[str] = mapped_column(String(255), default="")
    # Where it ran, copied from its node when it starts (the node row goes,
    # the history stays): the cloud's region and availability zone, and the
    # pool image the node was booted from with when that image was built.
    region: Mapped[str] = mapped_column(String(255), default="")
    availability_zone: Mapped[str] = mapped_column(String(255), default="")
    image: Mapped[str] = mapped_column(String(255), default="")
    image_built_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (
        Index("ix_builds_change", "change", "patchset"),
        # The build history lists newest first.
        Index("ix_builds_dispatched_at", "dispatched_at"),
        # One job's recent builds (the flaky line of a failure report).
        Index("ix_builds_job_dispatched_at", "job", "dispatched_at"),
    )


class AuditRecord(Base):
    """One thing someone did, or tried to do, to the site: an operator's
    request, or a build result refused because it did not come from the
    worker the build was handed to. Every string in it came from outside:
    escape it before it reaches a terminal or a page."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    # Who: a token's user, or a certificate's identity (``worker:host3``).
    actor: Mapped[str] = mapped_column(String(255))
    # admin, operator, worker, ... or "" when nothing vouched for the actor.
    role: Mapped[str] = mapped_column(String(32), default="")
    # What: enqueue, dequeue, promote, status, build-result, ...
    action: Mapped[str] = mapped_column(String(64))
    # On what: the request's arguments or the build's uuid, as text.
    target: Mapped[str] = mapped_column(Text, default="")
    # ok, refused (not allowed, or not believed), error (allowed but failed).
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_audit_log_at", "at"),)


class FailureMatch(Base):
    """A known failure (a signature of the site's ``failures/``) found in a
    failed build's logs: which file, which line. The line came from the
    build: escape it before it reaches a terminal or a page."""

    __tablename__ = "failure_matches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    build_uuid: Mapped[str] = mapped_column(String(64), index=True)
    signature: Mapped[str] = mapped_column(String(255))
    # The file's path under the build's log directory (console.txt, logs/...).
    file: Mapped[str] = mapped_column(Text, default="")
    line_number: Mapped[int] = mapped_column(Integer, default=0)
    line: Mapped[str] = mapped_column(Text, default="")
    matched_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_failure_matches_signature", "signature", "matched_at"),)


class QueueItemRecord(Base):
    """A change (or ref update) queued in a pipeline, kept so a restarted
    scheduler restores every queue in order. The row goes when the item
    leaves its pipeline; the builds table keeps the history.
    """

    __tablename__ = "queue_items"

    uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(255), index=True)
    # Order within the pipeline: rewritten on promote, ascending.
    position: Mapped[int] = mapped_column(BigInteger)
    project: Mapped[str] = mapped_column(String(255))
    branch: Mapped[str] = mapped_column(String(255), default="")
    change: Mapped[int] = mapped_column(BigInteger, default=0)
    patchset: Mapped[int] = mapped_column(Integer, default=0)
    ref: Mapped[str] = mapped_column(String(255), default="")
    old_rev: Mapped[str] = mapped_column(String(64), default="")
    new_rev: Mapped[str] = mapped_column(String(64), default="")
    enqueued_at: Mapped[float] = mapped_column(Float)
    event_received_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # JSON list of the changes ahead its builds were tested with; null until known.
    tested_with: Mapped[str | None] = mapped_column(Text, nullable=True)
    # When that changed last: builds dispatched before it tested another state
    # (a reset forgot them) and do not count on restore.
    tested_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Set just before the report is sent: a scheduler restarted after that
    # looks at Gerrit for the report instead of repeating it blindly.
    reporting_since: Mapped[float | None] = mapped_column(Float, nullable=True)


class SchedulerState(Base):
    """Small named values the scheduler keeps across restarts
    (e.g. the time of the last Gerrit event acted on)."""

    __tablename__ = "scheduler_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")


class SeenEvent(Base):
    """Gerrit events already acted on, so catch-up after a gap (which replays
    the recent past) acts on each once. Pruned once older than the catch-up
    window."""

    __tablename__ = "seen_events"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    seen_at: Mapped[float] = mapped_column(Float, index=True)
