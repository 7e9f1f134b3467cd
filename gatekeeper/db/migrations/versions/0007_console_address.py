"""The live console: where the worker running a build serves its console.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Builds recorded before this have no live console: "" (the web shows
    # the archived console.txt).
    with op.batch_alter_table("builds") as batch:
        batch.add_column(
            sa.Column("console_address", sa.String(length=255), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("console_address")
