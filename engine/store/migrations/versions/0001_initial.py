"""Initial schema: workflows, waits, history.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported, so this revision never changes with the models.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("state", JSON, nullable=False),
        sa.Column("threads", JSON, nullable=False),
        sa.Column("pc", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("next_run_at", TIME, nullable=True),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_until", TIME, nullable=True),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_workflows_status_created_at", "workflows", ["status", "created_at"])
    op.create_index("ix_workflows_type_created_at", "workflows", ["type", "created_at"])
    op.create_index("ix_workflows_created_at", "workflows", ["created_at"])
    op.create_index("ix_workflows_status_next_run_at", "workflows", ["status", "next_run_at"])

    op.create_table(
        "waits",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("workflow_id", sa.String(), nullable=False),
        sa.Column("thread_id", sa.String(), nullable=False),
        sa.Column("wait", sa.String(), nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("pc", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("due_at", TIME, nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("retry_at", TIME, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("handled", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["workflow_id"], ["workflows.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_waits_workflow_id", "waits", ["workflow_id"])
    op.create_index("ix_waits_status_created_at", "waits", ["status", "created_at"])
    op.create_index("ix_waits_type", "waits", ["type"])
    op.create_index("ix_waits_due_at", "waits", ["due_at"])
    op.create_index("ix_waits_retry_at", "waits", ["retry_at"])

    op.create_table(
        "history",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("thread", sa.String(), nullable=True),
        sa.Column("statement", sa.String(), nullable=True),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("pc", sa.Integer(), nullable=False),
        sa.Column("detail", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_history_workflow_id_id", "history", ["workflow_id", "id"])


def downgrade() -> None:
    op.drop_table("history")
    op.drop_table("waits")
    op.drop_table("workflows")
