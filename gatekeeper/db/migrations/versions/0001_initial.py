"""The initial schema: nodes, node_requests, builds.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 06:17:38.871334
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "builds",
        sa.Column("uuid", sa.String(length=64), nullable=False),
        sa.Column("job", sa.String(length=255), nullable=False),
        sa.Column("project", sa.String(length=255), nullable=False),
        sa.Column("change", sa.BigInteger(), nullable=True),
        sa.Column("patchset", sa.Integer(), nullable=True),
        sa.Column("pipeline", sa.String(length=255), nullable=False),
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=255), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=False),
        sa.Column("dispatched_at", sa.Float(), nullable=False),
        sa.Column("start_time", sa.Float(), nullable=True),
        sa.Column("end_time", sa.Float(), nullable=True),
        sa.Column("result", sa.String(length=32), nullable=True),
        sa.Column("log_url", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("uuid"),
    )
    op.create_index("ix_builds_change", "builds", ["change", "patchset"], unique=False)
    op.create_table(
        "node_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("requestor", sa.String(length=255), nullable=False),
        sa.Column("build_uuid", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_node_requests_label"), "node_requests", ["label"], unique=False)
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_time", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("hold_until", sa.Float(), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("claimed_by", sa.String(length=255), nullable=False),
        sa.Column("build_uuid", sa.String(length=64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index("ix_nodes_label_state", "nodes", ["label", "state"], unique=False)


def downgrade() -> None:

    op.drop_index("ix_nodes_label_state", table_name="nodes")
    op.drop_table("nodes")
    op.drop_index(op.f("ix_node_requests_label"), table_name="node_requests")
    op.drop_table("node_requests")
    op.drop_index("ix_builds_change", table_name="builds")
    op.drop_table("builds")
