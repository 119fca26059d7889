"""``Engine``, the public facade: ties the interpreter, handlers, store, clock and resumer."""

from __future__ import annotations

import builtins
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from datetime import datetime, timedelta
from typing import Any

import engine._incidents as _incidents
import engine._jsonsafe as _jsonsafe
import engine._sandbox as _sandbox
import engine._state as _state
import engine._timeouts as _timeouts
from engine._compat import unfinished
from engine._definition.compiler import build_traced
from engine._definition.handlers import CallbackManager
from engine._definition.statements import RetryPolicy, Step
from engine._definition.workflow import Workflow
from engine._incidents import BulkAction, BulkPreview, BulkReport, BulkTarget, Incident
from engine._records import (
    MAIN,
    PRUNABLE,
    HistoryEntry,
    HistoryKind,
    InboxPage,
    InboxQuery,
    MoveReport,
    PruneResult,
    ThreadInfo,
    ThreadState,
    WaitInfo,
    WorkflowInfo,
    WorkflowRecord,
    WorkflowSort,
    WorkflowStatus,
)
from engine._scheduling.polling import Poller
from engine._session import actions
from engine._session.drive import drive
from engine._session.reduce import jsonable
from engine._session.runner import (
    Session,
    SessionOptions,
    load_state,
    release_lease,
    try_load_state,
)
from engine._session.started import Started, StartedWorkflows
from engine._timeline import TimelinePoint, replay
from engine.clock import Clock, ManualClock, SystemClock
from engine.errors import (
    CallbackRejected,
    DefinitionError,
    GorchError,
    InvalidOperation,
    StateError,
    UnknownWorkflowType,
    WorkflowBusy,
    WorkflowExists,
    WorkflowNotFound,
)
from engine.resumers import InlineResumer, Resumer
from engine.store.base import Store

log = logging.getLogger("gorch")


