"""Operator actions: cancel, retry and goto, each recorded with its actor."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from engine import (
    CallbackRejected,
    Engine,
    Go,
    InvalidOperation,
    ManualClock,
    On,
    RetryPolicy,
    Return,
    S,
    Step,
    ThreadStatus,
    Timeout,
    Wait,
    WaitForUserAction,
    Workflow,
    WorkflowStatus,
)

RUNS: Counter[str] = Counter()
BROKEN = {"charge": False}


@pytest.fixture(autouse=True)
def _reset() -> None:
    RUNS.clear()
    BROKEN["charge"] = False


class Order(Workflow):
    charged: int = 0

    def definition(self):
        return S(
            Go("notify", S(Step("send mail", self.run("send mail")))),
            Step("reserve", self.run("reserve")),
            Step("charge", self.charge, retry=RetryPolicy(max_attempts=1)),
            Wait("ship",
                On("shipped", WaitForUserAction(approve=self.run("shipped"), deny=self.no)),
                On("lost", Timeout(after=timedelta(days=7))),
            ),
            Step("close", self.run("close")),
            Return(self.charged),
        )  # fmt: skip

    def run(self, name: str) -> Any:
        def action() -> None:
            RUNS[name] += 1

        return action

    def charge(self) -> None:
        RUNS["charge"] += 1
        if BROKEN["charge"]:
            raise RuntimeError("card declined")
        self.charged += 1

    def no(self, reason: str) -> None:
        return None


@pytest.fixture
def shipping(engine: Engine, manager: Any) -> str:
    engine.managers["user_action"] = manager
    return engine.new_workflow(Order(), id="order-1")


# -- cancel -------------------------------------------------------------------------------


def test_cancel_stops_the_workflow_and_tears_its_waits_down(
    engine: Engine, shipping: str, manager: Any, clock: ManualClock
) -> None:
    info = engine.cancel(shipping, actor="ops", reason="customer left")

    assert info.status is WorkflowStatus.CANCELLED
    assert info.thread("main").status is ThreadStatus.CANCELLED  # type: ignore[union-attr]
    assert engine.pending_waits(shipping) == []
    assert engine.store.load_waits(shipping) == []
    assert manager.of("teardown") == [("teardown", "shipped", False)]
    (entry,) = [h for h in engine.history(shipping) if h.kind == "cancelled"]
    assert entry.actor == "ops"
    assert entry.detail["reason"] == "customer left"

    clock.advance(timedelta(days=8))  # the timer must not fire any more
    engine.run_due()
    engine.execute(shipping)
    assert engine.get(shipping).status is WorkflowStatus.CANCELLED
    assert RUNS["close"] == 0


def test_cancel_twice_is_an_invalid_operation(engine: Engine, shipping: str, snapshot) -> None:
    engine.cancel(shipping, actor="ops")
    before = snapshot(engine, shipping)
    with pytest.raises(InvalidOperation) as err:
        engine.cancel(shipping, actor="ops")
    assert err.value.workflow_id == shipping
    assert snapshot(engine, shipping) == before


def test_cancel_a_finished_workflow_is_an_invalid_operation(engine: Engine, shipping: str) -> None:
    engine.on_callback(shipping, "shipped", {"approved": True})
    with pytest.raises(InvalidOperation):
        engine.cancel(shipping, actor="ops")
    assert engine.get(shipping).status is WorkflowStatus.FINISHED


# -- retry --------------------------------------------------------------------------------


def test_retry_resumes_a_failed_workflow_at_the_failed_step(engine: Engine) -> None:
    BROKEN["charge"] = True
    wid = engine.new_workflow(Order())
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FAILED
    assert info.thread("main").position == "charge"  # type: ignore[union-attr]

    BROKEN["charge"] = False
    info = engine.retry(wid, actor="ops")

    assert info.status is WorkflowStatus.WAITING
    assert info.state.charged == 1
    assert Counter({"reserve": 1, "charge": 2, "send mail": 1}) == RUNS
    (entry,) = [h for h in engine.history(wid) if h.kind == "retried"]
    assert (entry.actor, entry.statement) == ("ops", "charge")


def test_retry_of_a_workflow_that_did_not_fail_is_invalid(
    engine: Engine, shipping: str, snapshot
) -> None:
    before = snapshot(engine, shipping)
    with pytest.raises(InvalidOperation) as err:
        engine.retry(shipping, actor="ops")
    assert "not failed" in str(err.value)
    assert snapshot(engine, shipping) == before


# -- goto ---------------------------------------------------------------------------------


def test_goto_backward_reruns_a_step(engine: Engine, shipping: str, manager: Any) -> None:
    assert RUNS["charge"] == 1

    info = engine.goto(shipping, "main", "charge", actor="ops", reason="charge again")

    assert RUNS["charge"] == 2
    assert info.state.charged == 2
    assert info.status is WorkflowStatus.WAITING
    assert info.thread("main").position == "ship"  # type: ignore[union-attr]
    assert RUNS["reserve"] == 1  # only from the target on
    # The wait the thread left was torn down; the new one was set up again.
    assert ("teardown", "shipped", False) in manager.calls
    assert len(manager.of("setup")) == 2
    assert len(engine.pending_waits(shipping)) == 2
    (entry,) = [h for h in engine.history(shipping) if h.kind == "goto"]
    assert (entry.actor, entry.thread, entry.statement) == ("ops", "main", "charge")
    assert entry.detail["moved_from"] == "ship"
    assert entry.detail["reason"] == "charge again"


def test_goto_forward_skips_the_wait(engine: Engine, shipping: str) -> None:
    info = engine.goto(shipping, "main", "close", actor="ops")
    assert info.status is WorkflowStatus.FINISHED
    assert info.result == 1
    assert RUNS["shipped"] == 0
    assert RUNS["close"] == 1
    assert engine.pending_waits(shipping) == []


def test_goto_a_failed_thread_recovers_the_workflow(engine: Engine) -> None:
    BROKEN["charge"] = True
    wid = engine.new_workflow(Order())
    assert engine.get(wid).status is WorkflowStatus.FAILED

    info = engine.goto(wid, "main", "ship", actor="ops", reason="charged by hand")

    assert info.status is WorkflowStatus.WAITING
    assert info.thread("main").error is None  # type: ignore[union-attr]
    assert {w.event for w in engine.pending_waits(wid)} == {"shipped", "lost"}


def test_goto_within_a_goroutine(engine: Engine, shipping: str) -> None:
    info = engine.goto(shipping, "notify", "send mail", actor="ops")
    assert RUNS["send mail"] == 2
    assert info.thread("notify").status is ThreadStatus.FINISHED  # type: ignore[union-attr]
    assert info.thread("main").position == "ship"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("thread", "statement", "text"),
    [
        ("main", "no such step", "not a named step"),
        ("main", "send mail", "belongs to goroutine 'notify'"),
        ("notify", "charge", "belongs to the main thread"),
        ("ghost", "charge", "has no thread 'ghost'"),
    ],
    ids=["unknown statement", "goroutine's statement", "main's statement", "unknown thread"],
)
def test_goto_that_does_not_apply_is_invalid_and_changes_nothing(
    engine: Engine, shipping: str, snapshot, manager: Any, thread: str, statement: str, text: str
) -> None:
    before = snapshot(engine, shipping)
    calls = list(manager.calls)

    with pytest.raises(InvalidOperation) as err:
        engine.goto(shipping, thread, statement, actor="ops")

    assert text in str(err.value)
    assert err.value.workflow_id == shipping
    assert err.value.thread == thread
    assert snapshot(engine, shipping) == before
    assert manager.calls == calls


def test_goto_on_a_finished_workflow_is_invalid(engine: Engine, shipping: str) -> None:
    engine.on_callback(shipping, "shipped", {"approved": True})
    with pytest.raises(InvalidOperation):
        engine.goto(shipping, "main", "charge", actor="ops")
    assert RUNS["charge"] == 1


# -- the history says who did what --------------------------------------------------------


def test_history_records_actors_for_callbacks_and_operator_actions(
    engine: Engine, shipping: str
) -> None:
    engine.goto(shipping, "main", "charge", actor="ops-1")
    engine.on_callback(shipping, "shipped", {"approved": True}, actor="warehouse")
    wid2 = engine.new_workflow(Order(), actor="api")
    engine.cancel(wid2, actor="ops-2")

    by_kind = {h.kind: h.actor for h in engine.history(shipping) if h.actor}
    assert by_kind == {"goto": "ops-1", "callback": "warehouse"}
    kinds2 = [(h.kind, h.actor) for h in engine.history(wid2) if h.actor]
    assert kinds2 == [("created", "api"), ("cancelled", "ops-2")]


def test_history_is_append_only_and_ordered(engine: Engine, shipping: str) -> None:
    first = engine.history(shipping)
    engine.on_callback(shipping, "shipped", {"approved": True})
    second = engine.history(shipping)

    assert second[: len(first)] == first
    seqs = [h.seq for h in second]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    pcs = [h.pc for h in second]
    assert pcs == sorted(pcs)
    assert second[0].kind == "created"
    assert second[-1].kind == "finished"


def test_callback_after_cancel_is_rejected(engine: Engine, shipping: str) -> None:
    engine.cancel(shipping, actor="ops")
    with pytest.raises(CallbackRejected) as err:
        engine.on_callback(shipping, "shipped", {"approved": True})
    assert err.value.reason == "finished"
