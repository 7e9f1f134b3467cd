"""Holds: whether a node was held for a failed build (the hold cap may
release it) or by an operator (never released by the cap).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Holds made before this column existed read as an operator's: the cap
    # never deletes a node it cannot tell was held automatically.
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(
            sa.Column("auto_hold", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("auto_hold")
