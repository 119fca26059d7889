"""Runtime records: threads, waits, history and stored workflows, all plain and serialisable.

They point at statements by *name* only, never at statement objects, so a stored workflow
can be resumed by a newer version of its code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from engine.errors import GorchError

FORMAT_VERSION = 1
"""Version of the stored thread/state format; bumped with a migration when it changes."""


class WorkflowStatus(StrEnum):
    """Where a workflow stands as a whole."""

    RUNNING = "running"  # some thread can run now (or after a retry back-off)
    WAITING = "waiting"  # every live thread waits on an event, a timer or a condition
    FINISHED = "finished"  # ended by Return or by all threads ending; ``error`` may be set
    FAILED = "failed"  # a step ran out of attempts; ``retry`` resumes it
    CANCELLED = "cancelled"  # stopped by an operator

    @property
    def done(self) -> bool:
        """True once nothing more will run (finished or cancelled)."""
        return self in _WORKFLOW_DONE

    @property
    def live(self) -> bool:
        """True while it runs or waits: never pruned (see ``PRUNABLE``)."""
        return self in _WORKFLOW_LIVE

    @property
    def unfinished(self) -> bool:
        """True while not done: running, waiting or failed (a failed one can be retried)."""
        return self not in _WORKFLOW_DONE


class ThreadStatus(StrEnum):
    """Where one thread stands."""

    RUNNING = "running"
    WAITING = "waiting"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def live(self) -> bool:
        """True while it runs or waits."""
        return self in _THREAD_LIVE

    @property
    def done(self) -> bool:
        """True once it finished or was cancelled: it stands nowhere any more."""
        return self in _THREAD_DONE

    @property
    def unfinished(self) -> bool:
        """True while it stands somewhere: running, waiting or failed."""
        return self not in _THREAD_DONE


# The groups above, each defined once. Tuples, not sets: ``in`` on a tuple of members compares
# identity first, where a set would call Enum.__hash__ (Python code): these run every step.
_WORKFLOW_DONE = (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED)
_WORKFLOW_LIVE = (WorkflowStatus.RUNNING, WorkflowStatus.WAITING)
_THREAD_LIVE = (ThreadStatus.RUNNING, ThreadStatus.WAITING)
_THREAD_DONE = (ThreadStatus.FINISHED, ThreadStatus.CANCELLED)


class Phase(StrEnum):
    """How a thread stands on its ``position``."""

    AT = "at"  # the statement has not run yet (also: blocked at a Wait/WaitFor, retrying a step)
    DONE = "done"  # the statement completed; continue after it
    HANDLED = "handled"  # a Wait's case (``event``) won; continue into that case's statements


class WaitStatus(StrEnum):
    """The ``CallbackManager`` life cycle of one wait."""

    PENDING_SETUP = "pending_setup"
    SET_UP = "set_up"
    SETUP_ERROR = "setup_error"
    PENDING_TEARDOWN = "pending_teardown"
    TEARDOWN_ERROR = "teardown_error"

    @property
    def open(self) -> bool:
        """True while the wait still accepts its event."""
        return self in (WaitStatus.PENDING_SETUP, WaitStatus.SET_UP, WaitStatus.SETUP_ERROR)


MAIN = "main"
"""The id of every workflow's main thread."""


