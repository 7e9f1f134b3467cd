"""Build details for the web: the label a build ran on, its branch, and the
parameters it was given.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 13:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Builds recorded before this read as "" / "{}": nothing was kept then.
    with op.batch_alter_table("builds") as batch:
        batch.add_column(
            sa.Column("label", sa.String(length=255), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("branch", sa.String(length=255), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("parameters", sa.Text(), nullable=False, server_default="{}"))
    op.create_index("ix_builds_dispatched_at", "builds", ["dispatched_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_builds_dispatched_at", table_name="builds")
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("parameters")
        batch.drop_column("branch")
        batch.drop_column("label")
