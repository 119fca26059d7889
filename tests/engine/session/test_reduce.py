"""The session's pure reducer: an interpreter outcome in, the changes to make out; no store."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from engine import (
    On,
    RetryPolicy,
    S,
    Step,
    StepTimeout,
    Timeout,
    Wait,
    WaitFor,
    WaitForUserAction,
    WaitStatus,
)
from engine._definition.handlers import HandlerType
from engine._definition.statements import Go
from engine._interpreter import (
    Blocked,
    BlockedFor,
    Crashed,
    Ended,
    GoStart,
    Returned,
    StepRaised,
    StepRan,
)
from engine._records import (
    MAIN,
    HistoryKind,
    Phase,
    ThreadState,
    ThreadStatus,
    WorkflowRecord,
    WorkflowStatus,
)
from engine._session.reduce import Effects, armed, close_waits, reduce

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RETRY = RetryPolicy(max_attempts=3, initial_interval=timedelta(seconds=2))


def noop() -> None:
    return None


USER = WaitForUserAction(noop, lambda reason: None)


def record(*threads: ThreadState) -> WorkflowRecord:
    return WorkflowRecord(
        "wf-1",
        "T",
        WorkflowStatus.RUNNING,
        {"x": 1},
        list(threads) or [ThreadState(MAIN)],
        NOW,
        NOW,
        pc=4,
    )


def kinds(effects: Effects) -> list[HistoryKind]:
    return [e.kind for e in effects.history]


def test_a_step_that_ran_moves_the_thread_past_it_and_writes_one_line() -> None:
    rec = record(ThreadState(MAIN, attempts=2, error="boom", retry_at=NOW))
    t = rec.threads[0]
    effects = reduce(rec, t, StepRan(Step("a", noop), 7), now=NOW, retry=RETRY)
    assert (t.position, t.phase, t.attempts, t.error, t.retry_at) == ("a", Phase.DONE, 0, None,
                                                                      None)  # fmt: skip
    assert kinds(effects) == [HistoryKind.STEP]
    line = effects.history[0]
    assert (line.workflow_id, line.at, line.thread, line.statement) == ("wf-1", NOW, MAIN, "a")
    assert line.pc == 0  # the checkpoint that writes it sets it
    assert not effects.restore and effects.abandoned is None
    assert effects.arm is None and effects.close == []
    assert rec.state == {"x": 1} and rec.status is WorkflowStatus.RUNNING


def test_a_step_that_raised_is_retried_by_its_policy_and_its_changes_thrown_away() -> None:
    rec = record()
    t = rec.threads[0]
    effects = reduce(rec, t, StepRaised(Step("a", noop), ValueError("no")), now=NOW, retry=RETRY)
    assert effects.restore and effects.abandoned is False
    assert (t.position, t.phase, t.status, t.attempts) == ("a", Phase.AT, ThreadStatus.RUNNING, 1)
    assert t.retry_at == NOW + timedelta(seconds=2) and t.error is not None and "no" in t.error
    assert kinds(effects) == [HistoryKind.STEP_ERROR]
    assert effects.history[0].detail["attempt"] == 1


def test_a_step_out_of_attempts_fails_its_thread_and_a_timeout_ends_the_session() -> None:
    rec = record(ThreadState(MAIN, position="a", attempts=2))
    t = rec.threads[0]
    step = Step("a", noop, retry=RetryPolicy(max_attempts=3))
    timeout = StepTimeout("slow", timeout=1.0)
    effects = reduce(rec, t, StepRaised(step, timeout), now=NOW, retry=RETRY)
    assert effects.restore and effects.abandoned is True
    assert t.status is ThreadStatus.FAILED and t.retry_at is None and t.attempts == 3
    assert kinds(effects) == [HistoryKind.THREAD_FAILED]
    assert "traceback" in effects.history[0].detail


def test_a_crash_fails_the_thread_at_the_statement_that_raised() -> None:
    rec = record()
    t = rec.threads[0]
    effects = reduce(rec, t, Crashed("if", ZeroDivisionError("x")), now=NOW, retry=RETRY)
    assert effects.restore and effects.abandoned is None
    assert t.status is ThreadStatus.FAILED
    assert [(e.kind, e.statement) for e in effects.history] == [(HistoryKind.THREAD_FAILED, "if")]


def test_go_starts_a_thread_once_and_refuses_a_live_id() -> None:
    rec = record()
    t = rec.threads[0]
    go = Go("g", S(Step("g1", noop)), id="worker")
    effects = reduce(rec, t, GoStart(go, "worker"), now=NOW, retry=RETRY)
    assert [x.id for x in rec.threads] == [MAIN, "worker"] and rec.threads[1].go == "g"
    assert (t.position, t.phase) == ("g", Phase.DONE)
    assert kinds(effects) == [HistoryKind.GO]
    assert effects.history[0].detail == {"started": "worker"}
    # The same id again, while that thread lives: the starting thread fails, nothing is added.
    again = reduce(rec, t, GoStart(go, "worker"), now=NOW, retry=RETRY)
    assert len(rec.threads) == 2 and t.status is ThreadStatus.FAILED
    assert kinds(again) == [HistoryKind.THREAD_FAILED]


def test_a_wait_asks_for_its_cases_to_be_armed() -> None:
    rec = record()
    t = rec.threads[0]
    wait = Wait("w", On("e", Timeout(timedelta(seconds=1))), On("f", Timeout(timedelta(1))))
    effects = reduce(rec, t, Blocked(wait), now=NOW, retry=RETRY)
    assert effects.arm is wait and effects.close == []
    assert (t.position, t.phase, t.status) == ("w", Phase.AT, ThreadStatus.WAITING)
    assert kinds(effects) == [HistoryKind.WAIT]
    assert effects.history[0].detail == {"events": ["e", "f"]}


def test_a_waitfor_that_does_not_hold_parks_the_thread_without_waits() -> None:
    rec = record()
    t = rec.threads[0]
    effects = reduce(rec, t, BlockedFor(WaitFor("wf", False)), now=NOW, retry=RETRY)
    assert effects.arm is None
    assert (t.position, t.status) == ("wf", ThreadStatus.WAITING)
    assert kinds(effects) == [HistoryKind.WAITFOR]


def test_main_returning_finishes_the_workflow_and_closes_every_live_threads_waits() -> None:
    rec = record(
        ThreadState(MAIN),
        ThreadState("g1", go="g", status=ThreadStatus.WAITING),
        ThreadState("g2", go="g", status=ThreadStatus.FINISHED),
    )
    main = rec.threads[0]
    effects = reduce(rec, main, Returned({"ok": 1}, None), now=NOW, retry=RETRY)
    assert main.status is ThreadStatus.FINISHED
    assert rec.threads[1].status is ThreadStatus.CANCELLED
    assert rec.threads[2].status is ThreadStatus.FINISHED
    assert effects.close == ["g1"]
    assert rec.status is WorkflowStatus.FINISHED and rec.result == {"ok": 1} and rec.error is None
    assert kinds(effects) == [HistoryKind.RETURN, HistoryKind.FINISHED]
    assert effects.history[1].detail == {"result": {"ok": 1}}


def test_a_return_value_that_cannot_be_stored_fails_the_thread_and_writes_nothing_of_it() -> None:
    rec = record(ThreadState(MAIN, position="r"))
    t = rec.threads[0]
    effects = reduce(rec, t, Returned(math.nan, None), now=NOW, retry=RETRY)
    assert t.status is ThreadStatus.FAILED and "InvalidResult" in (t.error or "")
    assert rec.status is WorkflowStatus.RUNNING and rec.result is None
    assert [(e.kind, e.statement) for e in effects.history] == [(HistoryKind.THREAD_FAILED, "r")]


def test_a_goroutine_ending_finishes_the_workflow_only_when_it_was_the_last() -> None:
    rec = record(ThreadState(MAIN, status=ThreadStatus.WAITING), ThreadState("g", go="g"))
    g = rec.threads[1]
    effects = reduce(rec, g, Ended(), now=NOW, retry=RETRY)
    assert g.status is ThreadStatus.FINISHED and rec.status is WorkflowStatus.RUNNING
    assert kinds(effects) == [HistoryKind.THREAD_END]
    rec.threads[0].status = ThreadStatus.FINISHED
    h = ThreadState("h", go="g")
    rec.threads.append(h)
    last = reduce(rec, h, Ended(), now=NOW, retry=RETRY)
    assert rec.status is WorkflowStatus.FINISHED and rec.result is None
    assert kinds(last) == [HistoryKind.THREAD_END, HistoryKind.FINISHED] and last.close == []


def test_armed_makes_one_wait_per_case_managed_ones_pending_their_set_up() -> None:
    rec = record()
    t = rec.threads[0]
    wait = Wait("w", On("timer", Timeout(timedelta(seconds=5))), On("ok", USER))
    ids = iter(["id-1", "id-2"])
    made = armed(rec, t, wait, NOW, {HandlerType.USER_ACTION}, new_id=lambda: next(ids))
    assert [(w.id, w.event, w.wait, w.thread_id, w.pc) for w in made] == [
        ("id-1", "timer", "w", MAIN, 5),
        ("id-2", "ok", "w", MAIN, 5),
    ]
    timer, user = made
    assert timer.status is WaitStatus.SET_UP and timer.retry_at is None
    assert timer.due_at == NOW + timedelta(seconds=5)
    assert user.status is WaitStatus.PENDING_SETUP and user.retry_at == NOW and user.due_at is None


def test_close_waits_marks_only_that_threads_open_waits_and_names_the_winner() -> None:
    rec = record(ThreadState(MAIN), ThreadState("g", go="g"))
    wait = Wait("w", On("a", USER), On("b", USER))
    ids = iter(["a", "b", "c", "d"])
    waits = armed(rec, rec.threads[0], wait, NOW, set(), new_id=lambda: next(ids))
    waits += armed(rec, rec.threads[1], wait, NOW, set(), new_id=lambda: next(ids))
    later = NOW + timedelta(minutes=1)
    close_waits(waits, MAIN, "b", later)
    assert [(w.id, w.status, w.handled, w.retry_at) for w in waits] == [
        ("a", WaitStatus.PENDING_TEARDOWN, False, later),
        ("b", WaitStatus.PENDING_TEARDOWN, True, later),
        ("c", WaitStatus.SET_UP, False, None),
        ("d", WaitStatus.SET_UP, False, None),
    ]