class Engine:
    """Runs workflows durably in ``store``.

    Args:
        store: where workflows live (``MemoryStore()``, ``SQLModelStore(url)``, ...).
        workflows: the workflow classes this engine can run, found by their type name.
        managers: a ``CallbackManager`` per handler type (``"user_action"``, ``"event"``, ...).
        clock: the time source; ``ManualClock`` in tests and notebooks.
        resumer: who executes due work; default ``InlineResumer`` (at once, in this process).
        retry: the default ``RetryPolicy`` of steps.
        max_steps: steps one ``execute()`` may run before the running threads are stopped as a
            runaway loop (they can be retried).
        max_iterations: loop iterations a thread may make without a step or a wait.
        lease: how long one session may hold a workflow before others may take it over
            (on PostgreSQL by the database's clock; see ``SQLModelStore(lease_clock=...)``).
        busy_timeout: how long callbacks and operator actions wait for a busy workflow.
        quarantine: how long ``run_due`` leaves a workflow alone that cannot run as stored.
        max_input_bytes, max_state_bytes: the largest callback input and state, as JSON;
            past them ``InvalidInput`` / ``StateError``, nothing written (None: no limit).
            Set-up data (what a manager's ``setup`` returns) has the input limit.
        step_timeout: the default ``Step(timeout=...)`` (seconds or a timedelta; None: none).
    """

    def __init__(
        self,
        store: Store,
        workflows: Iterable[type[Workflow]] = (),
        *,
        managers: Mapping[str, CallbackManager] | None = None,
        clock: Clock | None = None,
        resumer: Resumer | None = None,
        retry: RetryPolicy | None = None,
        max_steps: int = 10_000,
        max_iterations: int = 10_000,
        lease: timedelta = timedelta(minutes=5),
        busy_timeout: timedelta = timedelta(seconds=10),
        quarantine: timedelta = timedelta(minutes=1),
        max_input_bytes: int | None = 1_000_000,
        max_state_bytes: int | None = 1_000_000,
        step_timeout: timedelta | float | None = None,
    ) -> None:
        self.store = store
        self.managers: dict[str, CallbackManager] = dict(managers or {})
        self.clock: Clock = clock or SystemClock()
        self.resumer: Resumer = resumer or InlineResumer()
        self.retry_policy = retry or RetryPolicy()
        self.max_steps = max_steps
        self.max_iterations = max_iterations
        self.lease = lease
        self.busy_timeout = busy_timeout
        self.quarantine = quarantine
        self.max_input_bytes, self.max_state_bytes = max_input_bytes, max_state_bytes
        self.step_timeout = _timeouts.timeout_seconds(step_timeout, "Engine(step_timeout=...)")
        self._poller = Poller(self)
        self.draining = False  # set by a worker on shutdown: stop between steps
        self.active: dict[str, str] = {}  # lease owner -> workflow id, for lease heartbeats
        self.owner = f"engine-{uuid.uuid4().hex[:12]}"
        self._sessions = itertools.count(1)  # each session holds the lease under its own name
        self._started = StartedWorkflows()  # made by new_workflow, for the first session
        self.workflows: dict[str, type[Workflow]] = {}
        for cls in workflows:
            self.register(cls)
        self.sandbox: _sandbox.Sandbox | None = None  # set on an engine made by ``fork``

    # -- registry ---------------------------------------------------------------------------

    def register(self, cls: type[Workflow]) -> None:
        """Make ``cls`` runnable by this engine under its type name.

        Raises:
            DefinitionError: not a Workflow subclass, or another class has its type name.
            StateError: a field of its state would not be stored (``Field(exclude=True)``).
        """
        if not (isinstance(cls, type) and issubclass(cls, Workflow)):
            raise DefinitionError(f"{cls!r} is not a Workflow subclass")
        _state.check_state_model(cls)  # StateError: a field that would not be stored
        name = cls.workflow_type()
        other = self.workflows.get(name)
        if other is not None and other is not cls:
            raise DefinitionError(
                f"two workflow classes share the type name {name!r}: "
                f"{other.__module__}.{other.__qualname__} and {cls.__module__}.{cls.__qualname__}"
            )
        self.workflows[name] = cls

    def workflow_class(self, type_name: str, workflow_id: str | None = None) -> type[Workflow]:
        """The registered class for ``type_name``. Raises ``UnknownWorkflowType``."""
        cls = self.workflows.get(type_name)
        if cls is None:
            raise UnknownWorkflowType(type_name, workflow_id=workflow_id)
        return cls

    # -- sessions ---------------------------------------------------------------------------

    @contextmanager
    def _run(
        self,
        workflow_id: str,
        *,
        wait: bool = False,
        due: bool = False,
        repair: bool = False,
        claimed: tuple[str, WorkflowRecord] | None = None,
    ) -> Iterator[Session]:
        held = getattr(self.store, "held", None)  # one connection for the session, if offered
        with (
            held() if held is not None else nullcontext(),
            self._session(workflow_id, wait=wait, due=due, repair=repair, claimed=claimed) as run,
        ):
            yield run

    @contextmanager
    def _session(
        self,
        workflow_id: str,
        *,
        wait: bool,
        due: bool,
        repair: bool = False,
        claimed: tuple[str, WorkflowRecord] | None = None,
    ) -> Iterator[Session]:
        """A session on the workflow: its lease taken (or, ``claimed``, the owner and record
        of a lease a poller's ``claim_due`` took), given up when the block ends."""
        if claimed is not None:
            owner, record = claimed
            workflow_id = record.id
        else:
            owner = f"{self.owner}-{next(self._sessions)}"
            record = self._acquire(_jsonsafe.known_id(workflow_id), owner, wait=wait, due=due)
            workflow_id = record.id
        self.active[owner] = workflow_id
        run: Session | None = None
        started = self._started.take_for(record)  # what new_workflow or the last session left
        ok = False
        try:
            run = Session(
                store=self.store,
                owner=owner,
                options=self._session_options(),
                record=record,
                # pc 0: never checkpointed, so no wait can exist yet (a round trip spared).
                waits=self.store.load_waits(workflow_id) if record.pc else [],
                cls=self.workflow_class(record.type, workflow_id),
                started=started,
                repair=repair,
            )
            yield run
            ok = True
        finally:
            self.active.pop(owner, None)
            if run is None or not run.released:
                release_lease(self.store, workflow_id, owner)
        left = run.left_over() if ok else None
        if left is not None:  # for the next session of this workflow, in this engine
            self._started.put(workflow_id, left)

    def _acquire(self, workflow_id: str, owner: str, *, wait: bool, due: bool) -> WorkflowRecord:
        """Take the workflow's lease for ``owner``; with ``wait``, retry a busy one a while."""
        deadline = time.monotonic() + self.busy_timeout.total_seconds()
        delay = 0.005
        while True:
            now = self.clock.now()
            try:
                return self.store.acquire(
                    workflow_id, owner, now=now, until=now + self.lease, due=due
                )
            except WorkflowBusy:
                if not wait or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _session_options(self) -> SessionOptions:
        """The settings a session works with, as they are now."""
        return SessionOptions(
            clock=self.clock,
            managers=self.managers,
            retry=self.retry_policy,
            lease=self.lease,
            max_state_bytes=self.max_state_bytes,
            max_input_bytes=self.max_input_bytes,
        )

    def _info(
        self, record: WorkflowRecord, model: Workflow | None = None, *, listing: bool = False
    ) -> WorkflowInfo[Any]:
        """``record`` as callers see it. A state that does not load is shown, not raised (an
        operator can repair it): ``state`` None and ``state_error``. ``listing``: so is a
        type this engine does not know, so that one row cannot hide the others."""
        state_error = None
        if model is None:
            try:
                loaded = try_load_state(self.workflow_class(record.type, record.id), record)
            except UnknownWorkflowType as e:
                if not listing:
                    raise
                loaded = StateError(e.message, workflow_id=record.id)
            if isinstance(loaded, StateError):
                state_error = loaded.message
            else:
                model = loaded
        return WorkflowInfo(
            id=record.id,
            type=record.type,
            status=record.status,
            state=model,
            threads=tuple(
                ThreadInfo(
                    t.id,
                    t.name,
                    t.status,
                    t.position,
                    t.phase,
                    t.event,
                    t.attempts,
                    t.retry_at,
                    t.error,
                )
                for t in record.threads
            ),
            result=record.result,
            error=record.error,
            pc=record.pc,
            version=record.version,
            created_at=record.created_at,
            updated_at=record.updated_at,
            next_run_at=record.next_run_at,
            fingerprint=record.fingerprint,
            state_error=state_error,
        )

    # -- starting and running ---------------------------------------------------------------

    def new_workflow(
        self, state: Workflow, id: str | None = None, *, actor: str | None = None
    ) -> str:
        """Store a new workflow with initial ``state`` and schedule it; return its id.

        ``id`` doubles as an idempotency key: starting the same id again returns it unchanged.

        Raises:
            DefinitionError: the definition built from ``state`` is malformed.
            StateError: ``state`` cannot be stored, or would not load back as it was stored.
            WorkflowExists: ``id`` belongs to a workflow of another type.
        """
        cls = type(state)
        self.register(cls)
        wid = id if id is not None else uuid.uuid4().hex
        if not _jsonsafe.valid_id(wid):  # PostgreSQL cannot store NUL: refused on every store
            raise InvalidOperation(
                "workflow id must be a non-empty string of at most 200 characters, without NUL "
                f"or unpaired surrogates, not {wid!r:.80}"
            )
        now = self.clock.now()
        record = WorkflowRecord(
            id=wid,
            type=cls.workflow_type(),
            status=WorkflowStatus.RUNNING,
            state=_state.state_json(state, wid, self.max_state_bytes),
            threads=[ThreadState(MAIN)],
            created_at=now,
            updated_at=now,
            next_run_at=now,
        )
        # Loaded and built as the first session will (nothing is stored if either fails).
        model = load_state(cls, record)
        program, reads = build_traced(model, wid, None)
        created = self.store.create(
            record,
            [
                HistoryEntry(
                    wid, now, HistoryKind.CREATED, actor=actor, detail={"type": record.type}
                )
            ],
        )
        if not created:
            existing = self.store.load(wid)
            if existing.type != record.type:
                raise WorkflowExists(
                    f"workflow id {wid!r} is already used by a {existing.type!r} workflow",
                    workflow_id=wid,
                )
            return wid
        self._started.put(wid, Started(model, program, reads, record.state))
        self.resumer.schedule(self, wid)
        return wid

    def execute(
        self, workflow_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> WorkflowInfo[Any]:
        """Run the workflow until every thread blocks or ends; each step's result is written
        before the next step runs (with the control flow that follows it), and the last write
        gives the lease up.

        Args:
            actor: who asked (an operator's button, say): recorded as ``execute_requested``
                in the same checkpoint as the first step it causes.
            reason: why, recorded with the actor.

        Raises:
            WorkflowNotFound: no such workflow.
            WorkflowBusy: another process is running it right now.
            DefinitionMismatch: a thread's position is gone from the code (nothing changed).
        """
        info = self._advance(workflow_id, self.max_steps, runaway=True,
                             request=(HistoryKind.EXECUTE_REQUESTED, actor, reason))  # fmt: skip
        return info if info is not None else self.get(workflow_id)  # (always reported)

    def step(
        self, workflow_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> WorkflowInfo[Any]:
        """Run exactly one step (of the next thread in turn) and checkpoint it.

        ``actor`` and ``reason`` are recorded as ``step_requested`` in that checkpoint.
        """
        info = self._advance(workflow_id, 1, runaway=False,
                             request=(HistoryKind.STEP_REQUESTED, actor, reason))  # fmt: skip
        return info if info is not None else self.get(workflow_id)  # (always reported)

    def resume(self, workflow_id: str) -> WorkflowInfo[Any]:
        """Fire the workflow's due timers, retry its due set-ups and tear-downs, then execute it.

        What a task queue runs for one workflow (``run_due`` does the same for all of them).

        Raises:
            WorkflowNotFound: no such workflow.
            WorkflowBusy: another process is running it right now.
            DefinitionMismatch: a thread's position is gone from the code (nothing changed).
        """
        now = self.clock.now()
        for w in self.store.load_waits(workflow_id):
            if (w.status.open and w.due_at is not None and w.due_at <= now) or (
                w.retry_at is not None and w.retry_at <= now
            ):
                # CallbackRejected: another case of its Wait won meanwhile (an earlier timer)
                with suppress(CallbackRejected):
                    self._serve_wait(w)
        return self.execute(workflow_id)

    def _advance(
        self,
        workflow_id: str,
        limit: int,
        *,
        runaway: bool,
        request: tuple[HistoryKind, str | None, str | None] | None = None,
        due: bool = False,
        claimed: tuple[str, WorkflowRecord] | None = None,
        report: bool = True,
    ) -> WorkflowInfo[Any] | None:
        """Run the workflow's threads in one session (``execute``, ``step``, a resumer's or a
        poller's run). ``report``: return the workflow as it stands (its model goes to the
        caller); without it, None, and the model and program may serve the next session."""
        with self._run(workflow_id, due=due, claimed=claimed) as run:
            rec = run.record
            if rec.status.done:  # nothing runs, nothing is written
                return self._info(rec, run.hand_out()) if report else None
            run.prepare()
            kind, actor, reason = request or (HistoryKind.EXECUTE_REQUESTED, None, None)
            if actor is not None:  # written with the first checkpoint of this session
                run.note(kind, actor=actor, reason=reason)
            drive(self, run, limit, runaway=runaway)
            info = self._info(rec, run.hand_out()) if report else None
            later = run.next_due()
        if later is not None and (later > self.clock.now() or run.abandoned):
            # a retry back-off or a timer; or a step timed out: go on in a fresh session
            self.resumer.schedule(self, workflow_id, at=later)
        return info

    def _execute_unreported(self, workflow_id: str) -> None:
        """``execute`` for a resumer or a poller, which discard what it returns: the
        session's model is handed to no one, so the next session may take it over."""
        self._advance(workflow_id, self.max_steps, runaway=True, report=False)

    # -- callbacks --------------------------------------------------------------------------

    def on_callback(
        self,
        workflow_id: str,
        event: str,
        input: Any = None,
        *,
        actor: str | None = None,
        thread: str | None = None,
        pc: int | None = None,
        roles: Iterable[str] = (),
    ) -> Any:
        """Deliver ``event`` to the workflow's open wait for it; return the handler's output.

        The handler runs, the other cases of the same ``Wait`` are torn down, and the thread
        continues (through the resumer). Exactly once: a second delivery is rejected.

        Args:
            input: the event's input, validated by the handler.
            actor: who sent it, for the history.
            thread: which thread's wait, when several wait for the same event.
            pc: the wait's program counter as last seen; a different one is stale.
            roles: the actor's roles, for a wait assigned to ``"role:NAME"``. The engine
                trusts the caller for who the actor is and which roles they hold (the UI
                signs people in); it decides what they may do.

        Raises:
            CallbackRejected: finished workflow, no such open wait, stale pc, ambiguous
                thread, invalid input (``InvalidInput``) or a failing handler; nothing changed.
            NotPermitted: the actor is not among the wait's assignees or the workflow
                excludes them (``excluded_actors()``); nothing changed, and the refusal is
                written to the history.
            DefinitionMismatch: the wait or its case is gone from the code; nothing changed.
        """
        _jsonsafe.check_input(input, self.max_input_bytes, workflow_id, event, actor)
        if isinstance(roles, str):
            roles = (roles,)
        role_names = tuple(str(r) for r in roles)
        _jsonsafe.check_text(**{f"role {i}": r for i, r in enumerate(role_names)})
        return self._callback(
            workflow_id,
            event,
            input,
            actor=actor,
            thread=thread,
            pc=pc,
            wait=True,
            roles=role_names,
        )

    def _callback(
        self,
        workflow_id: str,
        event: str,
        input: Any,
        *,
        actor: str | None,
        thread: str | None,
        pc: int | None,
        wait: bool,
        roles: tuple[str, ...] = (),
    ) -> Any:
        inline = isinstance(self.resumer, InlineResumer)
        with self._run(workflow_id, wait=wait) as run:
            if not run.record.status.done:
                run.prepare()
            output = actions.deliver(
                run, event, input, actor=actor, thread=thread, pc=pc, roles=roles
            )
            if inline:  # go on in this session, as InlineResumer would in a new one
                try:
                    drive(self, run, self.max_steps, runaway=True)
                except GorchError as e:  # the callback is recorded: report, don't raise
                    log.warning("workflow %s: %s: %s", workflow_id, type(e).__name__, e)
                later = run.next_due()
        if not inline:
            self.resumer.schedule(self, workflow_id)
        elif later is not None and (later > self.clock.now() or run.abandoned):
            self.resumer.schedule(self, workflow_id, at=later)
        return output

    def run_due(self, limit: int | None = None, *, stop: Callable[[], bool] | None = None) -> int:
        """Fire due timers, retry due set-ups/tear-downs and execute due workflows, now.

        Workflows busy elsewhere are skipped (they are someone else's work). A workflow that
        cannot run as stored (``DefinitionMismatch``, ``StateError``, unknown type) is logged,
        noted once in its history, and left alone by this engine for ``quarantine``, so one
        broken workflow cannot hog it. See ``engine._scheduling.polling``.

        Args:
            limit: at most this many timers and this many workflows.
            stop: checked between items; when it returns True, return early.

        Returns:
            How many timers, waits and workflows were handled.
        """
        return self._poller.run_due(limit, stop=stop or (lambda: self.draining))

    def _serve_wait(self, w: WaitInfo) -> None:
        """Fire a due timer (a callback from actor ``timer``), or retry a set-up/tear-down."""
        if w.status.open and w.due_at is not None and w.due_at <= self.clock.now():
            self._callback(
                w.workflow_id,
                w.event,
                None,
                actor="timer",
                thread=w.thread_id,
                pc=w.pc,
                wait=False,
            )
        else:
            with self._run(w.workflow_id) as run:
                run.serve_waits()

    # -- reading ----------------------------------------------------------------------------

    def get(self, workflow_id: str) -> WorkflowInfo[Any]:
        """The workflow as it stands.

        A stored state that no longer loads into the model is no error here: ``state`` is
        None and ``state_error`` says why (``update_state`` repairs it).

        Raises:
            WorkflowNotFound: no such workflow.
            UnknownWorkflowType: its type is not registered with this engine.
        """
        return self._info(self.store.load(_jsonsafe.known_id(workflow_id)))

    def list(
        self,
        *,
        status: WorkflowStatus | str | None = None,
        type: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        sort: WorkflowSort | str = WorkflowSort.CREATED,
        ascending: bool = False,
        after: tuple[datetime, str] | None = None,
    ) -> Sequence[WorkflowInfo[Any]]:
        """Workflows, newest first, filtered by status, type, id substring and time ranges.

        A row whose state does not load (or whose type is not registered) is listed with
        ``state`` None and ``state_error`` saying why, among the others as usual.

        Args:
            created_after, created_before, updated_after, updated_before: timezone-aware
                bounds, ``after <= t < before`` (``updated_at`` is the last checkpoint).
            sort: order by ``created_at`` (default) or ``updated_at``, then id.
            ascending: oldest first.
            after: keyset paging: the ``(time, id)`` of the last row of the previous page
                (its ``created_at`` or ``updated_at``, as sorted); a deep page then costs
                what the first does. ``offset`` works too, at a cost growing with it.

        Raises:
            InvalidOperation: an unknown status or sort, a naive time, a malformed cursor.
        """
        _jsonsafe.check_text(search=search, type=type)  # InvalidOperation: no store could match it
        try:
            st = WorkflowStatus(status) if status is not None else None
        except ValueError:
            raise InvalidOperation(
                f"unknown status {status!r}: one of {', '.join(s.value for s in WorkflowStatus)}"
            ) from None
        try:
            order = WorkflowSort(sort)
        except ValueError:
            raise InvalidOperation(
                f"unknown sort {sort!r}: one of {', '.join(s.value for s in WorkflowSort)}"
            ) from None
        return [
            self._info(r, listing=True)
            for r in self.store.list_workflows(
                status=st,
                type=type,
                search=search,
                limit=limit,
                offset=offset,
                created_after=created_after,
                created_before=created_before,
                updated_after=updated_after,
                updated_before=updated_before,
                sort=order,
                ascending=bool(ascending),
                after=after,
            )
        ]

    def pending_waits(
        self, workflow_id: str | None = None, *, type: str | None = None
    ) -> builtins.list[WaitInfo]:
        """Open waits (what could be delivered by ``on_callback``), newest first."""
        if workflow_id is not None:
            self.store.load(_jsonsafe.known_id(workflow_id))  # WorkflowNotFound for an unknown id
        return self.store.list_waits(workflow_id=workflow_id, type=type)

    def inbox(
        self,
        *,
        type: str | None = None,
        event: str | None = None,
        workflow_type: str | None = None,
        workflow_id: str | None = None,
        wait: str | None = None,
        actor: str | None = None,
        roles: Iterable[str] = (),
        waiting_longer_than: timedelta | None = None,
        after: tuple[datetime, str, str, int] | None = None,
        limit: int = 50,
    ) -> InboxPage:
        """Open waits to decide, one ``PendingDecision`` per ``Wait`` (its events together),
        oldest first, one page at a time, with how many match in all.

        Nothing is capped silently: ``total`` counts every match, and ``page.next_after``
        is the ``after`` of the next page (keyset paging: a page costs the same however deep).
        Each card carries the decision's context and who may decide it, as stored with the
        wait: no workflow is loaded.

        Args:
            type: a handler type among its events (``user_action``, ``timeout``, ...).
            event: an event among its events.
            workflow_type: the workflow's type.
            workflow_id, wait: one workflow's waits; one ``Wait`` statement's.
            actor, roles: only waits this person (with these roles) may decide.
            waiting_longer_than: only waits armed at least this long ago (by the clock).
            after: the last card's ``key`` on the previous page.
            limit: cards per page (1 to 1000).

        Raises:
            InvalidOperation: a limit out of range or text no store can hold.
        """
        _jsonsafe.check_text(
            type=type,
            event=event,
            workflow_type=workflow_type,
            workflow_id=workflow_id,
            wait=wait,
            actor=actor,
        )
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidOperation(f"inbox limit must be 1 to 1000, not {limit!r}")
        if isinstance(roles, str):
            roles = (roles,)
        if after is not None and not (
            isinstance(after, tuple)
            and len(after) == 4
            and isinstance(after[0], datetime)
            and after[0].utcoffset() is not None
            and isinstance(after[1], str)
            and isinstance(after[2], str)
            and isinstance(after[3], int)
        ):
            raise InvalidOperation(
                f"inbox after= takes the key of a card (PendingDecision.key), not {after!r}"
            )
        before = None
        if waiting_longer_than is not None:
            before = self.clock.now() - waiting_longer_than
        return self.store.inbox(
            InboxQuery(
                type=type,
                event=event,
                workflow_type=workflow_type,
                workflow_id=workflow_id,
                wait=wait,
                actor=actor,
                roles=tuple(str(r) for r in roles),
                created_before=before,
                after=after,
                limit=limit,
            )
        )

    def history(self, workflow_id: str) -> builtins.list[HistoryEntry]:
        """Everything that happened to the workflow, oldest first."""
        return self.store.history(_jsonsafe.known_id(workflow_id))

    def timeline(self, workflow_id: str) -> builtins.list[TimelinePoint]:
        """The workflow's past: one point per history line, oldest first, each with every
        thread's position and status right after that line.

        Computed from the stored history alone (no state is replayed and no code runs). A
        point is ``exact=False`` while a thread's position comes from a ``thread_failed``
        line written before failed positions were recorded (``known_from`` gives the index
        from which every point is exact).

        Raises:
            WorkflowNotFound: no such workflow.
        """
        wid = _jsonsafe.known_id(workflow_id)
        self.store.load(wid)  # WorkflowNotFound, on every store
        return replay(self.store.history(wid))

    def fork(
        self,
        workflow_id: str,
        *,
        clock: Clock | None = None,
        skip_steps: bool | Iterable[str] | None = None,
        resumer: Resumer | None = None,
    ) -> Engine:
        """A scratch engine holding a copy of the workflow, to try events on it.

        The copy (state, threads, waits with their set-up data, history) lives in a
        ``MemoryStore`` of its own under the same id; nothing the fork does writes to this
        engine's store. Its callback managers are recorders that set nothing up and tear
        nothing down (``fork.sandbox.calls`` lists what they were asked). Steps are user code:
        the fork calls them (``fork.sandbox.ran`` lists them) unless ``skip_steps`` names
        them, or is True for every step; a skipped step is written to the fork's history as
        a ``step`` line with ``detail["skipped"]`` and changes nothing in the state.

        Args:
            clock: the fork's clock; default a ``ManualClock`` at this engine's now.
            skip_steps: step names whose action is not called, or True for all.
            resumer: who runs the fork's due work; default inline (an event goes on at once).

        Raises:
            WorkflowNotFound: no such workflow.
            UnknownWorkflowType: its type is not registered with this engine.
            InvalidOperation: ``skip_steps`` is not True or a list of names, or names a step
                the workflow's definition does not have.
        """
        wid = _jsonsafe.known_id(workflow_id)
        skip = _sandbox.skip_spec(skip_steps)
        record, waits, history = _sandbox.snapshot(self.store, wid)
        cls = self.workflow_class(record.type, wid)
        if skip and skip is not True:
            loaded = try_load_state(cls, record)
            if not isinstance(loaded, StateError):
                index = build_traced(loaded, wid, None)[0].index
                steps = {n for n, e in index.items() if isinstance(e.stmt, Step)}
                unknown = sorted(skip - steps)
                if unknown:
                    raise InvalidOperation(
                        f"skip_steps names no step of workflow {wid!r}: {unknown} "
                        f"(its steps: {sorted(steps)})",
                        workflow_id=wid,
                    )
        now = self.clock.now()
        fork_clock = clock or ManualClock(now)
        sandbox = _sandbox.Sandbox(wid, len(history), now, skip, fork_clock)
        store = _sandbox.SandboxStore(sandbox)
        store.seed(record, waits, history)
        forked = Engine(
            store,
            [_sandbox.forked_class(cls, sandbox)],
            managers={t: _sandbox.RecordingManager(sandbox, t) for t in self.managers},
            clock=fork_clock,
            resumer=resumer or InlineResumer(),
            retry=self.retry_policy,
            max_steps=self.max_steps,
            max_iterations=self.max_iterations,
            lease=self.lease,
            busy_timeout=self.busy_timeout,
            quarantine=self.quarantine,
            max_input_bytes=self.max_input_bytes,
            max_state_bytes=self.max_state_bytes,
            step_timeout=self.step_timeout,
        )
        forked.sandbox = sandbox
        return forked

    # -- operator actions -------------------------------------------------------------------

    def cancel(self, workflow_id: str, actor: str, reason: str | None = None) -> WorkflowInfo[Any]:
        """Stop the workflow for good; its waits are torn down.

        Raises:
            InvalidOperation: the workflow is already finished or cancelled.
        """
        with self._run(workflow_id, wait=True) as run:
            actions.cancel(run, actor, reason)
            return self._info(run.record, run.hand_out())

    def retry(self, workflow_id: str, actor: str, reason: str | None = None) -> WorkflowInfo[Any]:
        """Give every failed thread fresh attempts at the statement where it failed.

        Raises:
            InvalidOperation: the workflow has not failed.
        """
        with self._run(workflow_id, wait=True) as run:
            actions.retry(run, actor, reason)
        self.resumer.schedule(self, workflow_id)
        return self.get(workflow_id)

    def move(
        self,
        type_name: str,
        from_statement: str,
        to_statement: str,
        actor: str,
        reason: str | None = None,
    ) -> MoveReport:
        """Move every thread standing on ``from_statement`` to ``to_statement``, in bulk.

        The usual fix after a deploy that removed or renamed a statement: each workflow of
        ``type_name`` with a live or failed thread on ``from_statement`` gets a ``goto``
        recorded with ``actor``, ``reason`` and one shared ``operation`` id.

        Returns:
            The operation id, the (workflow, thread) pairs moved, and the (workflow, thread,
            error) of those that could not be moved.
        """
        report = MoveReport(operation=uuid.uuid4().hex)
        candidates = [
            (r.id, t.id)
            for r in unfinished(self.store, type_name)
            for t in r.threads
            if t.position == from_statement and not t.status.done
        ]
        for wid, tid in candidates:
            try:
                self.goto(wid, tid, to_statement, actor, reason, operation=report.operation)
                report.moved.append((wid, tid))
            except GorchError as e:
                report.failed.append((wid, tid, e))
        return report

    # -- incidents and bulk actions ---------------------------------------------------------

    def incidents(self, *, type: str | None = None, scan: int = 10_000) -> builtins.list[Incident]:
        """Failed threads of failed workflows, grouped by cause, the largest group first.

        A cause is the workflow type, the statement the thread failed on, the error's class
        and its message with ids and numbers masked, so the same failure in a thousand
        workflows is one ``Incident`` with its count, first and last seen.

        Args:
            type: only workflows of this type.
            scan: look at the newest this many failed workflows (paged by keyset).

        Raises:
            InvalidOperation: ``scan`` is not a positive integer, or ``type`` is not text.
        """
        if isinstance(scan, bool) or not isinstance(scan, int) or scan < 1:
            raise InvalidOperation(f"scan must be an integer of at least 1, not {scan!r}")
        _jsonsafe.check_text(type=type)
        failed: builtins.list[WorkflowRecord] = []
        after: tuple[datetime, str] | None = None
        while len(failed) < scan:
            want = min(500, scan - len(failed))
            page = self.store.list_workflows(
                status=WorkflowStatus.FAILED, type=type, limit=want, after=after
            )  # newest created first: the (status, created_at, id) index, by keyset
            failed.extend(page)
            if len(page) < want:
                break
            after = (page[-1].created_at, page[-1].id)
        return _incidents.group(failed)

    def preview_bulk(
        self,
        action: BulkAction | str,
        workflow_ids: Iterable[str],
        *,
        incident: str | None = None,
    ) -> BulkPreview:
        """List what a bulk ``retry_many`` / ``cancel_many`` would touch, acting on nothing.

        Each workflow is read once: those the action applies to (failed, for a retry; not
        ended, for a cancel) become targets with the version they have now; the others are
        listed as refused, with why.

        Args:
            action: ``"retry"`` or ``"cancel"``.
            workflow_ids: the workflows (an ``Incident.workflow_ids``, say).
            incident: the incident's key, kept with the preview for the operator's record.

        Raises:
            InvalidOperation: an unknown action, or ``workflow_ids`` is a single string.
        """
        try:
            kind = BulkAction(action)
        except ValueError:
            raise InvalidOperation(
                f"unknown bulk action {action!r}: one of " + ", ".join(a.value for a in BulkAction)
            ) from None
        if isinstance(workflow_ids, str):
            raise InvalidOperation("workflow_ids is a list of ids, not one string")
        targets: builtins.list[BulkTarget] = []
        refused: builtins.list[tuple[str, str]] = []
        for wid in dict.fromkeys(workflow_ids):
            try:
                record = self.store.load(_jsonsafe.known_id(wid))
            except GorchError as e:
                refused.append((str(wid), f"{type(e).__name__}: {e}"))
                continue
            if kind.applies(record.status):
                targets.append(_incidents.target(record))
            else:
                refused.append((wid, f"it is {record.status.value}"))
        return BulkPreview(kind, tuple(targets), tuple(refused), incident, self.clock.now())

    def retry_many(
        self,
        preview: BulkPreview,
        actor: str,
        reason: str | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> BulkReport:
        """Retry every workflow of ``preview`` that has not changed since, as one operation.

        Each retry is recorded with ``actor``, ``reason`` and the report's ``operation`` id.
        A workflow whose version differs from the preview's (someone retried, moved or
        edited it meanwhile) is skipped and reported, never acted on blindly; the version
        is compared under the workflow's lease, in the session that retries it.

        Args:
            progress: called after each workflow with (how many done, how many in all).

        Raises:
            InvalidOperation: ``preview`` is not a retry preview.
        """
        return self._bulk(preview, BulkAction.RETRY, actor, reason, progress)

    def cancel_many(
        self,
        preview: BulkPreview,
        actor: str,
        reason: str | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> BulkReport:
        """Cancel every workflow of ``preview`` that has not changed since, as one operation.

        As ``retry_many``: one ``operation`` id in every history line, a workflow that changed
        since the preview skipped and reported.

        Raises:
            InvalidOperation: ``preview`` is not a cancel preview.
        """
        return self._bulk(preview, BulkAction.CANCEL, actor, reason, progress)

    def _bulk(
        self,
        preview: BulkPreview,
        action: BulkAction,
        actor: str,
        reason: str | None,
        progress: Callable[[int, int], None] | None,
    ) -> BulkReport:
        if not isinstance(preview, BulkPreview) or preview.action is not action:
            raise InvalidOperation(
                f"{action.value}_many takes a preview_bulk({action.value!r}, ...), "
                f"not {preview!r:.200}"
            )
        _jsonsafe.check_text(actor=actor, reason=reason)
        report = BulkReport(operation=uuid.uuid4().hex, action=action)
        total = len(preview.targets)
        for n, t in enumerate(preview.targets, 1):
            try:
                with self._run(t.workflow_id, wait=True) as run:
                    now = run.record.version
                    if now == t.version:
                        if action is BulkAction.RETRY:
                            actions.retry(run, actor, reason, report.operation)
                        else:
                            actions.cancel(run, actor, reason, report.operation)
                if now != t.version:
                    why = f"changed since the preview (version {t.version}, now {now})"
                    report.skipped.append((t.workflow_id, why))
                else:
                    if action is BulkAction.RETRY:
                        self.resumer.schedule(self, t.workflow_id)
                    report.done.append((t.workflow_id, self.store.load(t.workflow_id).status))
            except WorkflowNotFound:
                report.skipped.append((t.workflow_id, "gone since the preview"))
            except GorchError as e:
                report.failed.append((t.workflow_id, e))
            if progress is not None:
                progress(n, total)
        log.info("%s by %s: %s", action.value, actor, report.summary())
        return report

    def goto(
        self,
        workflow_id: str,
        thread: str,
        statement: str,
        actor: str,
        reason: str | None = None,
        *,
        operation: str | None = None,
    ) -> WorkflowInfo[Any]:
        """Move ``thread`` onto the named ``statement`` (forward or back); it runs from there.

        Waits the thread leaves are torn down. The move is recorded with ``actor``.

        Raises:
            InvalidOperation: unknown thread, finished workflow, or a statement the thread
                cannot stand on (not in its body, or not a step, wait, loop, branch or Go).
        """
        with self._run(workflow_id, wait=True) as run:
            actions.goto(run, thread, statement, actor, reason, operation)
        self.resumer.schedule(self, workflow_id)
        return self.get(workflow_id)

    def update_state(
        self,
        workflow_id: str,
        state: Mapping[str, Any] | Workflow,
        actor: str,
        reason: str | None = None,
    ) -> WorkflowInfo[Any]:
        """Replace the workflow's state, validated through its model, and record who and why.

        The history line (``state_updated``, with each changed field's old and new value) is
        written in the same checkpoint as the state. An edit that changes nothing writes nothing.

        The stored state need not load: this is how a state that no longer fits the model
        (a field renamed or retyped in the code) is repaired; the history line then also
        says what was wrong with it (``repaired``).

        Raises:
            StateError: ``state`` does not validate against the workflow's model, holds a
                field the model does not declare, cannot be stored (too large, NaN, NUL,
                ...) or would not load back as stored; nothing is written.
            DefinitionError: the definition built from the new state is malformed.
            DefinitionMismatch: a live thread's position is missing from that definition.
            InvalidOperation: the workflow is finished or cancelled.
        """
        with self._run(workflow_id, wait=True, repair=True) as run:
            if not actions.update_state(run, state, actor, reason):
                return self._info(run.record, run.hand_out())
        self._poller.quarantine.pop(workflow_id, None)  # it may run again at once, if repaired
        self.resumer.schedule(self, workflow_id)  # a WaitFor may hold now
        return self.get(workflow_id)

    # -- retention --------------------------------------------------------------------------

    def prune(
        self,
        finished_before: datetime,
        *,
        types: Iterable[str] | str | None = None,
        statuses: Iterable[WorkflowStatus | str] | str = (
            WorkflowStatus.FINISHED,
            WorkflowStatus.CANCELLED,
        ),
        batch: int = 1000,
        dry_run: bool = False,
    ) -> PruneResult:
        """Delete workflows that ended before ``finished_before``, with their waits and history.

        A workflow ended when its last checkpoint was written (``updated_at``): nothing writes
        to a finished or cancelled workflow after that (operator actions refuse them), and an
        operator action on a failed one (retry, goto, update_state, cancel) moves its time on,
        so it is kept the longer. A live workflow (running, waiting) or one whose lease is
        held is never deleted; each batch is one short transaction that checks this again in
        its DELETE, so a workflow a retry brings back to life meanwhile stays whole.

        Args:
            finished_before: a timezone-aware cut-off; workflows that ended at or after it stay.
            types: only workflows of these type names (None: every type; a string is one name).
            statuses: which ended workflows go: ``finished``, ``cancelled`` and, only when
                named, ``failed`` (a failed workflow waits for an operator's retry).
            batch: workflows deleted per transaction (shorter transactions hold locks less).
            dry_run: delete nothing; count what would be deleted.

        Returns:
            How many workflows, waits and history rows were (or would be) deleted.

        Raises:
            InvalidOperation: a naive ``finished_before``, an unknown or live status, an empty
                list of statuses or types, or ``batch`` < 1; nothing is deleted.
        """
        if not isinstance(finished_before, datetime) or finished_before.utcoffset() is None:
            raise InvalidOperation(
                f"finished_before must be a timezone-aware datetime, not {finished_before!r}"
            )
        names = _names(statuses, "statuses")
        chosen: builtins.list[WorkflowStatus] = []
        for name in names:
            try:
                status = WorkflowStatus(name)
            except ValueError:
                status = None
            if status is None or status not in PRUNABLE:
                raise InvalidOperation(
                    f"cannot prune status {name!r}: one of finished, cancelled, failed "
                    "(a running or waiting workflow is never pruned)"
                )
            chosen.append(status)
        if not chosen:
            raise InvalidOperation("prune needs at least one status")
        kinds = None
        if types is not None:
            kinds = _names(types, "types")
            if not kinds or not all(isinstance(k, str) for k in kinds):
                raise InvalidOperation(f"types must be type names (or None for all), not {types!r}")
            _jsonsafe.check_text(type=" ".join(kinds))
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidOperation(f"batch must be an integer of at least 1, not {batch!r}")
        result = self.store.prune(
            finished_before=finished_before,
            now=self.clock.now(),
            statuses=chosen,
            types=kinds,
            batch=batch,
            dry_run=bool(dry_run),
        )
        log.info("prune of workflows ended before %s: %s", finished_before.isoformat(), result)
        return result


def _names(value: Any, what: str) -> list[Any]:
    """``value`` as a list: a string is one name. Raises ``InvalidOperation`` if not iterable."""
    if isinstance(value, str):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise InvalidOperation(f"{what} must be a name or a list of names, not {value!r}") from None


__all__ = ["Engine", "jsonable"]
