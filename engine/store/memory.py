"""``MemoryStore``: the ``Store`` protocol in process memory, for tests and notebooks.

It copies records in and out, so the engine never shares live objects with it: what a
workflow sees after a reload is exactly what a database would have given back.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from engine._records import (
    HistoryEntry,
    InboxPage,
    InboxQuery,
    PruneResult,
    WaitInfo,
    WorkflowRecord,
    WorkflowSort,
    WorkflowStatus,
    decision_matches,
    group_decisions,
)
from engine.errors import LeaseLost, WorkflowBusy, WorkflowNotDue, WorkflowNotFound
from engine.store.base import check_listing, check_prune


class MemoryStore:
    """Workflows, waits and history in dictionaries, guarded by one lock.

    Leases go by the times the caller passes (one process: its clock is the store's).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._workflows: dict[str, WorkflowRecord] = {}
        self._waits: dict[str, dict[str, WaitInfo]] = {}
        self._history: dict[str, list[HistoryEntry]] = {}
        self._wait_owner: dict[str, str] = {}  # wait id -> workflow id
        self._seq = 0
        self._sign_in_failures: dict[str, list[datetime]] = {}
        self._revoked: dict[str, datetime] = {}  # session id -> expires at

    def _get(self, workflow_id: str) -> WorkflowRecord:
        rec = self._workflows.get(workflow_id)
        if rec is None:
            raise WorkflowNotFound(workflow_id)
        return rec

    def _append(self, entries: Sequence[HistoryEntry]) -> None:
        for e in entries:
            self._seq += 1
            e.seq = self._seq
            self._history.setdefault(e.workflow_id, []).append(e.copy())

    def create(self, record: WorkflowRecord, history: Sequence[HistoryEntry]) -> bool:
        with self._lock:
            if record.id in self._workflows:
                return False
            self._workflows[record.id] = record.copy()
            self._waits[record.id] = {}
            self._append(history)
            return True

    def load(self, workflow_id: str) -> WorkflowRecord:
        with self._lock:
            return self._get(workflow_id).copy()

    def load_waits(self, workflow_id: str) -> list[WaitInfo]:
        with self._lock:
            self._get(workflow_id)
            return [w.copy() for w in self._waits.get(workflow_id, {}).values()]

    def acquire(
        self, workflow_id: str, owner: str, *, now: datetime, until: datetime, due: bool = False
    ) -> WorkflowRecord:
        with self._lock:
            if due:
                found = self._workflows.get(workflow_id)
                if found is None or not _is_due(found, now):
                    raise WorkflowNotDue(
                        f"workflow {workflow_id!r} is not due", workflow_id=workflow_id
                    )
            rec = self._get(workflow_id)
            if rec.lease_owner not in (None, owner) and rec.lease_until and rec.lease_until > now:
                raise WorkflowBusy(
                    f"workflow {workflow_id!r} is leased by {rec.lease_owner!r} until "
                    f"{rec.lease_until.isoformat()}",
                    workflow_id=workflow_id,
                    owner=rec.lease_owner,
                )
            rec.lease_owner, rec.lease_until = owner, until
            return rec.copy()

    def renew(
        self, workflow_id: str, owner: str, *, until: datetime, now: datetime | None = None
    ) -> None:
        with self._lock:
            rec = self._get(workflow_id)
            if rec.lease_owner != owner:
                raise LeaseLost(
                    f"lease of workflow {workflow_id!r} was lost",
                    workflow_id=workflow_id,
                    owner=rec.lease_owner,
                )
            rec.lease_until = until

    def release(self, workflow_id: str, owner: str) -> None:
        with self._lock:
            rec = self._workflows.get(workflow_id)
            if rec is not None and rec.lease_owner == owner:
                rec.lease_owner = rec.lease_until = None

    def checkpoint(
        self,
        record: WorkflowRecord,
        *,
        owner: str,
        waits: Sequence[WaitInfo] | None,
        history: Sequence[HistoryEntry],
        release: bool = False,
    ) -> None:
        with self._lock:
            stored = self._get(record.id)
            if stored.lease_owner != owner or stored.version != record.version:
                raise LeaseLost(
                    f"workflow {record.id!r} was taken over by {stored.lease_owner!r} "
                    f"(version {stored.version}, expected {record.version})",
                    workflow_id=record.id,
                    owner=stored.lease_owner,
                )
            record.version += 1
            new = record.copy()
            new.lease_owner = stored.lease_owner
            new.lease_until = record.lease_until or stored.lease_until
            if release:
                new.lease_owner = new.lease_until = None
            self._workflows[record.id] = new
            if waits is not None:
                for old in self._waits.get(record.id, {}):
                    self._wait_owner.pop(old, None)
                self._waits[record.id] = {w.id: w.copy() for w in waits}
                self._wait_owner.update(dict.fromkeys(self._waits[record.id], record.id))
            self._append(history)

    def _must_hold(self, workflow_id: str, owner: str) -> None:
        rec = self._get(workflow_id)
        if rec.lease_owner != owner:
            raise LeaseLost(
                f"lease of workflow {workflow_id!r} was lost to {rec.lease_owner!r}; "
                "nothing was written",
                workflow_id=workflow_id,
                owner=rec.lease_owner,
            )

    def update_wait(self, wait: WaitInfo, *, owner: str) -> None:
        with self._lock:
            self._must_hold(wait.workflow_id, owner)
            waits = self._waits.get(wait.workflow_id, {})
            stored = waits.get(wait.id)
            if stored is not None and (stored.status.open or not wait.status.open):
                waits[wait.id] = wait.copy()

    def delete_wait(self, wait_id: str, *, workflow_id: str, owner: str) -> None:
        with self._lock:
            self._must_hold(workflow_id, owner)
            if self._wait_owner.get(wait_id) == workflow_id:
                del self._wait_owner[wait_id]
                self._waits[workflow_id].pop(wait_id, None)

    def append_history(self, entries: Sequence[HistoryEntry], *, owner: str) -> None:
        with self._lock:
            for wid in dict.fromkeys(e.workflow_id for e in entries):
                self._must_hold(wid, owner)  # all or nothing
            self._append(entries)

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
        check_listing((created_after, created_before, updated_after, updated_before), after)
        field = WorkflowSort(sort).value

        def key(r: WorkflowRecord) -> tuple[datetime, str]:
            return getattr(r, field), r.id

        with self._lock:
            found = [
                r
                for r in self._workflows.values()
                if (status is None or r.status == status)
                and (type is None or r.type == type)
                and (not search or search in r.id)
                and (created_after is None or r.created_at >= created_after)
                and (created_before is None or r.created_at < created_before)
                and (updated_after is None or r.updated_at >= updated_after)
                and (updated_before is None or r.updated_at < updated_before)
                and (after is None or (key(r) > after if ascending else key(r) < after))
            ]
            found.sort(key=key, reverse=not ascending)
            return [r.copy() for r in found[offset : offset + limit]]

    def count_workflows(self, *, type: str | None = None) -> dict[WorkflowStatus, int]:
        with self._lock:
            counts = dict.fromkeys(WorkflowStatus, 0)
            for r in self._workflows.values():
                if type is None or r.type == type:
                    counts[r.status] += 1
            return counts

    def count_by_type(self) -> dict[str, dict[WorkflowStatus, int]]:
        with self._lock:
            counts: dict[str, dict[WorkflowStatus, int]] = {}
            for r in self._workflows.values():
                counts.setdefault(r.type, dict.fromkeys(WorkflowStatus, 0))[r.status] += 1
            return counts

    def list_waits(
        self, *, workflow_id: str | None = None, type: str | None = None, limit: int | None = None
    ) -> list[WaitInfo]:
        with self._lock:
            ids = [workflow_id] if workflow_id is not None else list(self._waits)
            found = [
                w
                for wid in ids
                for w in self._waits.get(wid, {}).values()
                if w.status.open and (type is None or w.type == type)
            ]
            found.sort(key=lambda w: (w.created_at, w.id), reverse=True)
            return [w.copy() for w in found[:limit]]

    def inbox(self, query: InboxQuery) -> InboxPage:
        with self._lock:
            ids = [query.workflow_id] if query.workflow_id is not None else list(self._waits)
            if query.workflow_type is not None:
                ids = [i for i in ids if i in self._workflows
                       and self._workflows[i].type == query.workflow_type]  # fmt: skip
            types = {i: self._workflows[i].type for i in ids if i in self._workflows}
            cards = group_decisions(
                (w.copy() for i in ids for w in self._waits.get(i, {}).values() if w.status.open),
                types,
            )
        cards = [c for c in cards if decision_matches(c.events, query)]
        after = query.after
        rest = [c for c in cards if after is None or c.key > after]
        return InboxPage(rest[: query.limit], len(cards), len(rest) > query.limit)

    def history(self, workflow_id: str) -> list[HistoryEntry]:
        with self._lock:
            self._get(workflow_id)
            return [e.copy() for e in self._history.get(workflow_id, [])]

    def due_workflows(self, now: datetime, limit: int | None = None) -> list[str]:
        with self._lock:
            due = sorted(
                (r.next_run_at, r.id)
                for r in self._workflows.values()
                if r.status is WorkflowStatus.RUNNING
                and r.next_run_at is not None
                and r.next_run_at <= now
                and (r.lease_owner is None or (r.lease_until is not None and r.lease_until <= now))
            )
            return [wid for _, wid in due[:limit]]

    def claim_due(
        self, now: datetime, owner: str, *, until: datetime, limit: int
    ) -> list[WorkflowRecord]:
        with self._lock:
            claimed = []
            for wid in self.due_workflows(now, limit):
                rec = self._workflows[wid]
                rec.lease_owner, rec.lease_until = owner + wid, until
                claimed.append(rec.copy())
            return claimed

    def due_waits(self, now: datetime, limit: int | None = None) -> list[WaitInfo]:
        with self._lock:
            due = [
                w
                for waits in self._waits.values()
                for w in waits.values()
                if (w.status.open and w.due_at is not None and w.due_at <= now)
                or (w.retry_at is not None and w.retry_at <= now)
            ]
            due.sort(key=lambda w: (w.due_at or w.retry_at or now, w.id))
            return [w.copy() for w in due[:limit]]

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
        check_prune(finished_before, statuses, batch)
        wanted, kinds = set(statuses), None if types is None else set(types)

        def goes(r: WorkflowRecord) -> bool:
            return (
                r.status in wanted
                and r.updated_at < finished_before
                and (kinds is None or r.type in kinds)
                and (r.lease_owner is None or r.lease_until is None or r.lease_until <= now)
            )

        n_workflows = n_waits = n_history = 0
        while True:
            with self._lock:  # one batch at a time, as the SQL store's transactions
                ids = [r.id for r in self._workflows.values() if goes(r)]
                if not dry_run:
                    ids = ids[:batch]
                n_workflows += len(ids)
                for wid in ids:
                    n_waits += len(self._waits.get(wid, {}))
                    n_history += len(self._history.get(wid, []))
                    if dry_run:
                        continue
                    del self._workflows[wid]
                    for wait_id in self._waits.pop(wid, {}):
                        self._wait_owner.pop(wait_id, None)
                    self._history.pop(wid, None)
            if dry_run or len(ids) < batch:
                return PruneResult(n_workflows, n_waits, n_history, dry_run=dry_run)

    # -- SignInLog ----------------------------------------------------------------------------

    def add_sign_in_failure(self, name: str, *, at: datetime, forget_before: datetime) -> None:
        with self._lock:
            kept = [t for t in self._sign_in_failures.get(name, []) if t >= forget_before]
            self._sign_in_failures[name] = sorted([*kept, at])

    def sign_in_failures(self, name: str, *, since: datetime) -> list[datetime]:
        with self._lock:
            return [t for t in self._sign_in_failures.get(name, []) if t >= since]

    def clear_sign_in_failures(self, name: str) -> None:
        with self._lock:
            self._sign_in_failures.pop(name, None)

    def revoke_session(self, session_id: str, *, expires_at: datetime, now: datetime) -> None:
        with self._lock:
            self._revoked = {s: t for s, t in self._revoked.items() if t >= now}
            self._revoked[session_id] = max(expires_at, self._revoked.get(session_id, expires_at))

    def session_revoked(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._revoked


def _is_due(rec: WorkflowRecord, now: datetime) -> bool:
    return (
        rec.status is WorkflowStatus.RUNNING
        and rec.next_run_at is not None
        and rec.next_run_at <= now
    )
