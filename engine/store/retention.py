"""Retention in SQL: ``SQLModelStore.prune`` deletes ended workflows in short batches.

Each batch is one transaction. It picks up to ``batch`` workflows that match (status,
``updated_at``, type, no unexpired lease) and locks them, deletes their waits and history,
then deletes the workflow rows with a ``DELETE ... RETURNING`` whose ``WHERE`` holds every
condition again. If that DELETE does not return every workflow picked, the transaction is
rolled back: a workflow is deleted whole or not at all. Waits go explicitly, not by their
``ON DELETE CASCADE`` (so they are counted, and on a database that does not enforce foreign
keys they go all the same); history has no foreign key.

Races: on SQLite the transaction begins with ``BEGIN IMMEDIATE``, so it runs alone among
writers and a session's ``acquire`` waits for it. On PostgreSQL the rows are picked with
``FOR UPDATE SKIP LOCKED``: a workflow another session is acquiring or checkpointing this
instant is passed over, and one picked stays locked until the batch commits, so a racing
``acquire`` then finds no row (``WorkflowNotFound``).

The selection needs no index of its own: ``ix_workflows_status_created_at`` finds the rows of
the statuses, oldest first, and those are almost all older than the cut-off; the history and
waits go by their ``workflow_id`` indexes. An index on ``updated_at`` would cost every
checkpoint an index write (``updated_at`` changes on each) to spare prune a filter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import Connection, delete, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from engine.errors import StoreError
from engine.runtime import PruneResult, WorkflowStatus
from engine.store.tables import history, waits, workflows

W, C, H = workflows.c, waits.c, history.c
_CHUNK = 500  # ids per child DELETE: well under every database's limit on bound parameters

Transaction = Callable[[str], AbstractContextManager[Connection]]


def conditions(
    *,
    finished_before: datetime,
    now: datetime,
    statuses: Sequence[WorkflowStatus],
    types: Sequence[str] | None,
) -> list[ColumnElement[bool]]:
    """The WHERE of a workflow that may go: ended in ``statuses`` before the cut-off, of one
    of ``types``, and not leased (a lease that ran out by ``now`` is no lease, as ``acquire``
    sees it: a crashed session's)."""
    where = [
        W.status.in_(sorted(WorkflowStatus(s).value for s in statuses)),
        W.updated_at < finished_before,
        or_(W.lease_owner.is_(None), W.lease_until.is_(None), W.lease_until <= now),
    ]
    if types is not None:
        where.append(W.type.in_(sorted(set(types))))
    return where


def prune(
    write: Transaction,
    read: Transaction,
    dialect: str,
    *,
    finished_before: datetime,
    now: datetime,
    statuses: Sequence[WorkflowStatus],
    types: Sequence[str] | None,
    batch: int,
    dry_run: bool,
) -> PruneResult:
    """Delete (or with ``dry_run`` count) what ``conditions`` selects; see the module."""
    where = conditions(finished_before=finished_before, now=now, statuses=statuses, types=types)
    chosen = select(W.id).where(*where)
    if dry_run:
        # One statement, so one snapshot on PostgreSQL: the three counts agree with each other.
        counts = select(
            select(func.count()).select_from(chosen.subquery()).scalar_subquery(),
            select(func.count()).where(C.workflow_id.in_(chosen)).scalar_subquery(),
            select(func.count()).where(H.workflow_id.in_(chosen)).scalar_subquery(),
        )
        with read("prune") as conn:
            n_workflows, n_waits, n_history = conn.execute(counts).one()
        return PruneResult(int(n_workflows), int(n_waits), int(n_history), dry_run=True)
    pick = chosen.limit(batch)
    if dialect == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    n_workflows = n_waits = n_history = 0
    while True:
        with write("prune") as conn:
            ids = list(conn.execute(pick).scalars())
            for i in range(0, len(ids), _CHUNK):
                part = ids[i : i + _CHUNK]
                n_waits += conn.execute(delete(waits).where(C.workflow_id.in_(part))).rowcount
                n_history += conn.execute(delete(history).where(H.workflow_id.in_(part))).rowcount
                # The DELETE itself re-checks every condition of the selection.
                remove = delete(workflows).where(W.id.in_(part), *where)
                if conn.dialect.delete_returning:
                    whole = set(conn.execute(remove.returning(W.id)).scalars()) == set(part)
                else:
                    whole = conn.execute(remove).rowcount == len(part)
                if not whole:  # cannot happen under the locks; never half a workflow
                    raise StoreError(
                        f"prune: a workflow of {part[:3]}... changed while locked; "
                        "the batch was rolled back"
                    )
        n_workflows += len(ids)
        if len(ids) < batch:  # the last batch (or rows another session holds: next time)
            return PruneResult(n_workflows, n_waits, n_history)
