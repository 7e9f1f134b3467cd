"""The flaky-job report line reads one job's recent builds: an index on
(job, dispatched_at) makes that a range scan, not a walk of the window.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 15:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_builds_job_dispatched_at", "builds", ["job", "dispatched_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_builds_job_dispatched_at", table_name="builds")
