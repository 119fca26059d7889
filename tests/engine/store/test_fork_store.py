"""Fork work never writes to the real store: every row of every table, before and after.

Runs on every backend (memory, SQLite, PostgreSQL with ``CI=true``).
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from sqlalchemy import MetaData, select

from engine import Engine, ManualClock, MemoryStore, PollingResumer, SQLModelStore, Store
from engine.examples.expense import ApprovalMessages, Chat, Expense


def every_row(store: Store) -> Any:
    """Everything the store holds, comparable with ``==``."""
    if isinstance(store, SQLModelStore):
        meta = MetaData()
        meta.reflect(store.engine)
        with store.engine.connect() as conn:
            return {
                name: sorted(
                    (tuple(repr(v) for v in row) for row in conn.execute(select(table))),
                )
                for name, table in sorted(meta.tables.items())
            }
    assert isinstance(store, MemoryStore)
    return copy.deepcopy(
        (store._workflows, store._waits, store._history, store._wait_owner, store._seq)
    )


def test_fork_work_leaves_every_row_of_the_real_store_as_it_was(store: Store) -> None:
    chat = Chat()
    real = Engine(
        store, [Expense], clock=ManualClock(), managers={"user_action": ApprovalMessages(chat)}
    )
    wid = real.new_workflow(Expense(amount=42, requester="ann"), "exp-1")
    other = real.new_workflow(Expense(amount=7), "exp-2")
    assert real.get(wid).status == "waiting"
    before, messages = every_row(store), dict(chat.messages)
    if isinstance(store, SQLModelStore):
        assert len(before["history"]) > 6 and len(before["waits"]) == 4  # rows were read

    approved = real.fork(wid)
    assert [w.setup_data for w in approved.pending_waits(wid) if w.type == "user_action"] == [
        {"channel": "#approvals", "message": "msg-1"}
    ]
    approved.on_callback(wid, "slackApproval", {"approved": True}, actor="bo")  # ann requested it
    assert approved.get(wid).result == {"approved": 42}

    denied = real.fork(wid, skip_steps=True)
    denied.on_callback(wid, "slackApproval", {"approved": False, "reason": "no"}, actor="bob")
    assert denied.get(wid).error == "workflow was not approved: no"

    sent = real.fork(wid)  # any event, as the inbox's "send" does
    sent.on_callback(wid, "timeout", None, actor="ops", thread="main")
    assert sent.get(wid).error == "workflow finished with timeout"

    timed = real.fork(wid, resumer=PollingResumer())
    assert isinstance(timed.clock, ManualClock)
    timed.clock.advance(timedelta(minutes=11))
    timed.run_due()
    assert timed.get(wid).error == "workflow finished with timeout"
    assert timed.sandbox is not None and timed.sandbox.ran == ["abort workflow"]

    moved = real.fork(wid, resumer=PollingResumer())
    moved.goto(wid, "main", "first action", actor="ops", reason="again")
    moved.step(wid)
    moved.execute(wid)
    assert moved.get(wid).status == "waiting"
    assert moved.sandbox is not None
    assert moved.sandbox.ran == ["first action", "parallel thread"]  # g1 started afresh
    moved.update_state(wid, {"amount": 1}, actor="ops")
    moved.cancel(wid, actor="ops")

    assert every_row(store) == before
    assert chat.messages == messages  # no recorder posted or edited a message
    assert real.get(wid).status == "waiting" and real.get(other).status == "waiting"
    assert len(real.history(wid)) == approved.sandbox.forked_at  # type: ignore[union-attr]


def test_the_timeline_replays_what_every_store_holds(store: Store) -> None:
    """The same replay from the history as each backend gives it back (kinds as plain
    strings, details as JSON): after every step the last point is the workflow as stored."""
    from engine import MAIN
    from tests.engine.test_timeline import FLAKY, Busy, agrees

    FLAKY["left"] = 1
    engine = Engine(store, [Busy], clock=ManualClock(), resumer=PollingResumer())
    wid = engine.new_workflow(Busy(crash=True), "b-store")
    for _ in range(10):
        engine.step(wid)
        agrees(engine, wid)
    assert isinstance(engine.clock, ManualClock)
    engine.clock.advance(timedelta(seconds=6))
    engine.execute(wid)
    agrees(engine, wid)
    engine.on_callback(wid, "ok", {"approved": True}, actor="ann")
    engine.execute(wid)
    agrees(engine, wid)
    assert engine.get(wid).status == "failed"  # the condition that raises
    engine.goto(wid, MAIN, "decide", actor="ops")
    agrees(engine, wid)
    points = engine.timeline(wid)
    retrying = next(p for p in points if p.entry.kind == "step_error").thread(MAIN)
    assert retrying is not None and retrying.attempts == 1 and retrying.retry_at is not None
    assert [p.entry.seq for p in points] == [h.seq for h in engine.history(wid)]
