"""Store faults at every point of a checkpoint (and of every other write), on SQLite and
PostgreSQL: workflows finish, no checkpointed step runs twice, no wait or callback is lost.

The seeded run drives many workflows through random faults; the tests after it strike one
chosen point of one chosen write and check exactly what was kept.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from engine import (
    CallbackRejected,
    StoreError,
    WaitStatus,
    WorkflowStatus,
)
from tests.apps.fault_app import TIMEOUT, FaultFlow
from tests.engine.faults.conftest import LONG
from tests.engine.faults.harness import Point
from tests.engine.faults.scenario import Rig, run_scenario

SEEDS = list(range(1, 7)) if LONG else [1, 2]
WORKFLOWS = 240 if LONG else 45


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="gorch")  # thousands of expected warnings


@pytest.mark.parametrize("seed", SEEDS)
def test_workflows_survive_random_store_and_manager_faults(
    db_url: str, seed: int, fault_report: list[str]
) -> None:
    tally = run_scenario(db_url, seed=seed, workflows=WORKFLOWS)
    fault_report.append(tally.line())
    assert tally.problems == []
    assert (tally.duplicates, tally.lost) == (0, 0)
    assert all(tally.faults["checkpoint", point] > 0 for point in Point), tally.faults
    struck = {op for op, _ in tally.faults}
    assert struck >= {"create", "acquire", "claim_due", "release", "update_wait"}, struck
    # The faults did strike between steps and their checkpoints, and callers did retry.
    assert tally.reruns > 0 and tally.redeliveries > 0 and tally.manager_failures > 0
    assert tally.cancelled == WORKFLOWS // 4  # every fourth workflow is cancelled
    assert tally.callbacks == 2 * WORKFLOWS - tally.cancelled  # the cancelled get no data
    assert tally.setup_data_kept > 0  # tear-downs were handed what set-ups returned


@pytest.mark.parametrize("point", list(Point))
def test_a_step_runs_again_only_if_its_checkpoint_never_committed(rig: Rig, point: Point) -> None:
    wid = rig.engine.new_workflow(FaultFlow(key="w"), "w")
    rig.plan.force("checkpoint", point)
    with pytest.raises(StoreError) as failed:
        rig.engine.execute(wid)
    assert failed.value.workflow_id == wid and point.value in str(failed.value)
    stored = rig.inner.load(wid)
    assert stored.lease_owner is None  # the failed session gave its lease back
    steps = [h for h in rig.inner.history(wid) if h.kind == "step"]
    durable = rig.durable(point, changes_waits=False)
    if durable:  # durable, though the session heard otherwise
        assert stored.state["done"] == ["start"] and len(steps) == 1
    else:  # nothing of it was written: not the state, not the history, not the version
        assert stored.state["done"] == [] and steps == [] and stored.version == 0
        assert rig.inner.load_waits(wid) == []
    rig.engine.execute(wid)
    assert rig.runs(wid, "start") == ([False] if durable else [True, False])
    assert rig.engine.get(wid).state.done.count("start") == 1


@pytest.mark.parametrize("point", list(Point))
def test_a_callback_whose_checkpoint_fails_is_applied_exactly_once(rig: Rig, point: Point) -> None:
    wid = rig.at_approval()
    pc = rig.engine.pending_waits(wid)[0].pc
    rig.plan.force("checkpoint", point)
    with pytest.raises(StoreError):
        rig.engine.on_callback(wid, "approve", {"approved": True}, actor="ana", pc=pc)
    open_events = {w.event for w in rig.engine.pending_waits(wid)}
    durable = rig.durable(point, changes_waits=True)  # the callback closes the waits
    if durable:
        assert open_events == set()
        with pytest.raises(CallbackRejected) as again:  # the sender's retry
            rig.engine.on_callback(wid, "approve", {"approved": True}, actor="ana", pc=pc)
        assert again.value.reason in ("no_wait", "stale_pc")
    else:  # nothing written: the wait still takes its event, and the retry is applied
        assert open_events == {"approve", "late"}
        rig.engine.on_callback(wid, "approve", {"approved": True}, actor="ana", pc=pc)
    callbacks = [h for h in rig.engine.history(wid) if h.kind == "callback"]
    assert [(h.actor, h.detail["event"]) for h in callbacks] == [("ana", "approve")]
    assert rig.runs(wid, "approve") == ([False] if durable else [True, False])


@pytest.mark.parametrize("point", list(Point))
def test_a_timer_whose_checkpoint_fails_fires_exactly_once(rig: Rig, point: Point) -> None:
    wid = rig.at_approval(TIMEOUT)
    rig.clock.advance(timedelta(seconds=61))
    rig.plan.force("checkpoint", point)
    rig.engine.run_due()  # the poller logs the StoreError and goes on
    rig.engine.run_due()
    callbacks = [h for h in rig.engine.history(wid) if h.kind == "callback"]
    assert [(h.actor, h.detail["event"]) for h in callbacks] == [("timer", "late")]
    assert rig.engine.get(wid).state.done.count("note timeout") == 1


# -- regressions: an error after the checkpoint committed must not reach the caller ----------


def test_a_lease_that_cannot_be_released_does_not_fail_a_delivered_callback(rig: Rig) -> None:
    wid = rig.at_approval()
    rig.plan.force("release", Point.BEFORE_WRITE)
    rig.engine.on_callback(wid, "approve", {"approved": True}, actor="ana")  # no StoreError
    assert rig.inner.load(wid).lease_owner is not None  # still held; it expires by itself
    rig.clock.advance(timedelta(seconds=31))
    rig.engine.run_due()
    rig.engine.on_callback(wid, "data", {"value": 7}, actor="ana")
    rig.engine.run_due()
    assert rig.engine.get(wid).status is WorkflowStatus.FINISHED


@pytest.mark.parametrize(
    ("op", "down"),
    [
        ("update_wait", False),
        ("update_wait", True),
        ("append_history", True),
        ("delete_wait", False),
    ],
)
def test_a_wait_result_the_store_cannot_write_is_served_again(
    rig: Rig, op: str, down: bool
) -> None:
    """Set-ups and tear-downs run after the checkpoint; if their result (or, with the manager
    ``down``, their error) cannot be stored, the wait stays due and ``run_due`` serves it
    again. The caller, whose checkpoint is durable, hears of no failure."""
    wid = rig.engine.new_workflow(FaultFlow(key="w"), "w")
    rig.engine.execute(wid)
    rig.clock.advance(timedelta(seconds=2))
    rig.manager.down = down
    rig.plan.force(op, Point.BEFORE_WRITE)
    rig.engine.execute(wid)  # reaches the approval and sets its waits up: no StoreError
    assert rig.engine.get(wid).threads[0].position == "approval"
    rig.plan.force(op, Point.BEFORE_WRITE)
    rig.engine.on_callback(wid, "approve", {"approved": True}, actor="ana")  # no StoreError
    rig.manager.down = False
    for _ in range(3):
        rig.clock.advance(timedelta(seconds=60))
        rig.engine.run_due()
    assert {w.event for w in rig.inner.load_waits(wid)} == {"data"}  # the approval's are gone
    torn = {w.event: rig.manager.teardowns.get(i) for i, w in rig.manager.waits.items()}
    assert torn["approve"] and torn["approve"][-1] is True
    assert torn["late"] and torn["late"][-1] is False
    assert not rig.plan.forced  # both faults struck


@pytest.mark.parametrize("point", list(Point))
def test_a_set_up_whose_write_is_lost_is_set_up_again_and_written_data_is_kept(
    rig: Rig, point: Point
) -> None:
    """The write that marks a wait set up, with its set-up data, fails at ``point``. If it
    never committed, the wait is still due and set up again (new data); if it committed,
    its data is kept through every later write, and the tear-down is handed it."""
    rig.plan.force("update_wait", point)
    wid = rig.at_approval()  # no StoreError: the checkpoint before the set-up is durable
    [fault] = [f for f in rig.store.faults if f.op == "update_wait"]
    approve = next(w for w in rig.inner.load_waits(wid) if w.event == "approve")
    first = rig.manager.posted[approve.id][0]
    if fault.durable:
        assert (approve.status, approve.setup_data) == (WaitStatus.SET_UP, first)
    else:
        assert (approve.status, approve.setup_data) == (WaitStatus.PENDING_SETUP, None)
    rig.clock.advance(timedelta(seconds=1))
    rig.engine.run_due()
    approve = next(w for w in rig.inner.load_waits(wid) if w.event == "approve")
    posted = rig.manager.posted[approve.id]
    assert len(posted) == (1 if fault.durable else 2)  # set up again only if it was lost
    assert (approve.status, approve.setup_data) == (WaitStatus.SET_UP, posted[-1])
    # Later writes (a failed tear-down recorded, the checkpoint closing it) keep the data.
    rig.manager.down = True
    rig.engine.on_callback(wid, "approve", {"approved": True}, actor="ana")
    closed = next(w for w in rig.inner.load_waits(wid) if w.id == approve.id)
    assert (closed.status, closed.setup_data) == (WaitStatus.TEARDOWN_ERROR, posted[-1])
    rig.manager.down = False
    rig.clock.advance(timedelta(minutes=1))
    rig.engine.run_due()
    assert rig.manager.torn_data[approve.id] == [posted[-1]]
    assert approve.id not in {w.id for w in rig.inner.load_waits(wid)}