class HistoryKind(StrEnum):
    """What a history line records (``HistoryEntry.kind``): the closed set the engine writes.

    The values are stored as they are: never rename one (stored history keeps the old text).
    """

    CREATED = "created"  # new_workflow
    EXECUTE_REQUESTED = "execute_requested"  # execute() by a named actor
    STEP_REQUESTED = "step_requested"  # step() by a named actor
    STEP = "step"  # a step's action returned and its result was written
    STEP_ERROR = "step_error"  # a step's action raised; it is retried
    THREAD_FAILED = "thread_failed"  # out of attempts, or a condition raised
    GO = "go"  # a Go started a thread
    WAIT = "wait"  # a thread blocked on a Wait
    WAITFOR = "waitfor"  # a thread blocked on a WaitFor
    WAITFOR_DONE = "waitfor_done"  # a WaitFor's condition came to hold
    CALLBACK = "callback"  # an event was delivered and its handler ran
    RETURN = "return"  # a thread reached Return
    THREAD_END = "thread_end"  # a thread ran off the end of its body
    FINISHED = "finished"  # the workflow ended
    RENAMED = "renamed"  # a thread followed a rename alias
    CODE_CHANGED = "code_changed"  # the definition's shape differs from the last run's
    CANCELLED = "cancelled"  # an operator cancelled the workflow
    RETRIED = "retried"  # an operator gave a failed thread fresh attempts
    GOTO = "goto"  # an operator moved a thread
    STATE_UPDATED = "state_updated"  # an operator replaced the state
    SETUP_ERROR = "setup_error"  # a CallbackManager's setup raised
    TEARDOWN_ERROR = "teardown_error"  # a CallbackManager's teardown raised
    BLOCKED = "blocked"  # the poller cannot run it as stored (see ``engine.polling``)
    CALLBACK_REFUSED = "callback_refused"  # a person not allowed to decide a wait tried to


@dataclass(slots=True)
class ThreadState:
    """One logical thread of a workflow.

    Attributes:
        id: ``"main"`` or the id its ``Go`` gave it.
        go: the name of the ``Go`` statement whose body it runs (``None`` for main).
        position: the name of the statement it stands on (``""``: the start of its body).
        phase: how it stands there (see ``Phase``).
        status: running, waiting, finished, failed or cancelled.
        event: with ``Phase.HANDLED``, the event of the winning case.
        attempts: failed attempts of the step at ``position``.
        retry_at: when a failed step may be tried again.
        error: the last error of this thread.
    """

    id: str
    go: str | None = None
    position: str = ""
    phase: Phase = Phase.AT
    status: ThreadStatus = ThreadStatus.RUNNING
    event: str | None = None
    attempts: int = 0
    retry_at: datetime | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        """The name shown for the thread: its ``Go`` statement's name, or ``main``."""
        return self.go or MAIN

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "go": self.go,
            "position": self.position,
            "phase": self.phase.value,
            "status": self.status.value,
            "event": self.event,
            "attempts": self.attempts,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ThreadState:
        return cls(
            id=d["id"],
            go=d.get("go"),
            position=d.get("position", ""),
            phase=Phase(d.get("phase", "at")),
            status=ThreadStatus(d.get("status", "running")),
            event=d.get("event"),
            attempts=int(d.get("attempts", 0)),
            retry_at=datetime.fromisoformat(d["retry_at"]) if d.get("retry_at") else None,
            error=d.get("error"),
        )

    def copy(self) -> ThreadState:
        return ThreadState(
            self.id,
            self.go,
            self.position,
            self.phase,
            self.status,
            self.event,
            self.attempts,
            self.retry_at,
            self.error,
        )


