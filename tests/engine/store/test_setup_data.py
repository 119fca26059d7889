"""Set-up data on every backend: what a manager's ``setup`` returns is kept with the wait,
handed to ``teardown`` and to the handler; data a store cannot keep fails the set-up."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine import (
    Engine,
    ManualClock,
    On,
    PollingResumer,
    S,
    Section,
    Store,
    Wait,
    WaitForUserAction,
    WaitInfo,
    WaitStatus,
    Workflow,
    WorkflowStatus,
    current_wait,
)
from engine.examples import ApprovalMessages, Chat, Expense


def expense_engine(store: Store, chat: Chat, **kw: Any) -> Engine:
    return Engine(store, [Expense], clock=ManualClock(),
                  managers={"user_action": ApprovalMessages(chat)}, **kw)  # fmt: skip


def approval(engine: Engine, wid: str) -> WaitInfo:
    return next(w for w in engine.store.load_waits(wid) if w.event == "slackApproval")


@pytest.mark.parametrize(
    ("outcome", "text"),
    [("approve", "answered"), ("timeout", "closed: no longer needed"),
     ("cancel", "closed: no longer needed")],
)  # fmt: skip
def test_the_expense_manager_updates_the_message_it_posted(
    store: Store, outcome: str, text: str
) -> None:
    chat = Chat()
    engine = expense_engine(store, chat)
    wid = engine.new_workflow(Expense(amount=120, requester="ann"), "e-1")
    [(posted, (channel, asked))] = chat.messages.items()
    assert channel == "#approvals" and "needs your approval" in asked
    w = approval(engine, wid)
    assert w.status is WaitStatus.SET_UP
    assert w.setup_data == {"channel": "#approvals", "message": posted}
    inbox = {x.event: x.setup_data for x in engine.pending_waits(wid)}  # the inbox shows it
    assert inbox == {"slackApproval": w.setup_data, "timeout": None}  # a timer: no manager
    if outcome == "approve":
        engine.on_callback(wid, "slackApproval", {"approved": True}, actor="bo")
    elif outcome == "timeout":
        engine.clock.advance(timedelta(minutes=11))  # type: ignore[attr-defined]
        engine.run_due()
    else:
        engine.cancel(wid, actor="ops")
    assert chat.messages == {posted: ("#approvals", f"e-1: {text}")}  # edited, none new
    assert engine.store.load_waits(wid) == []
    assert engine.get(wid).status in (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED)


class Ask(Workflow):
    """A handler that reads its wait's set-up data."""

    seen: Any = None

    def definition(self) -> Section:
        return S(Wait("ask", On("answer", WaitForUserAction(approve=self.yes, deny=self.no))))

    def yes(self) -> None:
        w = current_wait()
        self.seen = None if w is None else [w.event, w.setup_data]

    def no(self, reason: str) -> None:
        self.seen = reason


class Returns:
    """A manager whose ``setup`` returns what it is given, one value per call."""

    def __init__(self, *values: Any) -> None:
        self.values = list(values)
        self.torn: list[Any] = []

    def setup(self, wait: WaitInfo) -> Any:
        return self.values.pop(0)

    def teardown(self, wait: WaitInfo, handled: bool) -> None:
        self.torn.append(wait.setup_data)


def test_a_handler_reads_the_set_up_data_through_current_wait(store: Store) -> None:
    manager = Returns({"ticket": 42, "tags": ["a", "b"]})
    engine = Engine(store, [Ask], clock=ManualClock(), managers={"user_action": manager})
    wid = engine.new_workflow(Ask(), "a-1")
    assert current_wait() is None  # only while a handler runs
    engine.on_callback(wid, "answer", {"approved": True})
    assert engine.get(wid).state.seen == ["answer", {"ticket": 42, "tags": ["a", "b"]}]
    assert manager.torn == [{"ticket": 42, "tags": ["a", "b"]}]
    assert current_wait() is None


def test_a_manager_that_returns_nothing_keeps_nothing(store: Store) -> None:
    manager = Returns(None)
    engine = Engine(store, [Ask], clock=ManualClock(), managers={"user_action": manager})
    wid = engine.new_workflow(Ask(), "a-1")
    w = store.load_waits(wid)[0]
    assert (w.status, w.setup_data) == (WaitStatus.SET_UP, None)
    engine.on_callback(wid, "answer", {"approved": True})
    assert engine.get(wid).state.seen == ["answer", None] and manager.torn == [None]


BAD = {
    "tuple": ((1, 2), "is not plain JSON data"),
    "datetime": (datetime(2026, 1, 1, tzinfo=UTC), "is not plain JSON data"),
    "int keys": ({1: "one"}, "is not plain JSON data"),
    "object": (object(), "is not plain JSON data"),
    "nan": ({"x": math.nan}, "NaN"),
    "infinity": ([math.inf], "Infinity"),
    "nul": ({"text": "a\x00b"}, "NUL"),
    "too big": ("x" * 200, "over the limit of 100"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_set_up_data_a_store_cannot_keep_fails_the_set_up_and_is_retried(
    store: Store, case: str
) -> None:
    bad, why = BAD[case]
    manager = Returns(bad, {"ok": 1})
    engine = Engine(store, [Ask], clock=ManualClock(), managers={"user_action": manager},
                    resumer=PollingResumer(), max_input_bytes=100)  # fmt: skip
    wid = engine.new_workflow(Ask(), "a-1")
    engine.execute(wid)
    before = store.load(wid)
    w = store.load_waits(wid)[0]
    assert (w.status, w.attempts, w.setup_data) == (WaitStatus.SETUP_ERROR, 1, None)
    assert w.error is not None and w.error.startswith("SetupDataError: setup of wait 'ask'")
    assert why in w.error
    [err] = [h for h in store.history(wid) if h.kind == "setup_error"]
    assert err.detail["error"] == w.error
    # Nothing else changed: the workflow is as its checkpoint left it; the wait still waits.
    after = store.load(wid)
    assert (after.state, after.threads, after.version) == (before.state, before.threads,
                                                            before.version)  # fmt: skip
    assert [x.event for x in engine.pending_waits(wid)] == ["answer"]
    engine.clock.advance(timedelta(seconds=5))  # type: ignore[attr-defined]
    engine.run_due()  # retried like any failed set-up
    w = store.load_waits(wid)[0]
    assert (w.status, w.setup_data, w.error) == (WaitStatus.SET_UP, {"ok": 1}, None)
