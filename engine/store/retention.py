"""Retention in SQL: ``SQLModelStore.prune`` deletes ended workflows in short batches.

Each batch is one transaction. It picks up to ``batch`` workflows that match (status,
``updated_at``, type, no unexpired lease) and locks them, deletes their waits and history,
then deletes the workflow rows with a ``DELETE`` whose ``WHERE`` holds every condition
again. If that DELETE does not remove every workflow picked, the transaction is rolled back:
a workflow is deleted whole or not at all. Waits go explicitly, not by their
``ON DELETE CASCADE`` (so they are counted, and on a database that does not enforce foreign
keys they go all the same); history has no foreign key.

Races: on SQLite the transaction begins with ``BEGIN IMMEDIATE``, so it runs alone among
writers and a session's ``acquire`` waits for it. On PostgreSQL the rows are picked with
``FOR UPDATE SKIP LOCKED``: a workflow another session is acquiring or checkpointing this
instant is passed over, and one picked stays locked until the batch commits, so a racing
``acquire`` then finds no row (``WorkflowNotFound``).

The selection needs no index of its own: the status indexes find the ended workflows, and
those are almost all older than the cut-off; the history and waits go by their
``workflow_id`` indexes. An index on ``updated_at`` would cost every checkpoint an index write
(``updated_at`` changes on each) to spare prune a filter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, any_, bindparam, delete, func, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlalchemy.sql.operators import custom_op

from engine._records import PruneResult, WorkflowStatus
from engine.errors import StoreError
from engine.store.tables import history, waits, workflows

W, C, H = workflows.c, waits.c, history.c
_CHUNK = 500  # ids per child DELETE: well under every database's limit on bound parameters

Transaction = Callable[[str], AbstractContextManager[Connection]]


@dataclass(frozen=True)
class PruneRules:
    """What a dialect's prune does its own way; each SQL store class names its rules.

    ``lock``: pick the rows ``FOR UPDATE SKIP LOCKED`` (a database with row locks; SQLite's
    ``BEGIN IMMEDIATE`` already runs the batch alone). ``array_ids``: pass a batch's ids as one
    array parameter (``= ANY(:ids)``: nothing to parse and plan per id), else as an expanding
    ``IN``. ``unindexed_recheck``: write the DELETE's re-check so that the planner cannot pick
    an index for it (see ``conditions``).
    """

    lock: bool
    array_ids: bool
    unindexed_recheck: bool


SQLITE = PruneRules(lock=False, array_ids=False, unindexed_recheck=True)
POSTGRESQL = PruneRules(lock=True, array_ids=True, unindexed_recheck=False)


def conditions(
    *,
    finished_before: datetime,
    now: datetime | ColumnElement[datetime],
    statuses: Sequence[WorkflowStatus],
    types: Sequence[str] | None,
    unindexed: bool = False,
) -> list[ColumnElement[bool]]:
    """The WHERE of a workflow that may go: ended in ``statuses`` before the cut-off, of one
    of ``types``, and not leased (a lease that ran out by ``now`` is no lease, as ``acquire``
    sees it: a crashed session's). ``now`` is the database's ``now()`` where it keeps leases
    on its own clock (``SQLModelStore(lease_clock="database")``).

    ``unindexed``: written so that SQLite cannot use an index for them (``+column``), for the
    re-check beside a list of ids: without statistics SQLite would otherwise walk the status
    index past every ended workflow, in every batch, instead of looking the ids up.
    """

    def col(c: ColumnElement[Any]) -> ColumnElement[Any]:
        return UnaryExpression(c, operator=custom_op("+"), type_=c.type) if unindexed else c

    where = [
        col(W.status).in_(sorted(WorkflowStatus(s).value for s in statuses)),
        col(W.updated_at) < finished_before,
        or_(W.lease_owner.is_(None), W.lease_until.is_(None), col(W.lease_until) <= now),
    ]
    if types is not None:
        where.append(col(W.type).in_(sorted(set(types))))
    return where


def prune(
    write: Transaction,
    read: Transaction,
    rules: PruneRules,
    *,
    finished_before: datetime,
    now: datetime | ColumnElement[datetime],
    statuses: Sequence[WorkflowStatus],
    types: Sequence[str] | None,
    batch: int,
    dry_run: bool,
) -> PruneResult:
    """Delete (or with ``dry_run`` count) what ``conditions`` selects; see the module."""
    chosen = select(W.id).where(
        *conditions(finished_before=finished_before, now=now, statuses=statuses, types=types)
    )
    recheck = conditions(finished_before=finished_before, now=now, statuses=statuses,
                         types=types, unindexed=rules.unindexed_recheck)  # fmt: skip
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
    if rules.lock:
        pick = pick.with_for_update(skip_locked=True)

    def among(column: ColumnElement[str]) -> ColumnElement[bool]:
        if rules.array_ids:
            return column == any_(bindparam("k_ids", type_=postgresql.ARRAY(column.type)))
        return column.in_(bindparam("k_ids", type_=column.type, expanding=True))

    remove_waits = delete(waits).where(among(C.workflow_id))
    remove_history = delete(history).where(among(H.workflow_id))
    # The DELETE itself re-checks every condition of the selection.
    remove = delete(workflows).where(among(W.id), *recheck)
    n_workflows = n_waits = n_history = 0
    while True:
        with write("prune") as conn:
            ids = sorted(conn.execute(pick).scalars())  # key order: fewer pages touched
            for i in range(0, len(ids), _CHUNK):
                part = {"k_ids": ids[i : i + _CHUNK]}
                n_waits += conn.execute(remove_waits, part).rowcount
                n_history += conn.execute(remove_history, part).rowcount
                # One missing cannot happen under the locks; if it did, never half a workflow.
                if conn.execute(remove, part).rowcount != len(part["k_ids"]):
                    raise StoreError(
                        f"prune: a workflow of {part['k_ids'][:3]}... changed while locked; "
                        "the batch was rolled back"
                    )
        n_workflows += len(ids)
        if len(ids) < batch:  # the last batch (or rows another session holds: next time)
            return PruneResult(n_workflows, n_waits, n_history)