@dataclass(slots=True)
class WaitInfo:
    """One pending event of a waiting thread: a row of the inbox.

    Attributes:
        id: unique id of this wait.
        workflow_id: the workflow.
        thread_id: the waiting thread.
        wait: the name of the ``Wait`` statement.
        event: the event of this case.
        type: the handler's type (``user_action``, ``event``, ``timeout``, ...).
        pc: the workflow's program counter when the wait began; a callback may quote it.
        created_at: when the wait began.
        status: its ``CallbackManager`` life cycle.
        due_at: for timers, when it fires.
        data: JSON the handler describes itself with (input schema, timeout, ...), and
            what a person deciding it sees: ``context``, ``assignees`` (None: no person
            decides it) and ``excluded`` (see the properties below).
        attempts: failed setup/teardown attempts.
        retry_at: when a pending or failed setup/teardown is next tried.
        error: the last setup/teardown error.
        handled: with a pending teardown, whether this wait's event won.
        setup_data: the JSON data its manager's ``setup`` returned (a message id, a timer
            id), stored in the write that marked it set up and handed to ``teardown`` and to
            the handler (``current_wait()``); None when ``setup`` returned nothing.
    """

    id: str
    workflow_id: str
    thread_id: str
    wait: str
    event: str
    type: str
    pc: int
    created_at: datetime
    status: WaitStatus = WaitStatus.PENDING_SETUP
    due_at: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    retry_at: datetime | None = None
    error: str | None = None
    handled: bool = False
    setup_data: Any = None

    @property
    def context(self) -> dict[str, Any]:
        """What a person must see to decide it: the workflow's ``summary()`` as it stood at
        the last checkpoint ({} for a wait no person decides)."""
        found = self.data.get("context")
        return found if isinstance(found, dict) else {}

    @property
    def assignees(self) -> tuple[str, ...] | None:
        """Who may resolve it: people and ``role:NAME`` entries; () for anyone; None for a
        wait no person decides (a timer, a handler of your own)."""
        found = self.data.get("assignees")
        return tuple(str(a) for a in found) if isinstance(found, list) else None

    @property
    def excluded(self) -> tuple[str, ...]:
        """People who may not resolve it (the workflow's ``excluded_actors()``)."""
        found = self.data.get("excluded")
        return tuple(str(a) for a in found) if isinstance(found, list) else ()

    def refusal(self, actor: str | None, roles: Iterable[str] = ()) -> str | None:
        """Why ``actor`` (with ``roles``) may not resolve it, as stored; None if they may."""
        return refusal(self.assignees, self.excluded, actor, roles)

    def copy(self) -> WaitInfo:
        return WaitInfo(
            self.id,
            self.workflow_id,
            self.thread_id,
            self.wait,
            self.event,
            self.type,
            self.pc,
            self.created_at,
            self.status,
            self.due_at,
            dict(self.data),
            self.attempts,
            self.retry_at,
            self.error,
            self.handled,
            # JSON nested as deep as it likes: a copy shares none of it (rarely set, small).
            None if self.setup_data is None else deepcopy(self.setup_data),
        )


ROLE_PREFIX = "role:"
"""An assignee written ``role:NAME`` names everyone with that role, any other a person."""


def person_key(name: str) -> str:
    """A name as assignees and exclusions compare it: trimmed, case-folded (``Ann`` is ``ann``,
    so a requester cannot slip past separation of duties by changing case)."""
    return name.strip().casefold()


def refusal(
    assignees: Sequence[str] | None,
    excluded: Sequence[str],
    actor: str | None,
    roles: Iterable[str] = (),
) -> str | None:
    """Why ``actor`` may not decide a wait with these assignees and exclusions, or None.

    ``assignees`` None: no person decides the wait (nothing to check). () lets anyone but the
    excluded decide. A decision with assignees or exclusions needs a named actor: an
    anonymous one could be anybody.
    """
    if assignees is None or not (assignees or excluded):
        return None  # no person decides it, or anyone may
    if actor is None or not person_key(actor):
        return "an anonymous callback cannot be checked against who may decide: name the actor"
    who = person_key(actor or "")
    if who in {person_key(x) for x in excluded}:
        return f"{actor} may not decide this wait (separation of duties)"
    if not assignees:
        return None
    mine = {who} | {ROLE_PREFIX + person_key(r) for r in roles}
    if mine & {person_key(a) for a in assignees}:
        return None
    return f"{actor} is not assigned to this wait (assigned to {', '.join(assignees)})"


@dataclass(slots=True)
class HistoryEntry:
    """One line of a workflow's append-only history: who did what, when, where."""

    workflow_id: str
    at: datetime
    kind: str  # a ``HistoryKind``; read back from a store as its plain string value
    thread: str | None = None
    statement: str | None = None
    actor: str | None = None
    pc: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    seq: int = 0  # assigned by the store, in order of writing

    def copy(self) -> HistoryEntry:
        return HistoryEntry(self.workflow_id, self.at, self.kind, self.thread, self.statement,
                            self.actor, self.pc, dict(self.detail), self.seq)  # fmt: skip


