"""One leased session on one workflow: apply interpreter outcomes, checkpoint, manage waits.

``Engine`` opens a ``Session`` for every ``execute``, ``step``, callback and operator action. The
session holds the workflow's lease; every change it makes is written by ``checkpoint`` as one
atomic store write, and the ``CallbackManager`` calls happen after it, outside any transaction.
What an outcome changes is decided by the pure ``reduce`` (engine/_session/reduce.py); the
session carries its effects out and does the I/O.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from engine._definition import reads as reads_of
from engine._definition.compiler import Program, build_traced
from engine._definition.decisions import assignees_of, workflow_side
from engine._definition.handlers import CallbackManager
from engine._definition.statements import RetryPolicy, Wait, WaitFor, evaluate
from engine._definition.workflow import Workflow
from engine._interpreter import Crashed, Outcome, StepRaised, StepRan, position_problems
from engine._jsonsafe import check_text, describe_error, setup_json
from engine._records import (
    HistoryEntry,
    HistoryKind,
    ThreadState,
    ThreadStatus,
    WaitInfo,
    WaitStatus,
    WorkflowRecord,
    WorkflowStatus,
)
from engine._session.reduce import (
    Effects,
    armed,
    close_waits,
    fail,
    history_line,
    reduce,
    renamed,
    without_teardown,
    woken,
)
from engine._session.started import Started
from engine._state import describe_validation, state_json, undeclared_fields, validate_copy
from engine.clock import Clock
from engine.errors import GorchError, StateError
from engine.store.base import Store

log = logging.getLogger("gorch")


def load_state(cls: type[Workflow], record: WorkflowRecord) -> Workflow:
    """The workflow model from its stored JSON. Raises ``StateError`` if it no longer fits.

    Validated from a copy, so the model shares no object with ``record.state``: a step that
    changes nested data in place and then fails leaves the stored state as it was.
    """
    try:
        model = validate_copy(cls, record.state)
    except ValidationError as e:
        raise StateError(
            f"stored state of workflow {record.id!r} does not fit {cls.__name__}: "
            + describe_validation(e),
            workflow_id=record.id,
        ) from None
    except RecursionError:
        raise StateError(
            f"stored state of workflow {record.id!r} is nested too deeply to load",
            workflow_id=record.id,
        ) from None
    unknown = undeclared_fields(cls, record.state)
    if unknown:  # a field removed or renamed in the code: its stored value would be lost
        raise StateError(
            f"stored state of workflow {record.id!r} has {', '.join(map(repr, unknown))}, which "
            f"{cls.__name__} no longer declares: declare it again, migrate it in a "
            "model_validator(mode='before'), or set model_config = ConfigDict(extra='ignore') "
            "to drop it",
            workflow_id=record.id,
        )
    return model


def try_load_state(cls: type[Workflow], record: WorkflowRecord) -> Workflow | StateError:
    """``load_state``, or the ``StateError`` saying why the stored state does not load.

    For readers that must show such a workflow rather than fail on it (``Engine.get`` and
    ``list``, ``update_state``'s repair). An exception from the model's own validators, which
    pydantic lets through, counts as not loading too.
    """
    try:
        return load_state(cls, record)
    except StateError as e:
        return e
    except Exception as e:  # a user validator's bug must not hide the workflow from operators
        return StateError(
            f"stored state of workflow {record.id!r} does not load into {cls.__name__}: "
            + describe_error(e),
            workflow_id=record.id,
        )


def release_lease(store: Store, workflow_id: str, owner: str) -> None:
    """Give a session's lease up; if the store fails, log it: the lease expires by itself,
    and what the session wrote is durable, so its caller must not hear of a failure."""
    try:
        store.release(workflow_id, owner)
    except GorchError as e:
        log.warning("workflow %s: lease not released, it expires by itself: %s", workflow_id, e)


def derive_status(record: WorkflowRecord) -> WorkflowStatus:
    """The workflow's status as its threads say."""
    if record.status.done:
        return record.status
    statuses = {t.status for t in record.threads}  # one pass (a checkpoint's every step)
    if ThreadStatus.FAILED in statuses:
        return WorkflowStatus.FAILED
    if ThreadStatus.RUNNING in statuses:
        return WorkflowStatus.RUNNING
    if ThreadStatus.WAITING in statuses:
        return WorkflowStatus.WAITING
    return WorkflowStatus.FINISHED


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOptions:
    """The engine's settings a session works with, taken from the ``Engine`` as it opens one.

    Attributes:
        clock: the time (a ``ManualClock`` in tests).
        managers: callback managers by handler type, to set waits up and tear them down.
        retry: the policy of a failed step that has none of its own.
        lease: how long a checkpoint extends the session's lease.
        max_state_bytes: the largest state (and ``Return`` value), as JSON (``state_json``).
        max_input_bytes: the largest set-up data, as JSON (``setup_json``).
    """

    clock: Clock
    managers: Mapping[str, CallbackManager]
    retry: RetryPolicy
    lease: timedelta
    max_state_bytes: int | None = None
    max_input_bytes: int | None = None


@dataclass(kw_only=True)
class Session:
    """A workflow loaded under its lease, with its model and compiled definition.

    The I/O half of a session: what an interpreter outcome changes is decided by the pure
    ``reduce`` (engine/_session/reduce.py); the session carries its effects out, writes them
    with ``checkpoint`` and serves the waits through their managers.
    """

    store: Store
    owner: str
    options: SessionOptions
    record: WorkflowRecord
    waits: list[WaitInfo]
    cls: type[Workflow]
    started: Started | None = None  # what new_workflow made of this state, to take over
    # update_state may open a workflow whose stored state does not load, to replace it: then
    # ``state_error`` says why, and ``model`` is unset until the new state is validated.
    repair: bool = False
    state_error: StateError | None = field(default=None, init=False)
    model: Workflow = field(init=False)
    pending: list[HistoryEntry] = field(default_factory=list, init=False)
    waits_changed: bool = field(default=False, init=False)  # waits changed since the last write
    dirty: bool = field(default=False, init=False)  # apply() changed the record since then
    released: bool = field(default=False, init=False)  # the last checkpoint gave the lease up
    # a step timed out and may still run: the session must end
    abandoned: bool = field(default=False, init=False)
    # the model was handed to a caller (``WorkflowInfo.state``): no later session may use it
    handed_out: bool = field(default=False, init=False)
    # The options' parts read per step, as attributes (a lookup spared on the hot path).
    clock: Clock = field(init=False)
    retry: RetryPolicy = field(init=False)
    max_state_bytes: int | None = field(init=False)
    _program: Program | None = field(default=None, init=False)
    _last: Program | None = field(default=None, init=False)  # the program before the change
    # The state as JSON when apply() has just serialised it, for the checkpoint to reuse.
    _dumped: dict[str, Any] | None = field(default=None, init=False)
    # The state (as JSON) that the current program was built from, and the fields it read.
    _built_from: dict[str, Any] | None = field(default=None, init=False)
    _reads: frozenset[str] = field(default=frozenset({reads_of.EVERYTHING}), init=False)
    # The state the open waits' decision data (context, assignees, exclusions) reflects, and
    # whether a wait was armed since: the checkpoint refreshes them only then.
    _decided_from: dict[str, Any] | None = field(default=None, init=False)
    _decide_again: bool = field(default=False, init=False)
    # The threads' positions are known to be in the program (``prepare`` need not check).
    _checked: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        options = self.options
        self.clock, self.retry = options.clock, options.retry
        self.max_state_bytes = options.max_state_bytes
        self._built_from = self._decided_from = self.record.state
        # Open waits armed before decision data existed (migration 0004) get it at the first
        # checkpoint of this session.
        self._decide_again = any(w.status.open and "assignees" not in w.data for w in self.waits)
        started, self.started = self.started, None
        if started is None:
            if not self.repair:
                self.model = load_state(self.cls, self.record)
                return
            loaded = try_load_state(self.cls, self.record)
            if isinstance(loaded, StateError):
                self.state_error = loaded
            else:
                self.model = loaded
            return
        # new_workflow, or this workflow's last session in this engine, loaded and built this
        # very state: take its model and program over.
        self._checked = started.version is not None  # its threads stand where it put them
        self.model = started.model
        self._program = self._last = started.program
        self._reads = started.reads

    def left_over(self) -> Started | None:
        """What the next session of this workflow may take over (``StartedWorkflows``): the
        model and its program, if everything is written and nothing else holds the model.

        None after a step timed out (its call may still change the model), when the model
        went to a caller, when its class has private attributes (a fresh load resets them),
        when nothing was built, or once the workflow is finished or cancelled.
        """
        program = self._program
        if (
            program is None
            or self.record.status.done  # nothing runs it again: keep nothing
            or self.abandoned
            or self.handed_out
            or self.unwritten
            or self._dumped is not None
            or self.state_error is not None
            or type(self.model).__private_attributes__
        ):
            return None
        return Started(self.model, program, self._reads, self.record.state, self.record.version)

    def use_model(self, model: Workflow) -> None:
        """Replace the model (an operator's new state): the definition is built from it
        afresh, and the threads' positions checked against that build."""
        self.model = model
        self._program = self._last = self._dumped = None
        self._checked = False

    def hand_out(self) -> Workflow:
        """The model, for a caller to keep (``WorkflowInfo.state``): so no later session
        takes it over."""
        self.handed_out = True
        return self.model

    @property
    def program(self) -> Program:
        """The definition compiled from the current state (rebuilt after each change)."""
        if self._program is None:
            self._program, self._reads = build_traced(self.model, self.record.id, self._last)
            self._last = self._program
        return self._program

    def _state_is(self, state: dict[str, Any]) -> None:
        """The state is now ``state``: if a field that ``definition()`` read changed, it is
        built again, so its bool conditions see it (a pure function of the fields it read
        needs no rebuild while they stay the same)."""
        if reads_of.changed(self._reads, self._built_from, state):
            self._program = None
        self._built_from = state

    # -- bookkeeping ------------------------------------------------------------------------

    def note(
        self,
        kind: HistoryKind,
        *,
        thread: str | None = None,
        statement: str | None = None,
        actor: str | None = None,
        **detail: Any,
    ) -> None:
        """Add a history line to the next checkpoint."""
        if actor is not None:  # a caller's or an operator's name, and their reason
            check_text(actor=actor, reason=detail.get("reason"))
        self.pending.append(
            history_line(self.record, self.clock.now(), kind, thread, statement, actor, detail)
        )

    def dump_state(self) -> dict[str, Any]:
        """The state as JSON. Raises ``StateError`` if a store cannot hold it, or it is too big."""
        return state_json(self.model, self.record.id, self.max_state_bytes)

    def restore_state(self) -> None:
        """Forget in-memory changes to the state since the last checkpoint."""
        self.model = load_state(self.cls, self.record)
        self._program = self._last = self._dumped = None
        self._built_from = self.record.state

    @property
    def unwritten(self) -> bool:
        """Whether anything changed since the last checkpoint."""
        return self.dirty or self.waits_changed or bool(self.pending)

    def before_step(self) -> None:
        """Write the outcomes applied since the last checkpoint, before a step runs: a step
        never runs while an earlier step's result is unwritten. (Notes alone, such as a
        woken ``WaitFor``, go with the step's own checkpoint.)"""
        if self.dirty:
            self.checkpoint()

    def flush(self, *, last: bool = False) -> None:
        """Checkpoint what changed, if anything did.

        ``last``: the session ends after this write, which then also gives the lease up
        (unless set-ups or tear-downs are due: they run first, under the lease).
        """
        if not self.unwritten:
            return
        release = last and not any(w.retry_at is not None for w in self.waits)
        self.checkpoint(release=release)

    def checkpoint(self, *, release: bool = False) -> None:
        """Write the state, threads, waits and pending history atomically, then serve waits.

        ``release``: give the lease up in the same write (the session's last).
        """
        rec = self.record
        # Serialised before anything changes (a failure writes nothing), or already by apply().
        state, self._dumped = self._dumped or self.dump_state(), None
        rec.pc += 1
        if self._last is not None:
            rec.fingerprint = self._last.fingerprint
        rec.state = state
        rec.status = derive_status(rec)
        now = self.clock.now()
        rec.updated_at = now
        rec.lease_until = now + self.options.lease  # every checkpoint extends the session's lease
        rec.next_run_at = self._next_run(now)
        for e in self.pending:
            e.pc = rec.pc
        if self.waits and (self._decide_again or state is not self._decided_from):
            self._refresh_decisions(state)
        self.store.checkpoint(
            rec,
            owner=self.owner,
            waits=self.waits if self.waits_changed else None,
            history=self.pending,
            release=release,
        )
        self.released = release
        self.waits_changed = self.dirty = False
        self.pending = []
        if state is not self._built_from:  # apply() noted the state it dumped already
            self._state_is(state)  # a changed state: conditions must be evaluated again
        self.serve_waits()

    def next_due(self) -> datetime | None:
        """The earliest time this workflow has work by the clock: a retry, a timer, a set-up."""
        times = [self.record.next_run_at]
        times += [w.due_at for w in self.waits if w.status.open]
        times += [w.retry_at for w in self.waits]
        return min((t for t in times if t is not None), default=None)

    def _next_run(self, now: Any) -> Any:
        if self.record.status is not WorkflowStatus.RUNNING:
            return None
        times = [t.retry_at or now for t in self.record.threads if t.status is ThreadStatus.RUNNING]
        due = min(times) if times else None
        was = self.record.next_run_at
        if due is not None and due <= now and was is not None and was <= due:
            return was  # due already, and still: the same time spares its index a rewrite
        return due

    # -- threads ----------------------------------------------------------------------------

    def runnable(self) -> list[ThreadState]:
        """Threads that can run now, in turn order (round-robin from ``record.turn``)."""
        threads = self.record.threads
        n = len(threads)
        if n == 1:  # the common case: the main thread alone
            t = threads[0]
            ready = t.status is ThreadStatus.RUNNING
            return [t] if ready and (t.retry_at is None or t.retry_at <= self.clock.now()) else []
        now = self.clock.now()
        order = [threads[(self.record.turn + k) % n] for k in range(n)] if n else []
        return [
            t
            for t in order
            if t.status is ThreadStatus.RUNNING and (t.retry_at is None or t.retry_at <= now)
        ]

    def take_turn(self, thread: ThreadState) -> None:
        self.record.turn = (self.record.threads.index(thread) + 1) % len(self.record.threads)

    def wake_waitfors(self) -> None:
        """Release threads whose ``WaitFor`` condition holds now (a checkpoint writes it)."""
        for t in self.record.threads:
            if t.status is not ThreadStatus.WAITING or self.has_open_waits(t.id):
                continue  # only a thread without open waits can stand on a WaitFor
            entry = self.program.entry(t.position)
            if entry is None or not isinstance(entry.stmt, WaitFor):
                continue
            holds: bool | BaseException
            try:
                holds = bool(evaluate(entry.stmt.cond))
            except Exception as e:
                holds = e
            self.carry_out(t, woken(self.record, t, holds, self.clock.now()))

    def prepare(self) -> None:
        """Bring the stored workflow to the code now: follow renames, note a new fingerprint,
        and check every live position (``DefinitionMismatch`` if one is gone)."""
        effects, waits_changed = renamed(self.record, self.waits, self.program, self.clock.now())
        self.waits_changed |= waits_changed
        self.pending += effects.history
        if not self._checked:  # taken over from the last session: its program put them there
            self.check_positions()

    def check_positions(self) -> None:
        """Raise ``DefinitionMismatch`` if a live thread stands where the code no longer has.

        Runs before anything else in a session, so nothing is written for a mismatched
        workflow: its threads, waits and state stay as stored, for an operator to move.
        """
        problems = position_problems(self.program, self.record.threads, self.waits)
        if problems:
            problems[0].workflow_id = self.record.id
            raise problems[0]

    def has_open_waits(self, thread_id: str) -> bool:
        return any(w.thread_id == thread_id and w.status.open for w in self.waits)

    def fail(self, t: ThreadState, statement: str, e: BaseException | str) -> None:
        """Fail thread ``t`` at ``statement`` with ``e`` (a checkpoint writes it)."""
        self.pending.append(fail(self.record, t, statement, e, self.clock.now()))

    def apply(self, t: ThreadState, outcome: Outcome) -> None:
        """Record what the interpreter did with thread ``t``; the caller checkpoints.

        What the outcome changes is ``reduce``'s decision; this carries its effects out.
        """
        if self.dirty and isinstance(outcome, (StepRaised, Crashed)):
            # The state is about to be restored: first write what earlier outcomes of this
            # session did (a step's result), or the restore would take it back.
            if self._dumped is None:  # no step ran since the last checkpoint
                self._dumped = self.record.state
            self.checkpoint()
        self.dirty = True
        if isinstance(outcome, StepRan):
            try:
                self._dumped = self.dump_state()  # the checkpoint reuses it
            except StateError as e:  # the step set something JSON cannot hold: it failed
                outcome = StepRaised(outcome.step, e)
            else:
                self._state_is(self._dumped)
        effects = reduce(self.record, t, outcome, now=self.clock.now(), retry=self.retry,
                         max_state_bytes=self.max_state_bytes)  # fmt: skip
        self.carry_out(t, effects)

    def carry_out(self, t: ThreadState | None, effects: Effects) -> None:
        """Do what a reducer decided (for thread ``t``) beyond the record it changed: restore
        the state, arm and close waits, add the history lines; the next checkpoint writes it."""
        if effects.restore:  # a failed step's partial changes are not kept
            self.restore_state()
        if effects.abandoned is not None:
            self.abandoned = effects.abandoned
        if effects.arm is not None and t is not None:
            self.arm(t, effects.arm)
        for thread_id in effects.close:
            self.close_waits(thread_id, effects.handled)
        self.pending += effects.history

    # -- waits ------------------------------------------------------------------------------

    def arm(self, t: ThreadState, wait: Wait) -> None:
        """Create one open wait per case of ``wait`` for thread ``t``."""
        self.waits_changed = True
        new = armed(self.record, t, wait, self.clock.now(), self.options.managers,
                    new_id=lambda: os.urandom(12).hex())  # fmt: skip
        for w, case in zip(new, wait.cases, strict=True):
            assignees = assignees_of(case.handler)
            # None: no person decides it. Else the checkpoint adds what they see.
            w.data = {**w.data, "assignees": None if assignees is None else list(assignees)}
            self._decide_again = self._decide_again or assignees is not None
        self.waits += new

    def _refresh_decisions(self, state: dict[str, Any]) -> None:
        """Keep the decision data of the open waits (context, assignees, exclusions) as the
        state about to be written says, so the inbox never shows a stale one.

        Only waits a person decides carry it (``assignees`` not None). Context and exclusions
        come from the model; assignees from the definition, looked up again only when the
        fields it read changed (else the handlers are the ones the waits were armed from) or
        for a wait armed before this data existed. A definition that cannot be built now
        leaves the assignees as they were.
        """
        again, self._decide_again = self._decide_again, False
        if not again and state == self._decided_from:
            self._decided_from = state
            return
        self._decided_from = state
        opened = [w for w in self.waits if w.status.open]
        legacy = [w for w in opened if "assignees" not in w.data]  # armed before 0004
        old = {w.id for w in legacy}
        deciding = [w for w in opened if w.data.get("assignees") is not None]
        if not deciding and not legacy:
            return
        common = workflow_side(self.model)
        program = None
        if legacy or reads_of.changed(self._reads, self._built_from, state):
            self._state_is(state)  # the program below is built from this state
            try:
                program = self.program
            except Exception as e:  # the next session that can build it refreshes them
                log.warning("workflow %s: assignees not refreshed: %r", self.record.id, e)
        for w in [*legacy, *deciding]:
            entry = program.entry(w.wait) if program is not None else None
            case = entry.stmt.case(w.event) if entry and isinstance(entry.stmt, Wait) else None
            assignees = assignees_of(case.handler) if case is not None else None
            if w.id in old:
                if case is None:
                    continue  # gone from the code, or the program could not be built
                w.data = {**w.data, "assignees": None}  # settled: decided by a person or not
                self.waits_changed = True
                if assignees is None:
                    continue
            fresh = dict(common)
            if assignees is not None:
                fresh["assignees"] = list(assignees)
            if any(w.data.get(k) != v for k, v in fresh.items()):
                w.data = {**w.data, **fresh}
                self.waits_changed = True

    def close_waits(self, thread_id: str, handled: str | None = None) -> None:
        """Mark the thread's open waits for teardown (``handled``: the id of the winner)."""
        self.waits_changed = True
        close_waits(self.waits, thread_id, handled, self.clock.now())
        self.waits = without_teardown(self.waits, self.options.managers)

    def serve_waits(self) -> None:
        """Run due set-ups and tear-downs through their managers; never raises."""
        now = self.clock.now()
        for w in list(self.waits):
            if w.retry_at is None or w.retry_at > now:
                continue
            manager = self.options.managers.get(w.type)
            tearing = not w.status.open
            data = None
            if manager is not None:
                try:
                    if tearing:
                        manager.teardown(w.copy(), w.handled)
                    else:  # what it returns is kept with the wait, checked as input is
                        data = setup_json(manager.setup(w.copy()), self.options.max_input_bytes, w)
                except Exception as e:
                    w.attempts += 1
                    w.error = describe_error(e)
                    w.status = WaitStatus.TEARDOWN_ERROR if tearing else WaitStatus.SETUP_ERROR
                    w.retry_at = now + self.retry.delay(min(w.attempts, 30))
                    try:
                        self.store.update_wait(w, owner=self.owner)
                        self.store.append_history(
                            [
                                HistoryEntry(
                                    self.record.id,
                                    now,
                                    HistoryKind.TEARDOWN_ERROR
                                    if tearing
                                    else HistoryKind.SETUP_ERROR,
                                    w.thread_id,
                                    w.wait,
                                    None,
                                    self.record.pc,
                                    {"event": w.event, "error": w.error, "attempt": w.attempts},
                                )
                            ],
                            owner=self.owner,
                        )
                    except GorchError as store_error:
                        self._unsaved(w, store_error)
                    continue
            try:
                if tearing:
                    self.waits.remove(w)
                    self.store.delete_wait(w.id, workflow_id=w.workflow_id, owner=self.owner)
                else:  # set up, with its data, in one write
                    w.status, w.retry_at, w.error = WaitStatus.SET_UP, None, None
                    w.setup_data = data
                    self.store.update_wait(w, owner=self.owner)
            except GorchError as store_error:
                self._unsaved(w, store_error)

    def _unsaved(self, w: WaitInfo, e: GorchError) -> None:
        # What the checkpoint wrote is durable, so the session's caller must not hear of a
        # failure; the wait is still due in the store, and ``run_due`` serves it again.
        what = "teardown" if not w.status.open else "setup"
        log.warning("workflow %s: %s of wait %s not stored, to be retried: %s",
                    self.record.id, what, w.id, e)  # fmt: skip
