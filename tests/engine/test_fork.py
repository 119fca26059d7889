"""``Engine.fork`` and ``Notebook.fork``/``show(at=)``: a sandbox copy that does nothing real."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine import (
    Engine,
    GorchError,
    InvalidOperation,
    ManagerCall,
    ManualClock,
    MemoryStore,
    PollingResumer,
    WorkflowNotFound,
)
from engine.examples.expense import ApprovalMessages, Chat, Expense
from engine.notebook import Notebook


@pytest.fixture
def chat() -> Chat:
    return Chat()


@pytest.fixture
def real(chat: Chat) -> Engine:
    return Engine(
        MemoryStore(),
        [Expense],
        clock=ManualClock(),
        managers={"user_action": ApprovalMessages(chat)},
    )


@pytest.fixture
def wid(real: Engine) -> str:
    return real.new_workflow(Expense(amount=42, requester="ann"), "exp-1")


def test_a_fork_is_a_copy_under_the_same_id_with_its_own_store_and_clock(
    real: Engine, wid: str
) -> None:
    real.clock.advance(timedelta(minutes=3))  # type: ignore[attr-defined]
    fork = real.fork(wid)
    assert fork.store is not real.store and fork.clock is not real.clock
    assert fork.clock.now() == real.clock.now()
    a, b = real.get(wid), fork.get(wid)
    assert (b.id, b.type, b.status, b.threads, b.pc) == (a.id, a.type, a.status, a.threads, a.pc)
    # the fork's model is a subclass of the real one (its steps report to the sandbox)
    assert isinstance(b.state, Expense) and b.state.model_dump() == a.state.model_dump()
    assert [(w.event, w.setup_data, w.due_at) for w in fork.pending_waits(wid)] == [
        (w.event, w.setup_data, w.due_at) for w in real.pending_waits(wid)
    ]
    assert [(h.kind, h.statement) for h in fork.history(wid)] == [
        (h.kind, h.statement) for h in real.history(wid)
    ]
    assert fork.sandbox is not None and fork.sandbox.origin == wid
    assert fork.sandbox.forked_at == len(real.history(wid))
    assert real.sandbox is None
    given = ManualClock()
    assert real.fork(wid, clock=given).clock is given


def test_recorders_set_nothing_up_and_tear_nothing_down(real: Engine, wid: str, chat: Chat) -> None:
    posted = dict(chat.messages)
    fork = real.fork(wid)
    fork.on_callback(wid, "slackApproval", {"approved": True}, actor="bo")  # ann requested it
    assert chat.messages == posted  # the real manager would have edited msg-1
    assert fork.sandbox is not None
    [call] = fork.sandbox.calls
    assert (call.call, call.type, call.event, call.handled) == (
        ManagerCall.TEARDOWN, "user_action", "slackApproval", True
    )  # fmt: skip
    again = real.fork(wid, resumer=PollingResumer())
    again.goto(wid, "main", "first action", actor="ops")
    again.execute(wid)
    assert again.sandbox is not None
    assert [c.call for c in again.sandbox.calls] == ["teardown", "setup"]
    assert [w.setup_data for w in again.pending_waits(wid, type="user_action")] == [None]


def test_skipped_steps_are_recorded_as_skipped_and_change_no_state(real: Engine, wid: str) -> None:
    fork = real.fork(wid, skip_steps=["abort workflow"], resumer=PollingResumer())
    assert isinstance(fork.clock, ManualClock)
    fork.clock.advance(timedelta(minutes=11))
    fork.run_due()
    info = fork.get(wid)
    assert info.error == "workflow finished with timeout"
    assert info.state.error == ""  # abort() would have set it
    assert fork.sandbox is not None and fork.sandbox.skipped == ["abort workflow"]
    assert fork.sandbox.ran == []
    [line] = [h for h in fork.history(wid) if h.statement == "abort workflow"]
    assert line.kind == "step" and line.detail == {"skipped": True}

    ran = real.fork(wid, resumer=PollingResumer())
    ran.clock.advance(timedelta(minutes=11))  # type: ignore[attr-defined]
    ran.run_due()
    assert ran.get(wid).state.error == "approval timed out"
    assert ran.sandbox is not None and ran.sandbox.ran == ["abort workflow"]
    assert [h.detail for h in ran.history(wid) if h.statement == "abort workflow"] == [{}]


def test_a_fork_of_a_fork_runs_the_real_code_once_under_its_own_skips(
    real: Engine, wid: str
) -> None:
    first = real.fork(wid, skip_steps=True, resumer=PollingResumer())
    second = first.fork(wid, resumer=PollingResumer())
    assert second.sandbox is not None and first.sandbox is not None
    second.goto(wid, "main", "first action", actor="ops")
    second.execute(wid)
    assert second.sandbox.ran == ["first action", "parallel thread"]
    assert first.sandbox.ran == first.sandbox.skipped == []
    assert first.get(wid).status == "waiting" and real.get(wid).status == "waiting"


def test_bad_input_raises_and_changes_nothing(real: Engine, wid: str) -> None:
    before = real.history(wid)
    with pytest.raises(WorkflowNotFound):
        real.fork("nope")
    with pytest.raises(WorkflowNotFound):
        real.fork("\x00")
    with pytest.raises(InvalidOperation, match="names no step"):
        real.fork(wid, skip_steps=["no such step"])
    with pytest.raises(InvalidOperation, match="skip_steps"):
        real.fork(wid, skip_steps=42)  # type: ignore[arg-type]
    assert real.history(wid) == before


def test_notebook_fork_and_show_at(real: Engine, wid: str) -> None:
    nb = Notebook(real)
    yes, no = nb.fork(wid), nb.fork(wid, skip_steps=True)
    assert yes.approve(wid).info.result == {"approved": 42}
    assert no.deny(wid, "too much").info.error == "workflow was not approved: too much"
    assert real.get(wid).status == "waiting"

    view = nb.show(wid, at=1)
    main = view.info.thread("main")
    assert main is not None and main.position == "first action"
    assert [h.kind for h in view.history] == ["created", "step"]
    assert "first action" in view.dot.source
    assert "exp-1 after history line 1 (step, 2026-01-01 00:00:00): running" in view.dot.source
    assert view._repr_mimebundle_()["text/plain"].startswith("Expense exp-1 after history line 1")
    last = nb.show(wid, at=-1)
    assert last.info.threads == real.get(wid).threads
    n = len(real.history(wid))
    for bad in (n, -n - 1, "1", True):
        with pytest.raises(GorchError, match="is not a line of the history"):
            nb.show(wid, at=bad)  # type: ignore[arg-type]
    table = nb.timeline(wid)
    assert len(table) == n and table.rows[1]["threads"] == "main: running after first action"

    polling = Notebook(Engine(real.store, [Expense], clock=real.clock, resumer=PollingResumer()))
    stepped = polling.fork(wid)
    assert isinstance(stepped.engine.resumer, PollingResumer)
    stepped.goto(wid, "main", "first action")
    assert stepped.step(wid).info.thread("main").position == "first action"  # type: ignore[union-attr]