@dataclass(slots=True)
class WorkflowRecord:
    """A workflow as the store keeps it: the state as JSON, threads by statement name."""

    id: str
    type: str
    status: WorkflowStatus
    state: dict[str, Any]
    threads: list[ThreadState]
    created_at: datetime
    updated_at: datetime
    pc: int = 0
    version: int = 0
    turn: int = 0
    result: Any = None
    error: str | None = None
    next_run_at: datetime | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    format: int = FORMAT_VERSION
    fingerprint: str | None = None  # the shape of the code that last ran it
    # Columns that seldom change (status, next_run_at, result, ...) as the store last read or
    # wrote them: a store may leave them out of a checkpoint's UPDATE while they stay the same.
    written: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def copy(self) -> WorkflowRecord:
        """A copy sharing nothing mutable at the top level (state is replaced, not mutated)."""
        return WorkflowRecord(
            self.id,
            self.type,
            self.status,
            self.state,
            [t.copy() for t in self.threads],
            self.created_at,
            self.updated_at,
            self.pc,
            self.version,
            self.turn,
            self.result,
            self.error,
            self.next_run_at,
            self.lease_owner,
            self.lease_until,
            self.format,
            self.fingerprint,
            None if self.written is None else dict(self.written),
        )

    def thread(self, thread_id: str) -> ThreadState | None:
        for t in self.threads:
            if t.id == thread_id:
                return t
        return None


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    """A thread as callers see it."""

    id: str
    name: str
    status: ThreadStatus
    position: str
    phase: Phase
    event: str | None
    attempts: int
    retry_at: datetime | None
    error: str | None


W = TypeVar("W")


@dataclass(frozen=True, slots=True)
class WorkflowInfo(Generic[W]):
    """A workflow as callers see it, with its state as the workflow model.

    ``state`` is None when the stored state does not load into the current model (a field
    renamed or retyped since it was stored); ``state_error`` then says why, and
    ``Engine.update_state`` can replace it.
    """

    id: str
    type: str
    status: WorkflowStatus
    state: W
    threads: tuple[ThreadInfo, ...]
    result: Any
    error: str | None
    pc: int
    version: int
    created_at: datetime
    updated_at: datetime
    next_run_at: datetime | None
    fingerprint: str | None = None
    state_error: str | None = None

    def thread(self, thread_id: str) -> ThreadInfo | None:
        """The thread with this id, if any."""
        return next((t for t in self.threads if t.id == thread_id), None)


@dataclass(frozen=True, slots=True)
class PendingDecision:
    """One card of the inbox: one ``Wait`` of one thread, with every event it waits for
    (an approval and its timeout are one decision, not two)."""

    workflow_id: str
    workflow_type: str
    thread_id: str
    wait: str
    pc: int
    created_at: datetime
    events: tuple[WaitInfo, ...]

    @property
    def context(self) -> dict[str, Any]:
        """What a person must see to decide it (see ``WaitInfo.context``)."""
        return next((e.context for e in self.events if e.context), {})

    @property
    def assignees(self) -> tuple[str, ...] | None:
        """Who may decide it: of its first event a person decides (None: no such event)."""
        return next((e.assignees for e in self.events if e.assignees is not None), None)

    @property
    def excluded(self) -> tuple[str, ...]:
        return next((e.excluded for e in self.events if e.assignees is not None), ())

    @property
    def key(self) -> tuple[datetime, str, str, int]:
        """Its place in the inbox's order (oldest first): what a page's cursor holds."""
        return (self.created_at, self.workflow_id, self.thread_id, self.pc)


