"""Why builds fail: where each build ran (region or availability zone, the
pool image and its age) and the known failures recognised in its logs.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 15:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # What the cloud reported for the node at boot; "" where it reports nothing
    # (static and local nodes, or nodes booted before this).
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(
            sa.Column("region", sa.String(length=255), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("availability_zone", sa.String(length=255), nullable=False, server_default="")
        )
    # Copied from the node when the build starts, so the history keeps them
    # after the node is gone. Builds recorded before this read as "" / NULL.
    with op.batch_alter_table("builds") as batch:
        batch.add_column(
            sa.Column("region", sa.String(length=255), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("availability_zone", sa.String(length=255), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("image", sa.String(length=255), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("image_built_at", sa.Float(), nullable=True))
    op.create_table(
        "failure_matches",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("build_uuid", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=255), nullable=False),
        sa.Column("file", sa.Text(), nullable=False, server_default=""),
        sa.Column("line_number", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("line", sa.Text(), nullable=False, server_default=""),
        sa.Column("matched_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_failure_matches_build_uuid", "failure_matches", ["build_uuid"])
    op.create_index("ix_failure_matches_signature", "failure_matches", ["signature", "matched_at"])


def downgrade() -> None:
    op.drop_index("ix_failure_matches_signature", table_name="failure_matches")
    op.drop_index("ix_failure_matches_build_uuid", table_name="failure_matches")
    op.drop_table("failure_matches")
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("image_built_at")
        batch.drop_column("image")
        batch.drop_column("availability_zone")
        batch.drop_column("region")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("availability_zone")
        batch.drop_column("region")
