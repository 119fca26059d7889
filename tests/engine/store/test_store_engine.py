"""Whole workflows through ``Engine`` on every store, and races between store instances."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine import (
    CallbackRejected,
    Engine,
    Go,
    If,
    ManualClock,
    On,
    PollingResumer,
    Return,
    S,
    Section,
    SQLModelStore,
    Step,
    Store,
    Timeout,
    Wait,
    WaitForUserAction,
    WaitStatus,
    Workflow,
    WorkflowBusy,
    WorkflowStatus,
)
from engine._records import ThreadState, WorkflowRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Approval(Workflow):
    """Submit, then wait an hour for a decision."""

    amount: int = 0
    submitted: int = 0
    approved: bool = False
    reason: str = ""

    def definition(self) -> Section:
        return S(
            Step("submit", self.submit),
            Wait("decide",
                On("approval", WaitForUserAction(approve=self.approve, deny=self.deny)),
                On("timeout", Timeout(after=timedelta(hours=1)),
                    Return(error="no decision within an hour"),
                ),
            ),
            If(self.approved, Return({"approved": self.amount})),
            Return(error=f"denied: {self.reason}"),
        )  # fmt: skip

    def submit(self) -> None:
        self.submitted += 1

    def approve(self) -> str:
        self.approved = True
        return "approved"

    def deny(self, reason: str) -> str:
        self.reason = reason
        return "denied"


def test_approval_runs_to_the_end(store: Store, clock: ManualClock) -> None:
    engine = Engine(store, [Approval], clock=clock)
    wid = engine.new_workflow(Approval(amount=42), id="exp-'1'; --")
    assert engine.get(wid).status is WorkflowStatus.WAITING
    assert sorted(w.event for w in engine.pending_waits(wid)) == ["approval", "timeout"]
    assert engine.pending_waits(type="user_action")[0].workflow_id == wid

    output = engine.on_callback(wid, "approval", {"approved": True}, actor="bob ✅")

    assert output == "approved"
    info = engine.get(wid)
    assert (info.status, info.result, info.error) == (
        WorkflowStatus.FINISHED,
        {"approved": 42},
        None,
    )
    assert info.state.submitted == 1
    assert engine.pending_waits(wid) == []
    callback = next(e for e in engine.history(wid) if e.kind == "callback")
    assert callback.actor == "bob ✅"
    assert callback.detail["input"] == {"approved": True}
    seqs = [e.seq for e in engine.history(wid)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    with pytest.raises(CallbackRejected) as e:
        engine.on_callback(wid, "approval", {"approved": False, "reason": "late"})
    assert e.value.reason == "finished"
    assert engine.get(wid).version == info.version


def test_approval_times_out(store: Store, clock: ManualClock) -> None:
    engine = Engine(store, [Approval], clock=clock)
    wid = engine.new_workflow(Approval(amount=7))
    clock.advance(timedelta(minutes=59))
    assert engine.run_due() == 0
    clock.advance(timedelta(minutes=1))
    assert engine.run_due() >= 1
    info = engine.get(wid)
    assert (info.status, info.error) == (WorkflowStatus.FINISHED, "no decision within an hour")
    assert engine.pending_waits() == []
    assert [e.actor for e in engine.history(wid) if e.kind == "callback"] == ["timer"]


def test_failing_setup_is_retried_through_the_store(
    store: Store, clock: ManualClock, manager: Any
) -> None:
    manager.fail_setup = 1
    engine = Engine(store, [Approval], clock=clock, managers={"user_action": manager})
    wid = engine.new_workflow(Approval(amount=1))
    [w] = [w for w in store.load_waits(wid) if w.type == "user_action"]
    assert (w.status, w.attempts) == (WaitStatus.SETUP_ERROR, 1)
    assert "slack is down" in (w.error or "")
    clock.advance(timedelta(seconds=5))
    engine.run_due()
    [w] = [w for w in store.load_waits(wid) if w.type == "user_action"]
    assert w.status is WaitStatus.SET_UP
    engine.on_callback(wid, "approval", {"approved": False, "reason": "no"}, actor="ann")
    assert engine.get(wid).error == "denied: no"
    assert manager.of("teardown") == [("teardown", "approval", True)]
    assert store.load_waits(wid) == []  # torn down and deleted
    kinds = [e.kind for e in engine.history(wid)]
    assert kinds.count("setup_error") == 1


def test_a_new_process_resumes_a_stored_workflow(
    db_url: str, open_store: Callable[..., SQLModelStore], clock: ManualClock
) -> None:
    first = Engine(open_store(db_url), [Approval], clock=clock, resumer=PollingResumer())
    wid = first.new_workflow(Approval(amount=3), id="durable")
    first.execute(wid)
    first.store.close()  # type: ignore[attr-defined]

    second = Engine(open_store(db_url), [Approval], clock=clock)
    assert second.get(wid).status is WorkflowStatus.WAITING
    second.on_callback(wid, "approval", {"approved": True})
    info = second.get(wid)
    assert (info.status, info.result, info.state.submitted) == (
        WorkflowStatus.FINISHED,
        {"approved": 3},
        1,
    )


ROUNDS = 40


def race(n: int, action: Callable[[int], Any]) -> list[Any]:
    """Run ``action(i)`` in ``n`` threads released at once; return results or exceptions."""
    results: list[Any] = [None] * n
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = action(i)
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_racing_acquires_have_one_winner(
    db_url: str, open_store: Callable[..., SQLModelStore]
) -> None:
    stores = [open_store(db_url), open_store(db_url)]
    for r in range(ROUNDS):
        wid = f"race-{r}"
        stores[0].create(
            WorkflowRecord(
                wid, "Approval", WorkflowStatus.RUNNING, {}, [ThreadState("main")], T0, T0
            ),
            [],
        )
        # odd rounds race for an expired lease, as two workers recovering a crashed one
        # (one that ran out as it was taken: expired by any clock, PostgreSQL's included)
        if r % 2:
            stores[0].acquire(wid, "crashed", now=T0, until=T0)
        now = T0 + timedelta(minutes=1)
        results = race(
            2,
            lambda i, wid=wid, now=now: stores[i].acquire(
                wid, f"w{i}", now=now, until=now + timedelta(minutes=5)
            ),
        )
        winners = [x for x in results if isinstance(x, WorkflowRecord)]
        losers = [x for x in results if isinstance(x, WorkflowBusy)]
        assert (len(winners), len(losers)) == (1, 1), results
        assert stores[1].load(wid).lease_owner == winners[0].lease_owner


def test_racing_callbacks_have_one_winner(
    db_url: str, open_store: Callable[..., SQLModelStore], clock: ManualClock
) -> None:
    engines = [
        Engine(open_store(db_url), [Approval], clock=clock, resumer=PollingResumer())
        for _ in range(2)
    ]
    for r in range(ROUNDS // 4):
        wid = engines[0].new_workflow(Approval(amount=r))
        engines[0].execute(wid)
        results = race(
            2,
            lambda i, wid=wid: engines[i].on_callback(
                wid, "approval", {"approved": True}, actor=f"engine-{i}"
            ),
        )
        assert sorted(type(x).__name__ for x in results) == ["CallbackRejected", "str"], results
        callbacks = [e for e in engines[1].history(wid) if e.kind == "callback"]
        assert len(callbacks) == 1
        assert callbacks[0].actor == f"engine-{results.index('approved')}"


# -- a session's writes: a step's result is never taken back ------------------------------------


class ChargeThenCheck(Workflow):
    """A step, then a condition that calls a service which may be down."""

    charged: int = 0
    charges: int = 0

    def definition(self) -> Section:
        return S(
            Step("charge", self.charge),
            If(lambda: self.charged > limit(), Return("too much"), name="check"),
            Return("done"),
        )

    def charge(self) -> None:
        self.charges += 1
        self.charged = 42


class PayAndSide(Workflow):
    """The main thread pays; a goroutine's condition fails right after."""

    paid: bool = False

    def definition(self) -> Section:
        return S(
            Go("side", S(If(lambda: limit() > 0, Return(), name="bad"))),
            Step("pay", self.pay),
            Return("paid"),
        )

    def pay(self) -> None:
        self.paid = True


SERVICE = {"down": True}


def limit() -> int:
    if SERVICE["down"]:
        raise ConnectionError("config service down")
    return 100


@pytest.mark.parametrize("cls", [ChargeThenCheck, PayAndSide])
def test_a_failing_condition_after_a_step_keeps_the_steps_result(
    store: Store, cls: type[Workflow]
) -> None:
    # The step's result is written with the next checkpoint; a condition failing before that
    # restores the state, which must not take the step back (it ran and is recorded as done).
    SERVICE["down"] = True
    engine = Engine(store, [cls])
    wid = engine.new_workflow(cls())
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FAILED
    if cls is ChargeThenCheck:
        assert (info.state.charged, info.state.charges) == (42, 1)
    else:
        assert info.state.paid is True
    steps = [h.statement for h in engine.history(wid) if h.kind == "step"]
    assert steps == ["charge" if cls is ChargeThenCheck else "pay"]
    SERVICE["down"] = False
    engine.retry(wid, actor="ops")
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    if cls is ChargeThenCheck:
        assert (info.state.charged, info.state.charges, info.result) == (42, 1, "done")
    else:
        assert (info.state.paid, info.result) == (True, "paid")