@dataclass(frozen=True, slots=True)
class InboxQuery:
    """Which open waits ``Store.inbox`` returns: filters, oldest first, keyset paging.

    Attributes:
        type: a handler type among its events (``user_action``, ``timeout``, ...).
        event: an event it waits for.
        workflow_type: the workflow's type.
        workflow_id: one workflow's waits.
        wait: the name of the ``Wait`` statement.
        actor: only waits this person may decide (assigned to them, to one of ``roles`` or to
            anyone, and they are not excluded).
        roles: the actor's roles.
        created_before: only waits armed before this instant (waiting longer than ...).
        after: the ``PendingDecision.key`` of the last card of the previous page.
        limit: at most this many cards.
    """

    type: str | None = None
    event: str | None = None
    workflow_type: str | None = None
    workflow_id: str | None = None
    wait: str | None = None
    actor: str | None = None
    roles: tuple[str, ...] = ()
    created_before: datetime | None = None
    after: tuple[datetime, str, str, int] | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class InboxPage:
    """One page of the inbox: its cards, how many match in all, and whether more follow."""

    items: list[PendingDecision]
    total: int
    has_more: bool

    @property
    def next_after(self) -> tuple[datetime, str, str, int] | None:
        """The ``after`` of the next page (None on the last)."""
        return self.items[-1].key if self.items and self.has_more else None


def group_decisions(
    waits: Iterable[WaitInfo], workflow_types: dict[str, str]
) -> list[PendingDecision]:
    """Open waits as inbox cards: one per (workflow, thread, pc), its events in the order
    given, the cards oldest first."""
    groups: dict[tuple[str, str, int], list[WaitInfo]] = {}
    for w in waits:
        groups.setdefault((w.workflow_id, w.thread_id, w.pc), []).append(w)
    cards = [
        PendingDecision(
            wid,
            workflow_types.get(wid, ""),
            tid,
            events[0].wait,
            pc,
            min(e.created_at for e in events),
            tuple(events),
        )
        for (wid, tid, pc), events in groups.items()
    ]
    cards.sort(key=lambda c: c.key)
    return cards


def decision_matches(events: Sequence[WaitInfo], query: InboxQuery) -> bool:
    """Whether a card with these events passes ``query``'s filters (not its paging): one of
    its events passes the type, event and actor filters together. The memory store's filter,
    and the reference of the SQL one."""
    first = events[0]
    if query.workflow_id is not None and first.workflow_id != query.workflow_id:
        return False
    if query.wait is not None and first.wait != query.wait:
        return False
    if query.created_before is not None and not first.created_at < query.created_before:
        return False
    return any(_event_matches(e, query) for e in events)


def _event_matches(e: WaitInfo, query: InboxQuery) -> bool:
    """Whether one event passes ``query``'s type, event and actor filters (all at once)."""
    if query.type is not None and e.type != query.type:
        return False
    if query.event is not None and e.event != query.event:
        return False
    if query.actor is not None:
        return e.assignees is not None and e.refusal(query.actor, query.roles) is None
    return True


@dataclass
class MoveReport:
    """What ``Engine.move`` did: one audited operation over many workflows."""

    operation: str
    moved: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, GorchError]] = field(default_factory=list)


class WorkflowSort(StrEnum):
    """Which time a workflow listing is ordered (and paged) by, newest first by default."""

    CREATED = "created_at"  # when the workflow was started
    UPDATED = "updated_at"  # its last checkpoint (for an ended workflow: when it ended)


PRUNABLE = frozenset(s for s in WorkflowStatus if not s.live)
"""The statuses ``Engine.prune`` may remove: never a live one (running, waiting)."""


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What ``Engine.prune`` removed, or with ``dry_run`` would remove.

    Attributes:
        workflows: workflow rows.
        waits: their wait rows (tear-downs still outstanding when they were removed).
        history: their history rows.
        dry_run: True if nothing was removed (the counts say what would have been).
    """

    workflows: int = 0
    waits: int = 0
    history: int = 0
    dry_run: bool = False

    def __str__(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb} {self.workflows} workflow(s), {self.waits} wait(s), "
            f"{self.history} history row(s)"
        )
