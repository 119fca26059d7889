"""``SQLModelStore``'s statements, built once: SQLAlchemy then reuses their cache keys and
compiled forms, and each call only binds parameters. Parameter names start with ``k_`` so
that none is named after a column: a value named after a column is one to SET, in
SQLAlchemy's ``execute`` as in ``engine.store.fast``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Integer,
    Interval,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.selectable import Exists

from engine._records import HistoryEntry, WaitInfo, WaitStatus, WorkflowStatus
from engine.store.tables import history, waits, workflows

OPEN = [s.value for s in WaitStatus if s.open]

W, C, H = workflows.c, waits.c, history.c
ID = bindparam("k_id", type_=W.id.type)
OWNER = bindparam("k_owner", type_=W.lease_owner.type)
NOW = bindparam("k_now", type_=W.lease_until.type)
UNTIL = bindparam("k_until", type_=W.lease_until.type)
SELECT = select(workflows).where(W.id == ID)
EXISTS = select(W.id).where(W.id == ID)
HOLDER = select(W.lease_owner, W.lease_until, W.version).where(W.id == ID)
FREE = or_(W.lease_owner.is_(None), W.lease_owner == OWNER, W.lease_until.is_(None))
ACQUIRE = (
    update(workflows)
    .where(W.id == ID, or_(FREE, W.lease_until <= NOW))
    .values(lease_owner=OWNER, lease_until=UNTIL)
)
ACQUIRE_RETURNING = ACQUIRE.returning(*workflows.c)
DUE = (W.status == WorkflowStatus.RUNNING.value, W.next_run_at <= NOW)
ACQUIRE_DUE = ACQUIRE.where(*DUE)
ACQUIRE_DUE_RETURNING = ACQUIRE_DUE.returning(*workflows.c)
RENEW = update(workflows).where(W.id == ID, W.lease_owner == OWNER).values(lease_until=UNTIL)
RELEASE = (
    update(workflows)
    .where(W.id == ID, W.lease_owner == OWNER)
    .values(lease_owner=None, lease_until=None)
)
CHECKPOINT = (
    update(workflows)
    .where(
        W.id == ID,
        W.version == bindparam("k_version", type_=W.version.type),
        W.lease_owner == OWNER,
    )
    .values(version=W.version + 1)
)
LOAD_WAITS = select(waits).where(C.workflow_id == ID).order_by(C.position, C.id)
DROP_WAITS = delete(waits).where(
    C.workflow_id == ID, C.id.not_in(bindparam("k_keep", expanding=True))
)
WF = bindparam("k_workflow", type_=C.workflow_id.type)
DROP_ALL_WAITS = delete(waits).where(C.workflow_id == ID)
INSERT_WAIT = insert(waits)


def leased_by_owner(workflow_id: ColumnElement[str] | BindParameter[str]) -> Exists:
    """``EXISTS``: ``workflow_id`` is leased by ``k_owner`` (CHECKPOINT's owner check). A
    write outside a checkpoint (a wait's set-up or tear-down result, history) carries it in
    its own statement: no extra round trip. ``FOR SHARE`` (PostgreSQL; SQLite's write
    transactions run one at a time anyway) holds the workflow row until the write commits,
    so no other session's ``acquire`` can slip in between the check and the write."""
    return exists(
        select(W.id).where(W.id == workflow_id, W.lease_owner == OWNER).with_for_update(read=True)
    )


LEASE_OWNER = select(W.lease_owner).where(W.id == WF).with_for_update(read=True)
UPDATE_WAIT = update(waits).where(C.id == ID, C.workflow_id == WF, leased_by_owner(WF))
# A late set-up result (its session's lease ran out meanwhile) never reopens a closed wait.
UPDATE_OPEN_WAIT = UPDATE_WAIT.where(C.status.in_(OPEN))
DELETE_WAIT = delete(waits).where(C.id == ID, C.workflow_id == WF, leased_by_owner(WF))
_ENTRY = [c for c in history.c if c.name != "id"]
_ENTRY_VALUES = {c.name: bindparam(c.name, type_=c.type) for c in _ENTRY}
# One history row, written only while its workflow is leased by ``k_owner``.
INSERT_LEASED_ENTRY = (
    insert(history)
    .from_select(
        [c.name for c in _ENTRY],
        select(*_ENTRY_VALUES.values()).where(leased_by_owner(_ENTRY_VALUES["workflow_id"])),
    )
    .returning(H.id)
)
HISTORY = select(history).where(H.workflow_id == ID).order_by(H.id)
INSERT_ENTRY = insert(history).returning(H.id)
INSERT_HISTORY = insert(history).returning(H.id, sort_by_parameter_order=True)
PROBE_ENTRY = HistoryEntry("", datetime.min, "")  # names the columns of a history row
PROBE_WAIT = WaitInfo("", "", "", "", "", "", 0, datetime.min)  # names a wait row's columns

# Leases on the database's clock (PostgreSQL, ``SQLModelStore(lease_clock="database")``): a
# lease has expired once the database's ``now()`` reaches it, and one taken, renewed or
# extended runs ``k_lease`` (the caller's lease length) past the database's ``now()``, however
# far the caller's own clock is off. A workflow's timers (``next_run_at``) stay on the caller's.
DB_NOW = func.now()  # the statement's (autocommit) or transaction's start: stable within it
DB_UNTIL = DB_NOW + bindparam("k_lease", type_=Interval())
DB_ACQUIRE = (
    update(workflows)
    .where(W.id == ID, or_(FREE, W.lease_until <= DB_NOW))
    .values(lease_owner=OWNER, lease_until=DB_UNTIL)
)
DB_ACQUIRE_RETURNING = DB_ACQUIRE.returning(*workflows.c)
DB_ACQUIRE_DUE = DB_ACQUIRE.where(*DUE)
DB_ACQUIRE_DUE_RETURNING = DB_ACQUIRE_DUE.returning(*workflows.c)
DB_RENEW = update(workflows).where(W.id == ID, W.lease_owner == OWNER).values(lease_until=DB_UNTIL)
DB_CHECKPOINT = CHECKPOINT.values(lease_until=DB_UNTIL)


def _claim_due(expired: ColumnElement[datetime] | BindParameter[datetime], until: object) -> object:
    """``claim_due``'s statement: lease up to ``k_limit`` due, unleased workflows (oldest due
    first) in one ``WITH picked AS MATERIALIZED (SELECT ...) UPDATE ... RETURNING``, each to
    ``k_owner`` followed by its id. The rows are picked ``FOR UPDATE SKIP LOCKED``
    (PostgreSQL; SQLite's write transactions run one at a time): a worker passes over the
    rows another is claiming this instant instead of waiting for them, and the outer
    ``WHERE`` checks each again as it updates it."""
    free = or_(W.lease_owner.is_(None), W.lease_until <= expired)
    picked = (
        select(W.id)
        .where(*DUE, free)
        .order_by(W.next_run_at, W.id)
        .limit(bindparam("k_limit", type_=Integer()))
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED")  # run once: a subquery PostgreSQL may run again per row
    )
    return (
        update(workflows)
        .where(W.id.in_(select(picked.c.id)), *DUE, free)
        .values(lease_owner=OWNER + W.id, lease_until=until)
        .returning(*workflows.c)
    )


CLAIM_DUE = _claim_due(NOW, UNTIL)
DB_CLAIM_DUE = _claim_due(DB_NOW, DB_UNTIL)
