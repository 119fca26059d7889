"""SQL table models of ``SQLModelStore``: rows, kept apart from the runtime records.

Five tables, on their own ``MetaData`` (never ``SQLModel.metadata``, so an application's
own SQLModel tables and gorch's never end up in each other's ``create_all`` or migrations):

- ``workflows``: one row per workflow; state and threads as JSON, the lease, the version.
- ``waits``: one row per pending event (the inbox across all workflows).
- ``history``: append-only; its autoincrement ``id`` is the entry's ``seq``.
- ``sign_in_failures`` and ``revoked_sessions``: the operator UI's sign-in lock-out and its
  ended sessions (``SignInLog``, migration 0006), kept here so that every UI process on the
  database sees them.

There is no separate timers table: a durable timer is a wait whose ``due_at`` is set, found
by the ``ix_waits_due_at`` index (``Store.due_waits``).

Datetimes are stored as UTC and always come back timezone-aware (``UTCDateTime``): SQLite
has no time zones and returns naive values. JSON columns are JSONB on PostgreSQL.
The schema is created and upgraded by the Alembic migrations in ``engine/store/migrations``;
a test checks that they produce exactly these tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, Table, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import registry
from sqlalchemy.types import DateTime, TypeDecorator, TypeEngine
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and returned timezone-aware (naive input is taken as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # Only PostgreSQL keeps the offset; elsewhere (SQLite) store the naive UTC value.
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONColumn: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")
"""JSON everywhere, JSONB on PostgreSQL."""

BigId: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit key; plain INTEGER on SQLite, where only that is an alias of the rowid."""


class GorchTable(SQLModel, registry=registry()):
    """Base of gorch's table models, on a registry (and ``MetaData``) of their own."""


metadata = GorchTable.metadata
"""The ``MetaData`` of gorch's tables (for Alembic and ``compare_metadata``)."""

VERSION_TABLE = "gorch_alembic_version"
"""Alembic's version table for gorch's schema, apart from an application's own migrations."""


class WorkflowRow(GorchTable, table=True):
    """A row of ``workflows``: one workflow, as ``WorkflowRecord`` stores it."""

    __tablename__ = "workflows"
    __table_args__ = (
        # (time, id): the listing's order and keyset cursor (migration 0005)
        Index("ix_workflows_status_created_at_id", "status", "created_at", "id"),
        Index("ix_workflows_type_created_at_id", "type", "created_at", "id"),
        Index("ix_workflows_created_at_id", "created_at", "id"),
        Index("ix_workflows_updated_at_id", "updated_at", "id"),
        Index("ix_workflows_type_status", "type", "status"),  # counts by type: index only
        Index("ix_workflows_status_next_run_at", "status", "next_run_at"),
    )

    id: str = Field(primary_key=True)
    type: str
    status: str
    state: dict[str, Any] = Field(sa_type=JSONColumn)
    threads: list[dict[str, Any]] = Field(sa_type=JSONColumn)
    pc: int
    version: int
    turn: int
    result: Any = Field(default=None, sa_type=JSONColumn, nullable=True)
    error: str | None = Field(default=None, sa_type=Text)
    next_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lease_owner: str | None = None
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    format: int
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    fingerprint: str | None = None


class WaitRow(GorchTable, table=True):
    """A row of ``waits``: one pending event of a waiting thread (``WaitInfo``).

    ``position`` keeps the order the engine gave the workflow's waits in, as ``MemoryStore``
    does, so ``load_waits`` returns them as they were checkpointed. ``setup_data`` is what
    the manager's ``setup`` returned (migration 0003). ``deciders`` and ``excluded`` are the
    wait's assignees and exclusions (kept in ``data``) encoded for the inbox's "assigned to
    me" filter (``engine.store.rows.deciders_column``); ``ix_waits_inbox`` serves its order,
    oldest first, one card per (workflow, thread, pc) (migration 0004).
    """

    __tablename__ = "waits"
    __table_args__ = (
        Index("ix_waits_status_created_at", "status", "created_at"),
        Index("ix_waits_type", "type"),
        Index("ix_waits_due_at", "due_at"),
        Index("ix_waits_retry_at", "retry_at"),
        Index("ix_waits_inbox", "created_at", "workflow_id", "thread_id", "pc"),
    )

    id: str = Field(primary_key=True)
    workflow_id: str = Field(foreign_key="workflows.id", ondelete="CASCADE", index=True)
    thread_id: str
    wait: str
    event: str
    type: str
    pc: int
    created_at: datetime = Field(sa_type=UTCDateTime)
    status: str
    due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    data: dict[str, Any] = Field(sa_type=JSONColumn)
    attempts: int
    retry_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    error: str | None = Field(default=None, sa_type=Text)
    handled: bool
    position: int
    setup_data: Any = Field(default=None, sa_type=JSONColumn, nullable=True)
    deciders: str | None = Field(default=None, sa_type=Text)
    excluded: str | None = Field(default=None, sa_type=Text)


class HistoryRow(GorchTable, table=True):
    """A row of ``history``: one ``HistoryEntry``; ``id`` is its ``seq``."""

    __tablename__ = "history"
    __table_args__ = (
        Index("ix_history_workflow_id_id", "workflow_id", "id"),
        {"sqlite_autoincrement": True},  # never reuse a seq, even after the newest row is gone
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    workflow_id: str
    at: datetime = Field(sa_type=UTCDateTime)
    kind: str
    thread: str | None = None
    statement: str | None = None
    actor: str | None = None
    pc: int
    detail: dict[str, Any] = Field(sa_type=JSONColumn)


class SignInFailureRow(GorchTable, table=True):
    """A row of ``sign_in_failures``: one wrong password given for a name (``SignInLog``)."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_name_at", "name", "at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    name: str
    at: datetime = Field(sa_type=UTCDateTime)


class RevokedSessionRow(GorchTable, table=True):
    """A row of ``revoked_sessions``: a signed UI session ended by signing out, kept until
    the session would have expired anyway (``SignInLog``)."""

    __tablename__ = "revoked_sessions"
    __table_args__ = (Index("ix_revoked_sessions_expires_at", "expires_at"),)

    id: str = Field(primary_key=True)
    expires_at: datetime = Field(sa_type=UTCDateTime)


def _table(model: type[GorchTable]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    if not isinstance(table, Table):  # pragma: no cover - SQLModel always builds a Table
        raise TypeError(f"{model.__name__} has no Table")
    return table


workflows = _table(WorkflowRow)
waits = _table(WaitRow)
history = _table(HistoryRow)
sign_in_failures = _table(SignInFailureRow)
revoked_sessions = _table(RevokedSessionRow)

__all__ = [
    "VERSION_TABLE",
    "HistoryRow",
    "RevokedSessionRow",
    "SignInFailureRow",
    "UTCDateTime",
    "WaitRow",
    "WorkflowRow",
    "history",
    "metadata",
    "revoked_sessions",
    "sign_in_failures",
    "waits",
    "workflows",
]
