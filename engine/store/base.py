"""The ``Store`` protocol: what the engine needs from a database.

A store knows runtime records only (``engine._records``), never statements. Every write the
engine makes while running a workflow goes through ``checkpoint``, one short atomic write
guarded by the workflow's lease and version, or, for the waits' set-up and tear-down results,
through ``update_wait``, ``delete_wait`` and ``append_history``, each guarded by the lease.

Lease times come from the caller's clock, always with the caller's reading of now (``now``,
or a record's ``updated_at``), so a store may keep leases on a clock of its own: a store on
the database's clock (PostgreSQL's ``SQLModelStore``) decides expiry by that clock, and
starts a lease of the caller's length (``until - now``) at that clock's now. So a process
whose clock is off neither takes leases that are still held nor holds expired ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from engine._records import (
    PRUNABLE,
    HistoryEntry,
    InboxPage,
    InboxQuery,
    PruneResult,
    WaitInfo,
    WorkflowRecord,
    WorkflowSort,
    WorkflowStatus,
)
from engine.errors import InvalidOperation


class Store(Protocol):
    """Storage for workflows, their waits (the inbox), history and timers."""

    def create(self, record: WorkflowRecord, history: Sequence[HistoryEntry]) -> bool:
        """Insert a new workflow; False (and nothing written) if the id exists already."""
        ...

    def load(self, workflow_id: str) -> WorkflowRecord:
        """The stored workflow. Raises ``WorkflowNotFound``."""
        ...

    def load_waits(self, workflow_id: str) -> list[WaitInfo]:
        """Every wait of the workflow, open or awaiting teardown."""
        ...

    def acquire(
        self, workflow_id: str, owner: str, *, now: datetime, until: datetime, due: bool = False
    ) -> WorkflowRecord:
        """Take the workflow's lease for ``owner`` until ``until``, if it is free or expired.

        ``now`` is the caller's time: a lease ``until - now`` long (see the module docstring).

        ``due``: only if the workflow is due now (running, ``next_run_at <= now``), as a
        poller wants it; two pollers often reach for the same due workflow, and the loser
        learns it from this one statement.

        Raises:
            WorkflowNotFound: no such workflow (not raised with ``due``).
            WorkflowBusy: another owner holds an unexpired lease.
            WorkflowNotDue: with ``due``, the workflow is not due (or not there) any more.
        """
        ...

    def renew(
        self, workflow_id: str, owner: str, *, until: datetime, now: datetime | None = None
    ) -> None:
        """Extend ``owner``'s lease to ``until``. Raises ``LeaseLost`` if it is no longer
        ``owner``'s.

        ``now``: the caller's time that ``until`` is reckoned from; a store on the database's
        clock extends the lease by ``until - now`` past its own now (without ``now``, to
        ``until`` as it is).
        """
        ...

    def release(self, workflow_id: str, owner: str) -> None:
        """Give the lease up, if ``owner`` still holds it."""
        ...

    def checkpoint(
        self,
        record: WorkflowRecord,
        *,
        owner: str,
        waits: Sequence[WaitInfo] | None,
        history: Sequence[HistoryEntry],
        release: bool = False,
    ) -> None:
        """Atomically write ``record``, replace its waits (unless None), append ``history``.

        Succeeds only if ``owner`` holds the lease and the stored version equals
        ``record.version``; then ``record.version`` is incremented. Raises ``LeaseLost`` otherwise.
        A ``record.lease_until`` that is set extends ``owner``'s lease to it (a store on the
        database's clock: by ``record.lease_until - record.updated_at`` past its own now);
        ``release`` gives the lease up in the same write (a session's last checkpoint).
        """
        ...

    def update_wait(self, wait: WaitInfo, *, owner: str) -> None:
        """Write a wait's set-up/tear-down status (and its ``setup_data``).

        A no-op if the wait is gone, or if the write would reopen a wait that is closed
        (torn down or awaiting tear-down): a set-up that outlived its session's lease must
        not undo the callback another session handled meanwhile.

        Raises:
            LeaseLost: ``owner`` does not hold the workflow's lease; nothing was written.
            WorkflowNotFound: no such workflow.
        """
        ...

    def delete_wait(self, wait_id: str, *, workflow_id: str, owner: str) -> None:
        """Remove a wait of ``workflow_id`` whose teardown is done (a no-op if it is gone).

        Raises:
            LeaseLost: ``owner`` does not hold the workflow's lease; nothing was written.
            WorkflowNotFound: no such workflow.
        """
        ...

    def append_history(self, entries: Sequence[HistoryEntry], *, owner: str) -> None:
        """Append history outside a checkpoint (set-up and tear-down results), all or nothing.

        Raises:
            LeaseLost: ``owner`` does not hold the lease of an entry's workflow; nothing
                was written.
            WorkflowNotFound: an entry's workflow does not exist.
        """
        ...

    def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        type: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        sort: WorkflowSort = WorkflowSort.CREATED,
        ascending: bool = False,
        after: tuple[datetime, str] | None = None,
    ) -> list[WorkflowRecord]:
        """Workflows ordered by ``(sort, id)``, newest first (``ascending``: oldest first).

        Each time range takes ``after <= t < before`` (either end may be None). ``after``
        is a keyset cursor: the ``(time, id)`` of the last row of the previous page; only
        rows past it in this order are returned, so a deep page costs what the first does
        (an index range, never an ``OFFSET`` scan). ``offset`` still works, for old
        callers; its cost grows with it.

        Raises:
            InvalidOperation: a naive time, or a cursor that is not ``(datetime, str)``.
        """
        ...

    def count_workflows(self, *, type: str | None = None) -> dict[WorkflowStatus, int]:
        """How many workflows stand in each status."""
        ...

    def count_by_type(self) -> dict[str, dict[WorkflowStatus, int]]:
        """How many workflows of each stored type stand in each status, in one read (an
        index-only scan of ``(type, status)`` on SQL)."""
        ...

    def list_waits(
        self, *, workflow_id: str | None = None, type: str | None = None, limit: int | None = None
    ) -> list[WaitInfo]:
        """Open waits (the inbox), newest first."""
        ...

    def inbox(self, query: InboxQuery) -> InboxPage:
        """Open waits as inbox cards (one per ``Wait`` of a thread, its events together),
        oldest first (``PendingDecision.key``), filtered by ``query``: the page after
        ``query.after``, and the number of cards matching in all."""
        ...

    def history(self, workflow_id: str) -> list[HistoryEntry]:
        """The workflow's history, oldest first."""
        ...

    def due_workflows(self, now: datetime, limit: int | None = None) -> list[str]:
        """Ids of running workflows due by ``now`` and not leased by anyone (a lease expired
        by the store's lease clock counts as none)."""
        ...

    def due_waits(self, now: datetime, limit: int | None = None) -> list[WaitInfo]:
        """Open timers due by ``now``, and waits whose set-up or tear-down is due (again)."""
        ...

    def prune(
        self,
        *,
        finished_before: datetime,
        now: datetime,
        statuses: Sequence[WorkflowStatus],
        types: Sequence[str] | None = None,
        batch: int = 1000,
        dry_run: bool = False,
    ) -> PruneResult:
        """Delete ended workflows with their waits and history, ``batch`` workflows at a time.

        A workflow goes if its status is one of ``statuses`` (a subset of ``PRUNABLE``), its
        ``updated_at`` (the time of its last checkpoint: when it ended) is before
        ``finished_before``, its type is one of ``types`` (None: any) and no unexpired lease
        is held on it at ``now``. Each batch is one short transaction whose DELETE re-checks
        all of that, so a workflow an operator brings back to life meanwhile is never deleted,
        nor half of one. ``dry_run`` counts what would go, in one read, and deletes nothing.

        Raises:
            InvalidOperation: a naive ``finished_before``, a status outside ``PRUNABLE``, or
                ``batch`` < 1.
        """
        ...


@runtime_checkable
class SignInLog(Protocol):
    """What the operator UI keeps about signing in, in the workflows' database so that every
    UI process sees it: wrong passwords per name (the lock-out) and sessions ended by signing
    out. Both stores implement it; the UI falls back to its own process memory for a store
    that does not.

    Names are compared exactly: the caller normalises them. Times are the caller's.
    """

    def add_sign_in_failure(self, name: str, *, at: datetime, forget_before: datetime) -> None:
        """Record a wrong password for ``name`` at ``at``; forget its failures before
        ``forget_before`` (they no longer count towards a lock-out)."""
        ...

    def sign_in_failures(self, name: str, *, since: datetime) -> list[datetime]:
        """When wrong passwords were given for ``name`` at or after ``since``, oldest first."""
        ...

    def clear_sign_in_failures(self, name: str) -> None:
        """Forget ``name``'s wrong passwords (it signed in)."""
        ...

    def revoke_session(self, session_id: str, *, expires_at: datetime, now: datetime) -> None:
        """End a session: ``session_revoked`` is True for it until ``expires_at`` (when its
        token expires anyway); revocations that expired before ``now`` are dropped."""
        ...

    def session_revoked(self, session_id: str) -> bool:
        """Whether the session was ended (and its revocation not yet dropped)."""
        ...


class ClaimingStore(Store, Protocol):
    """A ``Store`` that can also hand a poller a batch of due workflows at once (every store
    of gorch can; a store without ``claim_due`` is polled with ``due_workflows`` and
    ``acquire``, one workflow at a time)."""

    def claim_due(
        self, now: datetime, owner: str, *, until: datetime, limit: int
    ) -> list[WorkflowRecord]:
        """Take the leases of up to ``limit`` running workflows due by ``now`` and leased by
        no one (as ``due_workflows`` picks them, oldest due first), in one write; return them
        as leased, oldest due first.

        Each is leased to ``owner`` followed by its id (``f"{owner}{record.id}"``), until
        ``until`` (a store on the database's clock: for ``until - now`` past its own now), as
        ``acquire`` would. Two pollers claiming at once get disjoint batches: a workflow
        another is claiming this instant is passed over (PostgreSQL's ``SKIP LOCKED``), not
        waited for.
        """
        ...


def check_prune(finished_before: datetime, statuses: Sequence[WorkflowStatus], batch: int) -> None:
    """Refuse a prune that could touch a live workflow, whose cut-off is no instant, or whose
    batches would be empty; every store checks this itself, whoever calls it (``Engine.prune``
    explains more)."""
    if not isinstance(finished_before, datetime) or finished_before.utcoffset() is None:
        raise InvalidOperation(f"prune needs a timezone-aware cut-off, not {finished_before!r}")
    live = [str(s) for s in statuses if s not in PRUNABLE]
    if live or not statuses:
        raise InvalidOperation(
            f"prune takes statuses among finished, cancelled, failed, not {live}"
        )
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidOperation(f"prune batch must be an integer of at least 1, not {batch!r}")


def check_listing(times: Sequence[datetime | None], after: tuple[datetime, str] | None) -> None:
    """Refuse a listing whose time bounds or cursor are no instants (naive times cannot be
    compared with stored ones); every store checks this itself."""
    if after is not None:
        if not (isinstance(after, tuple) and len(after) == 2 and isinstance(after[1], str)):
            raise InvalidOperation(f"a listing's cursor is (datetime, workflow id), not {after!r}")
        times = [*times, after[0]]
    for t in times:
        if t is not None and (not isinstance(t, datetime) or t.utcoffset() is None):
            raise InvalidOperation(f"a listing's times must be timezone-aware datetimes, not {t!r}")
