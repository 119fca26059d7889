"""What callbacks and operators do to a workflow, inside the session that holds its lease.

``Engine`` opens a ``Session``, calls one of these, and schedules what follows.
Each either raises before writing anything or ends with one checkpoint that records the
change together with who made it and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from engine._definition.compiler import POSITIONABLE
from engine._definition.decisions import assignees_of, excluded_of
from engine._definition.statements import Wait
from engine._definition.workflow import Workflow
from engine._interpreter import _current_thread, _current_wait, run_callable
from engine._jsonsafe import check_value, describe_error
from engine._records import (
    HistoryKind,
    ThreadStatus,
    WorkflowStatus,
    person_key,
    refusal,
)
from engine._session.reduce import cancelled, handled, history_line, moved, retried
from engine._session.runner import Session, try_load_state
from engine._state import describe_validation, state_data, undeclared_fields, validate_state
from engine.errors import (
    CallbackRejected,
    DefinitionMismatch,
    GorchError,
    InvalidOperation,
    InvalidOutput,
    NotPermitted,
    RejectReason,
    StateError,
)


def deliver(
    run: Session,
    event: str,
    input: Any,
    *,
    actor: str | None,
    thread: str | None,
    pc: int | None,
    roles: tuple[str, ...] = (),
) -> Any:
    """Run the handler of the open wait for ``event`` and checkpoint the winning case.

    Raises:
        CallbackRejected: finished workflow, no such open wait, stale pc, ambiguous thread,
            invalid input or a failing handler; nothing is written.
        NotPermitted: ``actor`` (with ``roles``) may not decide the wait; nothing changes but
            the history, which records the refusal.
        DefinitionMismatch: the wait or its case is gone from the code; nothing is written.
    """
    rec, wid = run.record, run.record.id

    def reject(msg: str, reason: RejectReason, **kw: Any) -> CallbackRejected:
        return CallbackRejected(msg, reason=reason, workflow_id=wid, event=event, **kw)

    if rec.status.done:
        raise reject(f"workflow {wid!r} is {rec.status.value}", RejectReason.FINISHED)
    open_waits = [w for w in run.waits if w.status.open]
    found = [
        w for w in open_waits if w.event == event and (thread is None or w.thread_id == thread)
    ]
    if not found:
        pending = sorted({f"{w.event} ({w.thread_id})" for w in open_waits}) or ["none"]
        raise reject(
            f"workflow {wid!r} has no open wait for event {event!r}"
            + (f" in thread {thread!r}" if thread else "")
            + f"; pending: {', '.join(pending)}",
            RejectReason.NO_WAIT,
            thread=thread,
        )
    if len(found) > 1:
        raise reject(
            f"threads {', '.join(w.thread_id for w in found)} all wait for {event!r}: pass thread=",
            RejectReason.AMBIGUOUS,
        )
    w = found[0]
    if pc is not None and pc != w.pc:
        raise reject(
            f"stale callback: wait {w.wait!r} is at pc {w.pc}, not {pc}",
            RejectReason.STALE_PC,
            thread=w.thread_id,
            statement=w.wait,
        )
    t = rec.thread(w.thread_id)
    if t is None or t.status is not ThreadStatus.WAITING or t.position != w.wait:
        raise reject(
            f"wait {w.wait!r} of thread {w.thread_id!r} is no longer pending (the thread "
            f"stands {'nowhere' if t is None else t.status.value + ' at ' + repr(t.position)})",
            RejectReason.NO_WAIT,
            thread=w.thread_id,
            statement=w.wait,
        )
    entry = run.program.entry(w.wait)
    case = entry.stmt.case(event) if entry and isinstance(entry.stmt, Wait) else None
    if t is None or case is None:
        raise DefinitionMismatch(
            f"wait {w.wait!r} with event {event!r} is gone from the current definition",
            workflow_id=wid,
            thread=w.thread_id,
            statement=w.wait,
        )
    permitted(run, case.handler, w.wait, t.id, event, actor, roles)
    token, wait_token = _current_thread.set(t.id), _current_wait.set(w.copy())
    try:
        output = run_callable(case.handler.handle, input)
    except GorchError as e:
        e.workflow_id = e.workflow_id or wid
        e.thread, e.statement = e.thread or t.id, e.statement or w.wait
        if isinstance(e, CallbackRejected):
            e.event = e.event or event
        raise
    except Exception as e:
        raise reject(
            f"handler of {event!r} raised {describe_error(e)}",
            RejectReason.HANDLER_ERROR,
            thread=t.id,
            statement=w.wait,
        ) from e
    finally:
        _current_wait.reset(wait_token)
        _current_thread.reset(token)
    try:  # stored in the history as JSON: NaN or NUL would fail on PostgreSQL alone
        check_value(output, run.max_state_bytes)
    except ValueError as e:
        raise InvalidOutput(
            f"the output of the handler of {event!r} cannot be stored as JSON: {e}",
            workflow_id=wid,
            event=event,
            thread=t.id,
            statement=w.wait,
        ) from None
    run.carry_out(t, handled(rec, t, w, run.clock.now(), actor=actor, input=input, output=output))
    run.checkpoint()
    return output


def permitted(
    run: Session,
    handler: Any,
    wait: str,
    thread: str,
    event: str,
    actor: str | None,
    roles: tuple[str, ...],
) -> None:
    """Refuse ``actor`` if the live definition and state do not let them decide this wait:
    not among its assignees, or excluded by the workflow (separation of duties).

    The refusal is written to the history at once (outside a checkpoint: nothing else
    changes) and raised as ``NotPermitted``.
    """
    assignees = assignees_of(handler)
    if assignees is None:
        return  # no person decides it (a timer, a handler of your own)
    wid = run.record.id
    try:
        excluded = excluded_of(run.model)
    except Exception as e:  # fail closed: who may not decide is unknown
        why: str | None = f"{run.cls.__name__}.excluded_actors() raised {describe_error(e)}"
        reason = RejectReason.EXCLUDED
    else:
        why = refusal(assignees, excluded, actor, roles)
        out = actor is not None and person_key(actor) in {person_key(x) for x in excluded}
        reason = RejectReason.EXCLUDED if out else RejectReason.NOT_ASSIGNED
    if why is None:
        return
    line = history_line(run.record, run.clock.now(), HistoryKind.CALLBACK_REFUSED, thread, wait,
                        actor, {"event": event, "refused": reason.value, "reason": why,
                                "roles": list(roles) or None})  # fmt: skip
    line.pc = run.record.pc
    run.store.append_history([line], owner=run.owner)
    raise NotPermitted(
        f"{why}; nothing was changed",
        reason=reason,
        workflow_id=wid,
        event=event,
        thread=thread,
        statement=wait,
    )


def done_check(run: Session) -> None:
    """Raise ``InvalidOperation`` if the workflow is finished or cancelled."""
    if run.record.status.done:
        raise InvalidOperation(
            f"workflow {run.record.id!r} is {run.record.status.value}",
            workflow_id=run.record.id,
        )


def cancel(run: Session, actor: str, reason: str | None, operation: str | None = None) -> None:
    """Stop the workflow for good: live threads cancelled, waits torn down.

    ``operation``: the id of the bulk operation it is part of, kept in the history line.
    """
    done_check(run)
    run.carry_out(None, cancelled(run.record, run.clock.now(), actor, reason, operation))
    run.checkpoint()


def retry(run: Session, actor: str, reason: str | None, operation: str | None = None) -> None:
    """Give every failed thread fresh attempts at the statement where it failed.

    ``operation``: the id of the bulk operation it is part of, kept in the history lines.
    """
    rec = run.record
    failed = [t for t in rec.threads if t.status is ThreadStatus.FAILED]
    if rec.status is not WorkflowStatus.FAILED or not failed:
        raise InvalidOperation(
            f"workflow {rec.id!r} is {rec.status.value}, not failed: nothing to retry",
            workflow_id=rec.id,
        )
    run.carry_out(None, retried(rec, run.clock.now(), actor, reason, operation))
    run.checkpoint()


def goto(
    run: Session,
    thread: str,
    statement: str,
    actor: str,
    reason: str | None,
    operation: str | None,
) -> None:
    """Move ``thread`` onto ``statement``, tearing down the waits it leaves."""
    done_check(run)
    rec, workflow_id = run.record, run.record.id
    t = rec.thread(thread)
    if t is None:
        raise InvalidOperation(
            f"workflow {workflow_id!r} has no thread {thread!r} "
            f"(threads: {', '.join(x.id for x in rec.threads)})",
            workflow_id=workflow_id,
            thread=thread,
        )
    entry = run.program.index.get(statement)
    if entry is None or not isinstance(entry.stmt, POSITIONABLE):
        raise InvalidOperation(
            f"{statement!r} is not a named step, wait, loop, branch or Go of the current "
            "definition",
            workflow_id=workflow_id,
            thread=thread,
            statement=statement,
        )
    if entry.thread != t.go:
        raise InvalidOperation(
            f"{statement!r} belongs to "
            + (f"goroutine {entry.thread!r}" if entry.thread else "the main thread")
            + f", not to thread {thread!r}",
            workflow_id=workflow_id,
            thread=thread,
            statement=statement,
        )
    effects = moved(rec, t, statement, run.clock.now(), actor=actor, reason=reason,
                    operation=operation)  # fmt: skip
    run.carry_out(t, effects)
    run.checkpoint()


def update_state(
    run: Session, state: Mapping[str, Any] | Workflow, actor: str, reason: str | None
) -> bool:
    """Replace the state through the model's validation; False if nothing changed.

    The stored state need not load (``run.repair``): this is how an operator repairs a state
    that no longer fits the model. The new one must fit it, hold no field the model does not
    declare, be storable (size, NaN, NUL, ...) and load back as it will be stored.
    """
    done_check(run)
    rec = run.record
    data = state_data(state) if isinstance(state, Workflow) else dict(state)
    unknown = undeclared_fields(run.cls, data)  # pydantic would drop them silently
    if unknown:
        raise StateError(
            f"new state of workflow {rec.id!r} has {', '.join(map(repr, unknown))}, which "
            f"{run.cls.__name__} does not declare: remove or rename it (state is keyed by "
            "field name, not alias)",
            workflow_id=rec.id,
        )
    try:
        model = validate_state(run.cls, data)
    except ValidationError as e:
        raise StateError(
            f"new state of workflow {rec.id!r} does not fit {run.cls.__name__}: "
            + describe_validation(e),
            workflow_id=rec.id,
        ) from None
    except RecursionError:
        raise StateError(
            f"new state of workflow {rec.id!r} is nested too deeply", workflow_id=rec.id
        ) from None
    run.use_model(model)
    after = run.dump_state()  # StateError if a store cannot hold it: nothing written yet
    back = try_load_state(run.cls, replace(rec, state=after))
    if isinstance(back, StateError):
        raise StateError(
            f"new state of workflow {rec.id!r} would not load back as stored: {back.message}",
            workflow_id=rec.id,
        )
    run.check_positions()  # the program is built from the new state: nothing written yet
    keys = sorted(set(rec.state) | set(after))
    changed = {
        k: [rec.state.get(k), after.get(k)] for k in keys if rec.state.get(k) != after.get(k)
    }
    if not changed:
        return False
    repaired = run.state_error.message if run.state_error is not None else None
    run.note(
        HistoryKind.STATE_UPDATED, actor=actor, reason=reason, changed=changed, repaired=repaired
    )
    run.wake_waitfors()  # a WaitFor may hold now: it becomes due for whoever polls
    run.checkpoint()
    return True
