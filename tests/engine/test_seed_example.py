"""The seed's expense approval, written exactly as in DESIGN.md section 1, run all three ways."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine import Engine, ManualClock, MemoryStore, WaitStatus, WorkflowStatus

# isort: off
from engine import Workflow, S, Step, Go, Wait, On, If, Return, Timeout, WaitForUserAction
# isort: on

RAN: list[str] = []
"""What the actions did, in order (outside the state, so a re-run would show)."""


# fmt: off
class Expense(Workflow):          # a pydantic model: its fields are the durable state
    amount: int = 0
    approved: bool = False
    error: str = ""

    def definition(self):          # rebuilt from the current state at every resume
        return S(
            Step("first action", self.log_start),
            Go("notification goroutine", S(
                Step("parallel thread", self.notify),
            ), id="g1"),
            Wait("waiting for approval",
                On("slackApproval", WaitForUserAction(approve=self.approve, deny=self.deny)),
                On("timeout", Timeout(after=timedelta(minutes=10)),
                    Step("abort workflow", self.abort),
                    Return(error="workflow finished with timeout"),
                ),
            ),
            If(self.approved, Return()),
            Return(error=f"workflow was not approved: {self.error}"),
        )

    def approve(self): self.approved = True
    def deny(self, reason: str): self.approved, self.error = False, reason
    # fmt: on

    # The "..." of DESIGN.md: the three actions the definition names.
    def log_start(self):
        RAN.append("first action")

    def notify(self):
        RAN.append("parallel thread")

    def abort(self):
        RAN.append("abort workflow")
        self.approved, self.error = False, "approval timed out"


@pytest.fixture(autouse=True)
def _clear_ran() -> None:
    RAN.clear()


@pytest.fixture
def seed(engine: Engine, manager) -> tuple[Engine, str]:
    """A started expense workflow, blocked on the approval; Slack is a recording manager."""
    engine.managers["user_action"] = manager
    wid = engine.new_workflow(Expense(amount=120), id="expense-1")
    return engine, wid


def test_start_runs_first_action_and_goroutine_then_blocks_on_both_cases(seed) -> None:
    engine, wid = seed
    info = engine.get(wid)

    assert info.status is WorkflowStatus.WAITING
    assert RAN == ["first action", "parallel thread"]
    main, g1 = info.thread("main"), info.thread("g1")
    assert main is not None and main.position == "waiting for approval"
    assert g1 is not None and g1.name == "notification goroutine"
    assert g1.status.value == "finished"
    waits = engine.pending_waits(wid)
    assert sorted((w.event, w.type, w.wait) for w in waits) == [
        ("slackApproval", "user_action", "waiting for approval"),
        ("timeout", "timeout", "waiting for approval"),
    ]
    timer = next(w for w in waits if w.event == "timeout")
    assert timer.due_at == timer.created_at + timedelta(minutes=10)


def test_approved_finishes_ok(seed, manager) -> None:
    engine, wid = seed

    engine.on_callback(wid, "slackApproval", {"approved": True}, actor="alice")

    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.error is None
    assert info.result is None
    assert info.state.approved is True
    assert RAN.count("parallel thread") == 1
    assert "abort workflow" not in RAN
    assert engine.pending_waits(wid) == []
    assert engine.store.load_waits(wid) == []  # the losing timer is gone, not just closed
    assert manager.of("teardown") == [("teardown", "slackApproval", True)]
    callbacks = [h for h in engine.history(wid) if h.kind == "callback"]
    assert [(h.actor, h.detail["event"]) for h in callbacks] == [("alice", "slackApproval")]


def test_denied_finishes_with_the_reason(seed) -> None:
    engine, wid = seed

    engine.on_callback(
        wid, "slackApproval", {"approved": False, "reason": "over budget"}, actor="bob"
    )

    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.error == "workflow was not approved: over budget"
    assert "over budget" in info.error
    assert info.state.approved is False
    assert RAN.count("parallel thread") == 1
    assert "abort workflow" not in RAN
    assert engine.pending_waits(wid) == []


def test_timed_out_via_manual_clock_and_run_due(seed, clock: ManualClock, manager) -> None:
    engine, wid = seed

    clock.advance(timedelta(minutes=9, seconds=59))
    engine.run_due()
    assert engine.get(wid).status is WorkflowStatus.WAITING  # not yet
    assert "abort workflow" not in RAN

    clock.advance(timedelta(seconds=1))
    assert engine.run_due() >= 1

    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.error == "workflow finished with timeout"
    assert RAN == ["first action", "parallel thread", "abort workflow"]
    assert info.state.error == "approval timed out"
    assert engine.pending_waits(wid) == []
    assert engine.store.load_waits(wid) == []
    # The losing Slack case was torn down, told that it did not win.
    assert manager.of("teardown") == [("teardown", "slackApproval", False)]
    timer = [h for h in engine.history(wid) if h.kind == "callback"]
    assert [(h.actor, h.detail["event"]) for h in timer] == [("timer", "timeout")]


def test_late_approval_after_timeout_is_rejected(seed, clock: ManualClock) -> None:
    from engine import CallbackRejected

    engine, wid = seed
    clock.advance(timedelta(minutes=10))
    engine.run_due()
    before = engine.get(wid)

    with pytest.raises(CallbackRejected) as err:
        engine.on_callback(wid, "slackApproval", {"approved": True})

    assert err.value.reason == "finished"
    after = engine.get(wid)
    assert (after.pc, after.version, after.error) == (before.pc, before.version, before.error)


def test_each_way_runs_the_notification_goroutine_exactly_once(
    store: MemoryStore, clock: ManualClock
) -> None:
    engine = Engine(store, [Expense], clock=clock)
    ids = [engine.new_workflow(Expense(amount=i)) for i in range(3)]
    engine.on_callback(ids[0], "slackApproval", {"approved": True})
    engine.on_callback(ids[1], "slackApproval", {"approved": False, "reason": "no"})
    clock.advance(timedelta(minutes=10))
    engine.run_due()
    engine.run_due()  # nothing left to do: a second pass must not re-run anything

    assert RAN.count("parallel thread") == 3
    assert RAN.count("first action") == 3
    assert RAN.count("abort workflow") == 1
    assert [engine.get(i).status for i in ids] == [WorkflowStatus.FINISHED] * 3
    steps = [h for i in ids for h in engine.history(i) if h.statement == "parallel thread"]
    assert [h.thread for h in steps] == ["g1"] * 3


@pytest.mark.parametrize(
    ("how", "error"),
    [
        ("approve", None),
        ("deny", "workflow was not approved: too much"),
        ("timeout", "workflow finished with timeout"),
    ],
)
def test_bundled_expense_example_runs_all_three_ways(
    engine: Engine, clock: ManualClock, how: str, error: str | None
) -> None:
    from engine.examples import Expense as Bundled

    wid = engine.new_workflow(Bundled(amount=7, requester="ann"))
    if how == "approve":
        engine.on_callback(wid, "slackApproval", {"approved": True}, actor="bo")
    elif how == "deny":
        engine.on_callback(
            wid, "slackApproval", {"approved": False, "reason": "too much"}, actor="bo"
        )
    else:
        clock.advance(timedelta(minutes=10))
        engine.run_due()

    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.error == error
    assert info.state.notified is True
    assert engine.pending_waits(wid) == []
    assert all(w.status is not WaitStatus.SET_UP for w in engine.store.load_waits(wid))
