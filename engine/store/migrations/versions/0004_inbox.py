"""The inbox at scale: who may decide each wait, and an index for its order.

``deciders`` and ``excluded`` hold a wait's assignees and exclusions (also kept in its
``data``) as text the "assigned to me" filter searches; ``ix_waits_inbox`` serves the inbox's
order, oldest first, one card per (workflow, thread, pc). Waits armed before this migration
have neither (nor a context): the inbox shows them without, and "assigned to me" leaves them
out, until their workflow's next checkpoint writes them; the engine checks who may decide
from the code and the state, whatever the row holds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("waits") as batch:
        batch.add_column(sa.Column("deciders", sa.Text(), nullable=True))
        batch.add_column(sa.Column("excluded", sa.Text(), nullable=True))
        batch.create_index(
            "ix_waits_inbox", ["created_at", "workflow_id", "thread_id", "pc"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("waits") as batch:
        batch.drop_index("ix_waits_inbox")
        batch.drop_column("excluded")
        batch.drop_column("deciders")
