"""Durable queues: queue items, build attempts and heartbeats, seen events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.add_column(
            sa.Column("item_uuid", sa.String(length=64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("heartbeat", sa.Float(), nullable=True))
        batch.create_index("ix_builds_item_uuid", ["item_uuid"], unique=False)
    op.create_table(
        "queue_items",
        sa.Column("uuid", sa.String(length=64), nullable=False),
        sa.Column("pipeline", sa.String(length=255), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("project", sa.String(length=255), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=False),
        sa.Column("change", sa.BigInteger(), nullable=False),
        sa.Column("patchset", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=False),
        sa.Column("old_rev", sa.String(length=64), nullable=False),
        sa.Column("new_rev", sa.String(length=64), nullable=False),
        sa.Column("enqueued_at", sa.Float(), nullable=False),
        sa.Column("event_received_at", sa.Float(), nullable=True),
        sa.Column("tested_with", sa.Text(), nullable=True),
        sa.Column("tested_since", sa.Float(), nullable=True),
        sa.Column("reporting_since", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("uuid"),
    )
    op.create_index("ix_queue_items_pipeline", "queue_items", ["pipeline"], unique=False)
    op.create_table(
        "scheduler_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "seen_events",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_seen_events_seen_at", "seen_events", ["seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_seen_events_seen_at", table_name="seen_events")
    op.drop_table("seen_events")
    op.drop_table("scheduler_state")
    op.drop_index("ix_queue_items_pipeline", table_name="queue_items")
    op.drop_table("queue_items")
    with op.batch_alter_table("builds") as batch:
        batch.drop_index("ix_builds_item_uuid")
        batch.drop_column("heartbeat")
        batch.drop_column("attempt")
        batch.drop_column("item_uuid")
