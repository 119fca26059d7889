"""Sessions under pressure: leases that outlive steps, writes that must not happen."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine import (
    CallbackRejected,
    Engine,
    ManualClock,
    MemoryStore,
    On,
    PollingResumer,
    RetryPolicy,
    S,
    Section,
    StateError,
    Step,
    Wait,
    WaitFor,
    WaitForUserAction,
    WaitStatus,
    Workflow,
    WorkflowBusy,
    WorkflowStatus,
)

RUNS: list[tuple[str, int]] = []


class Slow(Workflow):
    """Each step takes 40 s of (manual) time; the lease is 60 s."""

    i: int = 0

    def definition(self) -> Section:
        return S(*(Step(f"s{k}", self.work) for k in range(4)))

    def work(self) -> None:
        RUNS.append(("a", self.i))
        CLOCK.advance(timedelta(seconds=40))
        if self.i == 2:  # by now the session is 120 s old: twice its first lease
            with pytest.raises(WorkflowBusy):
                OTHER.execute(WID)
        self.i += 1


CLOCK = ManualClock()
OTHER: Engine
WID = "slow"


def test_every_checkpoint_extends_the_lease() -> None:
    global OTHER
    store = MemoryStore()
    lease = timedelta(seconds=60)
    engine = Engine(store, [Slow], clock=CLOCK, resumer=PollingResumer(), lease=lease)
    OTHER = Engine(store, [Slow], clock=CLOCK, resumer=PollingResumer(), lease=lease)
    engine.new_workflow(Slow(), WID)
    assert engine.execute(WID).status is WorkflowStatus.FINISHED
    assert RUNS == [("a", 0), ("a", 1), ("a", 2), ("a", 3)]  # no step ran twice


class Gate(Workflow):
    n: int = 0
    ready: bool = False
    junk: Any = None

    def definition(self) -> Section:
        return S(
            Wait("w", On("go", WaitForUserAction(approve=self.bump, deny=lambda r: None))),
            WaitFor("until ready", lambda: self.ready),
            Step("end", lambda: None),
        )

    def bump(self) -> None:
        self.n += 1


@pytest.fixture
def polling() -> Engine:
    return Engine(MemoryStore(), [Gate], clock=ManualClock(), resumer=PollingResumer())


def test_a_wait_reopened_behind_the_engines_back_is_not_applied_twice(polling: Engine) -> None:
    wid = polling.new_workflow(Gate())
    polling.execute(wid)
    handled = polling.store.load_waits(wid)[0]
    polling.on_callback(wid, "go", {"approved": True}, actor="bob")
    # A stale writer (a session that lost its lease during a slow set-up) writes the old
    # status back: the wait looks open again, but its thread has moved on.
    handled.status = WaitStatus.SET_UP
    polling.store._waits[wid] = {handled.id: handled}  # type: ignore[attr-defined]
    before = polling.get(wid)
    with pytest.raises(CallbackRejected) as err:
        polling.on_callback(wid, "go", {"approved": True}, actor="carol")
    assert err.value.reason == "no_wait"
    after = polling.get(wid)
    assert (after.state.n, after.version) == (1, before.version)
    assert [h.actor for h in polling.history(wid) if h.kind == "callback"] == ["bob"]


def test_update_state_wakes_a_waitfor_for_the_poller(polling: Engine) -> None:
    wid = polling.new_workflow(Gate())
    polling.execute(wid)
    polling.on_callback(wid, "go", {"approved": True}, actor="bob")
    assert polling.execute(wid).status is WorkflowStatus.WAITING
    polling.update_state(wid, {"n": 1, "ready": True}, actor="ops", reason="unblock")
    assert polling.run_due() >= 1
    assert polling.get(wid).status is WorkflowStatus.FINISHED


def test_execute_on_a_finished_workflow_writes_nothing(polling: Engine) -> None:
    wid = polling.new_workflow(Gate())
    polling.execute(wid)
    polling.cancel(wid, actor="ops")
    before = polling.get(wid)
    after = polling.execute(wid)
    assert (after.version, after.pc, after.status) == (
        before.version, before.pc, WorkflowStatus.CANCELLED)  # fmt: skip


class Unstorable(Workflow):
    junk: Any = None

    def definition(self) -> Section:
        return S(
            Step("set junk", self.set_junk, retry=RetryPolicy(max_attempts=1)),
            Wait("w", On("go", WaitForUserAction(approve=self.set_junk, deny=lambda r: None))),
        )

    def set_junk(self) -> None:
        self.junk = object()


def test_a_step_that_leaves_unstorable_state_fails_with_a_gorch_error() -> None:
    engine = Engine(MemoryStore(), [Unstorable], clock=ManualClock(), resumer=PollingResumer())
    wid = engine.new_workflow(Unstorable())
    info = engine.execute(wid)
    assert info.status is WorkflowStatus.FAILED
    assert "StateError" in (info.threads[0].error or "")
    assert info.state.junk is None  # the step's changes were discarded


def test_a_handler_that_leaves_unstorable_state_changes_nothing() -> None:
    class Later(Unstorable):
        type_name = "later"

        def definition(self) -> Section:
            return S(Wait("w", On("go", WaitForUserAction(approve=self.set_junk,
                                                          deny=lambda r: None))))  # fmt: skip

    engine = Engine(MemoryStore(), [Later], clock=ManualClock(), resumer=PollingResumer())
    wid = engine.new_workflow(Later())
    engine.execute(wid)
    before = engine.get(wid)
    with pytest.raises(StateError):
        engine.on_callback(wid, "go", {"approved": True}, actor="bob")
    after = engine.get(wid)
    assert (after.version, after.pc) == (before.version, before.pc)
    assert [w.event for w in engine.pending_waits(wid)] == ["go"]
    assert engine.run_due() == 0  # and the poller survives it


class Breaks(Workflow):
    """After its first step, definition() raises: a bug shipped in the code."""

    done: bool = False

    def definition(self) -> Section:
        if self.done:
            raise RuntimeError("bad deploy")
        return S(Step("first", self.finish), Step("second", lambda: None))

    def finish(self) -> None:
        self.done = True


def test_a_workflow_that_cannot_run_says_why_in_its_history_once() -> None:
    clock = ManualClock()
    engine = Engine(MemoryStore(), [Breaks], clock=clock, resumer=PollingResumer())
    wid = engine.new_workflow(Breaks())
    engine.run_due()  # runs "first"; then the definition cannot be built
    engine.run_due()  # quarantined: nothing more
    clock.advance(engine.quarantine + timedelta(seconds=1))
    engine.run_due()  # tried again, same reason: not written twice
    blocked = [h for h in engine.history(wid) if h.kind == "blocked"]
    assert len(blocked) == 1
    assert "bad deploy" in blocked[0].detail["error"]
    assert engine.get(wid).state.done  # its state stays as stored
