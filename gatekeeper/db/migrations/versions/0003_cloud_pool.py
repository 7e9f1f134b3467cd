"""Cloud pool: images, and the image and host keys of each node.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(
            sa.Column("image", sa.String(length=255), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("host_keys", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=255), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_time", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index("ix_images_provider_label", "images", ["provider", "label"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_images_provider_label", table_name="images")
    op.drop_table("images")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("host_keys")
        batch.drop_column("image")
