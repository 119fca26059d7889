"""Waits keep what their callback manager's ``setup`` returned (``WaitInfo.setup_data``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("waits") as batch:
        batch.add_column(sa.Column("setup_data", json, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("waits") as batch:
        batch.drop_column("setup_data")
