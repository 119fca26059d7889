"""The pure reducers of what does not come from the interpreter: a callback's winning case,
a woken ``WaitFor``, renames, operator actions, and the waits that need no teardown."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine import InvalidOperation, On, S, Step, Wait, WaitForUserAction, WaitStatus, Workflow
from engine._definition.compiler import build_traced
from engine._definition.statements import Section
from engine._records import (
    MAIN,
    HistoryKind,
    Phase,
    ThreadState,
    ThreadStatus,
    WaitInfo,
    WorkflowRecord,
    WorkflowStatus,
)
from engine._session.reduce import (
    armed,
    cancelled,
    close_waits,
    handled,
    moved,
    renamed,
    retried,
    without_teardown,
    woken,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def noop() -> None:
    return None


USER = WaitForUserAction(noop, lambda reason: None)


def record(
    *threads: ThreadState, status: WorkflowStatus = WorkflowStatus.RUNNING
) -> WorkflowRecord:
    return WorkflowRecord("wf-1", "T", status, {"x": 1}, list(threads) or [ThreadState(MAIN)],
                          NOW, NOW, pc=4)  # fmt: skip


def waits_of(rec: WorkflowRecord, t: ThreadState, *events: str) -> list[WaitInfo]:
    ids = iter(f"{t.id}-{e}" for e in events)
    wait = Wait("w", *(On(e, USER) for e in events))
    return armed(rec, t, wait, NOW, {"user_action"}, new_id=lambda: next(ids))


def test_a_callback_moves_the_thread_into_the_winning_case_and_closes_the_rest() -> None:
    rec = record(ThreadState(MAIN, position="w", status=ThreadStatus.WAITING))
    t = rec.threads[0]
    waits = waits_of(rec, t, "ok", "no")
    effects = handled(rec, t, waits[1], NOW, actor="ana", input={"a": 1}, output=2)
    assert (t.position, t.phase, t.event, t.status) == ("w", Phase.HANDLED, "no",
                                                        ThreadStatus.RUNNING)  # fmt: skip
    assert (effects.close, effects.handled) == ([MAIN], "main-no")
    (line,) = effects.history
    assert (line.kind, line.thread, line.statement, line.actor) == (
        HistoryKind.CALLBACK, MAIN, "w", "ana")  # fmt: skip
    assert line.detail == {"event": "no", "input": {"a": 1}, "output": 2}


def test_an_actor_a_store_cannot_hold_changes_nothing() -> None:
    rec = record(ThreadState(MAIN, status=ThreadStatus.FAILED))
    with pytest.raises(InvalidOperation):
        cancelled(rec, NOW, "bad\x00actor", None)
    with pytest.raises(InvalidOperation):
        retried(rec, NOW, "ana", "reason \ud800")
    assert rec.status is WorkflowStatus.RUNNING and rec.threads[0].status is ThreadStatus.FAILED


def test_a_waitfor_that_holds_wakes_its_thread_one_that_raises_fails_it() -> None:
    rec = record(ThreadState(MAIN, position="wf", status=ThreadStatus.WAITING),
                 ThreadState("g", go="g", position="wg", status=ThreadStatus.WAITING))  # fmt: skip
    main, g = rec.threads
    assert woken(rec, main, False, NOW).history == [] and main.status is ThreadStatus.WAITING
    effects = woken(rec, main, True, NOW)
    assert (main.status, main.phase) == (ThreadStatus.RUNNING, Phase.DONE)
    assert [(e.kind, e.statement) for e in effects.history] == [(HistoryKind.WAITFOR_DONE, "wf")]
    effects = woken(rec, g, ValueError("cond broke"), NOW)
    assert g.status is ThreadStatus.FAILED and "cond broke" in (g.error or "")
    assert [(e.kind, e.statement) for e in effects.history] == [(HistoryKind.THREAD_FAILED, "wg")]


class Renamed(Workflow):
    def definition(self) -> Section:
        return S(
            Step("new name", noop), Wait("ask", On("ok", USER)), renamed={"old name": "new name"}
        )


def test_threads_and_their_waits_follow_a_rename_and_a_new_shape_is_noted() -> None:
    program, _ = build_traced(Renamed(), "wf-1", None)
    rec = record(ThreadState(MAIN, position="old name", phase=Phase.DONE))
    rec.fingerprint = "an older shape"
    t = rec.threads[0]
    others = waits_of(rec, ThreadState("g", go="g"), "ok")
    effects, changed = renamed(rec, others, program, NOW)
    assert t.position == "new name" and not changed  # the waits are another thread's
    assert [(e.kind, e.statement, e.detail) for e in effects.history] == [
        (HistoryKind.RENAMED, "new name", {"moved_from": "old name"}),
        (HistoryKind.CODE_CHANGED, None,
         {"moved_from": "an older shape", "fingerprint": program.fingerprint}),
    ]  # fmt: skip
    rec.fingerprint = program.fingerprint
    assert renamed(rec, others, program, NOW) == (renamed(rec, [], program, NOW)[0], False)


def test_cancel_stops_live_threads_closes_their_waits_and_the_workflow() -> None:
    rec = record(ThreadState(MAIN, status=ThreadStatus.WAITING),
                 ThreadState("g", go="g", status=ThreadStatus.FINISHED))  # fmt: skip
    effects = cancelled(rec, NOW, "ana", "no longer needed")
    assert [t.status for t in rec.threads] == [ThreadStatus.CANCELLED, ThreadStatus.FINISHED]
    assert rec.status is WorkflowStatus.CANCELLED and effects.close == [MAIN]
    (line,) = effects.history
    assert (line.kind, line.actor, line.detail) == (
        HistoryKind.CANCELLED, "ana", {"reason": "no longer needed"})  # fmt: skip


def test_retry_gives_each_failed_thread_fresh_attempts() -> None:
    rec = record(ThreadState(MAIN, position="a", status=ThreadStatus.FAILED, attempts=3,
                             error="boom"),
                 ThreadState("g", go="g", position="b", status=ThreadStatus.WAITING),
                 status=WorkflowStatus.FAILED)  # fmt: skip
    effects = retried(rec, NOW, "ana", None)
    main, g = rec.threads
    assert (main.status, main.attempts, main.error) == (ThreadStatus.RUNNING, 0, None)
    assert g.status is ThreadStatus.WAITING and rec.status is WorkflowStatus.RUNNING
    assert [(e.kind, e.thread, e.statement) for e in effects.history] == [
        (HistoryKind.RETRIED, MAIN, "a")]  # fmt: skip


def test_goto_puts_the_thread_before_the_statement_and_closes_what_it_left() -> None:
    rec = record(ThreadState(MAIN, position="w", status=ThreadStatus.FAILED, attempts=2,
                             event="ok", error="boom"), status=WorkflowStatus.FAILED)  # fmt: skip
    t = rec.threads[0]
    effects = moved(rec, t, "a", NOW, actor="ana", reason="redo", operation="op-1")
    assert (t.position, t.phase, t.status, t.event, t.attempts, t.error) == (
        "a", Phase.AT, ThreadStatus.RUNNING, None, 0, None)  # fmt: skip
    assert rec.status is WorkflowStatus.RUNNING and effects.close == [MAIN]
    (line,) = effects.history
    assert line.detail == {"moved_from": "w", "reason": "redo", "operation": "op-1"}


def test_closed_waits_without_a_manager_are_dropped_managed_ones_kept_for_teardown() -> None:
    rec = record()
    t = rec.threads[0]
    waits = waits_of(rec, t, "ok", "no")
    waits[1].type = "timeout"  # no manager tears a timer down
    close_waits(waits, MAIN, "main-ok", NOW)
    left = without_teardown(waits, {"user_action"})
    assert [(w.id, w.status) for w in left] == [("main-ok", WaitStatus.PENDING_TEARDOWN)]
    assert without_teardown(waits_of(rec, t, "x"), set())  # open waits always stay
