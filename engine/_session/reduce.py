"""The pure half of a session: from an interpreter outcome to the changes it makes.

``reduce`` decides what one ``Outcome`` of the interpreter means for the workflow: the
thread's new position, phase and status, a goroutine started, the workflow finished, the
history lines to write, the waits to arm and close, whether the step's changes to the state
are thrown away. So do, for what does not come from the interpreter, ``handled`` (a
callback's winning case), ``woken`` (a ``WaitFor`` whose condition was evaluated),
``renamed`` (threads following the code's renames), ``cancelled``, ``retried`` and
``moved`` (operator actions). None does I/O: no store, no clock, no callback manager, no
serialising of the state, no user code. Each changes the in-memory record (and thread) it is
given and returns the rest as ``Effects``, which the ``Session``
(engine/_session/runner.py) carries out and checkpoints.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, assert_never

from pydantic_core import to_jsonable_python

from engine._definition.compiler import Program
from engine._definition.statements import RetryPolicy, Wait
from engine._interpreter import (
    Blocked,
    BlockedFor,
    Crashed,
    Ended,
    GoStart,
    Outcome,
    Returned,
    StepRaised,
    StepRan,
)
from engine._jsonsafe import check_text, check_value, describe_error, printable
from engine._records import (
    MAIN,
    HistoryEntry,
    HistoryKind,
    Phase,
    ThreadState,
    ThreadStatus,
    WaitInfo,
    WaitStatus,
    WorkflowRecord,
    WorkflowStatus,
)
from engine.errors import InvalidResult, StepTimeout


def jsonable(value: Any) -> Any:
    """``value`` as JSON-compatible data (pydantic models, datetimes, ...), or its repr."""
    try:
        return to_jsonable_python(value)
    except Exception:
        return repr(value)


def history_line(
    record: WorkflowRecord,
    now: datetime,
    kind: HistoryKind,
    thread: str | None = None,
    statement: str | None = None,
    actor: str | None = None,
    detail: dict[str, Any] | None = None,
) -> HistoryEntry:
    """A history line of ``record`` (its ``pc`` set by the checkpoint that writes it)."""
    return HistoryEntry(
        record.id,
        now,
        kind,
        thread,
        statement,
        actor,
        0,
        {k: jsonable(v) for k, v in detail.items() if v is not None} if detail else {},
    )


@dataclass(slots=True)
class Effects:
    """What an outcome asks of the session beyond the record and thread ``reduce`` changed.

    Attributes:
        history: history lines to add to the next checkpoint, in order.
        restore: the step failed: forget its changes to the state (reload the stored one).
        abandoned: a step raised; True if it timed out and may still run (the session must
            end), None if no step raised.
        arm: the ``Wait`` whose cases get one open wait each, for the thread reduced.
        close: threads whose open waits close (marked for teardown), in order.
        handled: the id of the wait whose event won (a callback), told so at its teardown.
    """

    history: list[HistoryEntry] = field(default_factory=list)
    restore: bool = False
    abandoned: bool | None = None
    arm: Wait | None = None
    close: list[str] = field(default_factory=list)
    handled: str | None = None


def armed(
    record: WorkflowRecord,
    t: ThreadState,
    wait: Wait,
    now: datetime,
    managed: Container[str],
    *,
    new_id: Callable[[], str],
) -> list[WaitInfo]:
    """One open wait per case of ``wait`` for thread ``t``, as the next checkpoint writes it.

    Args:
        managed: the handler types a ``CallbackManager`` sets up: such a wait starts pending
            its set-up, due now; any other is set up already.
        new_id: makes each wait's id (random in a session; the fault tests seed it).
    """
    waits = []
    for case in wait.cases:
        h: Any = case.handler
        due = getattr(h, "due", None)
        describe = getattr(h, "describe", None)
        waits.append(
            WaitInfo(
                id=new_id(),
                workflow_id=record.id,
                thread_id=t.id,
                wait=wait.name,
                event=case.event,
                type=h.type,
                pc=record.pc + 1,
                created_at=now,
                status=WaitStatus.PENDING_SETUP if h.type in managed else WaitStatus.SET_UP,
                due_at=due(now) if callable(due) else None,
                data=jsonable(describe()) if callable(describe) else {},
                retry_at=now if h.type in managed else None,
            )
        )
    return waits


def close_waits(waits: list[WaitInfo], thread_id: str, handled: str | None, now: datetime) -> None:
    """Mark the open waits of ``thread_id`` for teardown, due ``now`` (``handled``: the id of
    the winning wait, whose tear-down is told so)."""
    for w in waits:
        if w.thread_id == thread_id and w.status.open:
            w.status, w.handled, w.retry_at, w.attempts = (
                WaitStatus.PENDING_TEARDOWN,
                w.id == handled,
                now,
                0,
            )


def without_teardown(waits: list[WaitInfo], managed: Container[str]) -> list[WaitInfo]:
    """``waits`` without the closed ones that no ``CallbackManager`` tears down (a type not
    in ``managed``): they have nothing to wait for, so the checkpoint that closes them
    deletes them, rather than a write of their own after it."""
    return [w for w in waits if w.status.open or w.type in managed]


def returned_problem(outcome: Returned, limit: int | None) -> str | None:
    """Why a ``Return``'s value cannot be stored (NaN, NUL, not JSON, over ``limit`` bytes),
    or None."""
    try:
        check_value(outcome.value, limit)
    except ValueError as e:
        return f"the Return value cannot be stored as JSON: {e}"
    return None


TRACEBACK_CHARS = 8000
"""The most of a traceback a history line keeps: its end, where the error was raised."""


def traceback_of(e: BaseException) -> str:
    """``e``'s traceback as text for a history line: at most ``TRACEBACK_CHARS`` (the end of
    a longer one, marked as cut), with what a store cannot hold written as escapes."""
    text = "".join(traceback.format_exception(e))
    if len(text) > TRACEBACK_CHARS:
        text = "… (cut)\n" + text[-TRACEBACK_CHARS:]
    return printable(text)


def fail(
    record: WorkflowRecord,
    t: ThreadState,
    statement: str,
    e: BaseException | str,
    now: datetime,
) -> HistoryEntry:
    """Mark thread ``t`` failed at ``statement`` with ``e``; return its history line."""
    t.status = ThreadStatus.FAILED
    t.error = printable(e) if isinstance(e, str) else describe_error(e)
    t.retry_at = None
    tb = None if isinstance(e, str) else traceback_of(e)
    # the position too: ``statement`` is where it failed, which a condition's failure may not
    # have moved the thread to (engine._timeline replays positions from the history)
    detail = {"error": t.error, "traceback": tb, "position": t.position}
    return history_line(record, now, HistoryKind.THREAD_FAILED, t.id, statement, None, detail)


def finish(
    record: WorkflowRecord, value: Any, error: str | None, now: datetime, effects: Effects
) -> None:
    """End the workflow: stop the other threads and close every wait."""
    for x in record.threads:
        if x.status.live:
            x.status = ThreadStatus.CANCELLED
            effects.close.append(x.id)
    record.result, record.error = jsonable(value), error
    record.status = WorkflowStatus.FINISHED
    effects.history.append(
        history_line(record, now, HistoryKind.FINISHED, detail={"result": value, "error": error})
    )


def finish_if_done(record: WorkflowRecord, now: datetime, effects: Effects) -> None:
    """Finish the workflow once no thread is live or failed any more."""
    if not any(x.status.unfinished for x in record.threads):
        finish(record, None, None, now, effects)


def reduce(
    record: WorkflowRecord,
    t: ThreadState,
    outcome: Outcome,
    *,
    now: datetime,
    retry: RetryPolicy,
    max_state_bytes: int | None = None,
) -> Effects:
    """Apply what the interpreter did with thread ``t`` of ``record``; return the rest to do.

    Args:
        record: the workflow, changed in place (its threads, and result and status when it
            finishes).
        t: the thread the outcome is of (one of ``record.threads``), changed in place.
        outcome: what the interpreter reported.
        now: the time of the outcome (history lines, a retry's time).
        retry: the policy of a failed step that has none of its own.
        max_state_bytes: the largest value a ``Return`` may store, as JSON.

    Returns:
        The history lines, waits to arm and close, and the state's fate.
    """
    effects = Effects()
    history = effects.history
    match outcome:
        case StepRan():
            t.position, t.phase, t.attempts, t.error, t.retry_at = (
                outcome.step.name,
                Phase.DONE,
                0,
                None,
                None,
            )
            history.append(history_line(record, now, HistoryKind.STEP, t.id, outcome.step.name))
        case StepRaised():
            effects.restore = True  # a failed step's partial changes are not kept
            step = outcome.step
            policy = step.retry or retry
            t.position, t.phase = step.name, Phase.AT
            t.attempts += 1
            t.error = describe_error(outcome.error)
            effects.abandoned = isinstance(outcome.error, StepTimeout)
            if t.attempts < policy.max_attempts:
                t.retry_at = now + policy.delay(t.attempts)
                detail = {
                    "error": t.error,
                    "attempt": t.attempts,
                    "retry_at": t.retry_at,
                    "traceback": traceback_of(outcome.error),
                }
                history.append(
                    history_line(record, now, HistoryKind.STEP_ERROR, t.id, step.name, None, detail)
                )
            else:
                history.append(fail(record, t, step.name, outcome.error, now))
        case Crashed():
            effects.restore = True
            history.append(fail(record, t, outcome.statement, outcome.error, now))
        case GoStart():
            old = record.thread(outcome.thread_id)
            if old is not None and (old.status.live or old.go != outcome.go.name):
                used = (
                    f"Go {outcome.go.name!r}: thread id {outcome.thread_id!r} is already used "
                    "by a live thread or another goroutine of this workflow"
                )
                history.append(fail(record, t, outcome.go.name, used, now))
                return effects
            fresh = ThreadState(outcome.thread_id, go=outcome.go.name)
            if old is None:
                record.threads.append(fresh)
            else:  # a thread sent back before its Go (goto) starts the goroutine afresh
                record.threads[record.threads.index(old)] = fresh
            t.position, t.phase = outcome.go.name, Phase.DONE
            detail = {"started": outcome.thread_id}
            history.append(
                history_line(record, now, HistoryKind.GO, t.id, outcome.go.name, None, detail)
            )
        case Blocked():
            t.position, t.phase, t.status = outcome.wait.name, Phase.AT, ThreadStatus.WAITING
            effects.arm = outcome.wait
            detail = {"events": [c.event for c in outcome.wait.cases]}
            history.append(
                history_line(record, now, HistoryKind.WAIT, t.id, outcome.wait.name, None, detail)
            )
        case BlockedFor():
            t.position, t.phase = outcome.waitfor.name, Phase.AT
            t.status = ThreadStatus.WAITING
            history.append(
                history_line(record, now, HistoryKind.WAITFOR, t.id, outcome.waitfor.name)
            )
        case Returned():
            problem = returned_problem(outcome, max_state_bytes)
            if problem is not None:  # nothing of it is written: the thread fails at the Return
                error = InvalidResult(problem, workflow_id=record.id, thread=t.id)
                history.append(fail(record, t, t.position, error, now))
                return effects
            t.status = ThreadStatus.FINISHED
            # error text describes, like a step's error: NUL and surrogates written as escapes
            text = None if outcome.error is None else printable(outcome.error)
            detail = {"value": outcome.value, "error": text}
            history.append(history_line(record, now, HistoryKind.RETURN, t.id, None, None, detail))
            if t.id == MAIN:
                finish(record, outcome.value, text, now, effects)
            else:
                finish_if_done(record, now, effects)
        case Ended():
            t.status = ThreadStatus.FINISHED
            history.append(history_line(record, now, HistoryKind.THREAD_END, t.id))
            finish_if_done(record, now, effects)
        case _:
            assert_never(outcome)
    return effects


# -- what does not come from the interpreter ---------------------------------------------------


def operator_line(
    record: WorkflowRecord,
    now: datetime,
    kind: HistoryKind,
    *,
    thread: str | None = None,
    statement: str | None = None,
    actor: str | None = None,
    **detail: Any,
) -> HistoryEntry:
    """A history line naming who (``actor``) did it and why (``reason`` in ``detail``).

    Raises:
        InvalidOperation: the actor or the reason is text a store cannot hold.
    """
    if actor is not None:
        check_text(actor=actor, reason=detail.get("reason"))
    return history_line(record, now, kind, thread, statement, actor, detail)


def handled(
    record: WorkflowRecord,
    t: ThreadState,
    wait: WaitInfo,
    now: datetime,
    *,
    actor: str | None,
    input: Any,
    output: Any,
) -> Effects:
    """A callback's event won ``wait`` of thread ``t``: the thread runs that case next, the
    wait's other cases close, and the callback is recorded with its input and output."""
    line = operator_line(record, now, HistoryKind.CALLBACK, thread=t.id, statement=wait.wait,
                         actor=actor, event=wait.event, input=input, output=output)  # fmt: skip
    t.position, t.phase, t.event, t.status = (
        wait.wait,
        Phase.HANDLED,
        wait.event,
        ThreadStatus.RUNNING,
    )
    return Effects(history=[line], close=[t.id], handled=wait.id)


def woken(
    record: WorkflowRecord, t: ThreadState, holds: bool | BaseException, now: datetime
) -> Effects:
    """Thread ``t`` stands on a ``WaitFor`` whose condition was just evaluated: ``holds``, or
    what it raised (the thread fails: conditions are meant to be pure)."""
    if isinstance(holds, BaseException):
        return Effects(history=[fail(record, t, t.position, holds, now)])
    if not holds:
        return Effects()
    t.status, t.phase = ThreadStatus.RUNNING, Phase.DONE
    return Effects(history=[history_line(record, now, HistoryKind.WAITFOR_DONE, t.id, t.position)])


def renamed(
    record: WorkflowRecord, waits: list[WaitInfo], program: Program, now: datetime
) -> tuple[Effects, bool]:
    """Threads (and their open waits) follow the renames of ``program`` (``renamed=`` in the
    definition), and a new shape of the code is noted; whether a wait changed."""
    effects, waits_changed = Effects(), False
    aliases = program.aliases
    if aliases:
        for t in record.threads:
            new = program.resolve(t.position) if t.position else ""
            if new != t.position:
                effects.history.append(history_line(record, now, HistoryKind.RENAMED, t.id, new,
                                                    None, {"moved_from": t.position}))  # fmt: skip
                for w in waits:
                    if w.thread_id == t.id and w.wait == t.position:
                        w.wait = new
                        waits_changed = True
                t.position = new
            if t.go is not None and t.go in aliases and program.go(t.go) is None:
                t.go = aliases[t.go]
    was = record.fingerprint
    if was is not None and was != program.fingerprint:
        detail = {"moved_from": was, "fingerprint": program.fingerprint}
        effects.history.append(history_line(record, now, HistoryKind.CODE_CHANGED, detail=detail))
    return effects, waits_changed


def cancelled(
    record: WorkflowRecord,
    now: datetime,
    actor: str,
    reason: str | None,
    operation: str | None = None,
) -> Effects:
    """An operator stops the workflow for good: live threads cancelled, their waits closed.
    ``operation``: the bulk operation it is part of, kept in the history line."""
    bulk = {} if operation is None else {"operation": operation}
    line = operator_line(record, now, HistoryKind.CANCELLED, actor=actor, reason=reason, **bulk)
    effects = Effects(history=[line])
    for t in record.threads:
        if t.status.live:
            t.status = ThreadStatus.CANCELLED
            effects.close.append(t.id)
    record.status = WorkflowStatus.CANCELLED
    return effects


def retried(
    record: WorkflowRecord,
    now: datetime,
    actor: str,
    reason: str | None,
    operation: str | None = None,
) -> Effects:
    """An operator gives every failed thread fresh attempts where it failed. ``operation``:
    the bulk operation it is part of, kept in the history lines."""
    bulk = {} if operation is None else {"operation": operation}
    effects = Effects()
    for t in record.threads:
        if t.status is ThreadStatus.FAILED:
            effects.history.append(operator_line(record, now, HistoryKind.RETRIED, thread=t.id,
                                                 statement=t.position, actor=actor,
                                                 reason=reason, **bulk))  # fmt: skip
            t.status, t.attempts, t.retry_at, t.error = ThreadStatus.RUNNING, 0, None, None
    record.status = WorkflowStatus.RUNNING
    return effects


def moved(
    record: WorkflowRecord,
    t: ThreadState,
    statement: str,
    now: datetime,
    *,
    actor: str,
    reason: str | None,
    operation: str | None,
) -> Effects:
    """An operator moves thread ``t`` onto ``statement`` (checked to be one it may stand on):
    it runs from there, and the waits it leaves close."""
    line = operator_line(record, now, HistoryKind.GOTO, thread=t.id, statement=statement,
                         actor=actor, moved_from=t.position, reason=reason,
                         operation=operation)  # fmt: skip
    t.position, t.phase, t.status, t.event = statement, Phase.AT, ThreadStatus.RUNNING, None
    t.attempts, t.retry_at, t.error = 0, None, None
    if record.status is WorkflowStatus.FAILED:
        record.status = WorkflowStatus.RUNNING
    return Effects(history=[line], close=[t.id])
