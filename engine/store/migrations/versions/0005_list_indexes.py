"""The workflow listing pages by keyset and filters by created and updated time.

Each listing index ends in ``id``, the tie-breaker of its order, so a page after a cursor
``(time, id)`` is one index range; ``updated_at`` is indexed for the updated-time filter
and order (one index only: every checkpoint moves ``updated_at``, so each index on it is
written at every step). ``(type, status)`` makes the per-type counts an index-only scan.
The three ``(…, created_at)`` indexes the new ones replace are dropped (each new one serves
their queries too).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEW = {
    "ix_workflows_status_created_at_id": ["status", "created_at", "id"],
    "ix_workflows_type_created_at_id": ["type", "created_at", "id"],
    "ix_workflows_created_at_id": ["created_at", "id"],
    "ix_workflows_updated_at_id": ["updated_at", "id"],
    "ix_workflows_type_status": ["type", "status"],
}
_OLD = {
    "ix_workflows_status_created_at": ["status", "created_at"],
    "ix_workflows_type_created_at": ["type", "created_at"],
    "ix_workflows_created_at": ["created_at"],
}


def upgrade() -> None:
    for name, columns in _NEW.items():
        op.create_index(name, "workflows", columns)
    for name in _OLD:
        op.drop_index(name, table_name="workflows")


def downgrade() -> None:
    for name, columns in _OLD.items():
        op.create_index(name, "workflows", columns)
    for name in _NEW:
        op.drop_index(name, table_name="workflows")
