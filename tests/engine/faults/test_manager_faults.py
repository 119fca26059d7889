"""A ``CallbackManager`` whose set-ups and tear-downs fail, on SQLite and PostgreSQL.

What gorch documents: the failure is recorded on the wait (``setup_error`` or
``teardown_error``, the error and the attempt) and in the history, and retried by
``run_due`` with back-off; the wait still takes its event; the workflow is never lost, and
no caller of the engine hears of the failure. When the manager works again, every wait is
set up or torn down and the workflows finish.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from engine import WaitStatus, WorkflowStatus
from tests.apps.fault_app import APPROVE, DENY, TIMEOUT, expected_keys
from tests.engine.faults.scenario import Rig


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="gorch")


def test_a_manager_that_is_down_loses_no_wait_and_everything_recovers(rig: Rig) -> None:
    engine, manager, clock = rig.engine, rig.manager, rig.clock
    manager.down = True
    paths = {"a": APPROVE, "d": DENY, "t": TIMEOUT, "c": APPROVE}
    for wid, path in paths.items():
        rig.at_approval(path, wid)  # no caller hears of the failed set-ups

    # Reported on the wait (the inbox shows it) and in the history.
    waits = engine.pending_waits()
    assert len(waits) == 2 * len(paths)
    for w in waits:
        assert w.status is WaitStatus.SETUP_ERROR and w.attempts == 1
        assert w.error == f"ConnectionError: manager unavailable (setup of {w.event!r})"
        assert w.retry_at is not None  # when run_due tries again
    errors = [h for h in engine.history("a") if h.kind == "setup_error"]
    assert {(h.detail["event"], h.detail["attempt"]) for h in errors} == {
        ("approve", 1),
        ("late", 1),
    }
    # Retried with back-off (1 s, 2 s, 4 s, ...) while it stays down: attempts grow.
    for _ in range(3):
        clock.advance(timedelta(seconds=10))
        engine.run_due()
    assert {w.attempts for w in engine.pending_waits()} == {4}

    # The waits still take their events; the timer fires though it was never set up.
    engine.on_callback("a", "approve", {"approved": True}, actor="ana")
    engine.on_callback("d", "approve", {"approved": False, "reason": "no"}, actor="bo")
    engine.cancel("c", actor="ops", reason="duplicate request")
    clock.advance(timedelta(seconds=61))
    engine.run_due()
    assert engine.get("t").state.done.count("note timeout") == 1
    # The tear-downs failed too: recorded, and left for later; the workflows moved on.
    assert all(w.event == "data" for w in engine.pending_waits())
    tearing = [w for wid in paths for w in rig.inner.load_waits(wid) if not w.status.open]
    assert len(tearing) == 2 * len(paths)
    assert {w.status for w in tearing} == {WaitStatus.TEARDOWN_ERROR}
    assert "teardown_error" in {h.kind for h in engine.history("c")}
    assert manager.setups == {} and manager.teardowns == {}

    # The manager is back: every wait is set up or torn down; the workflows finish.
    manager.down = False
    clock.advance(timedelta(minutes=5))
    engine.run_due()
    for wid in ("a", "d", "t"):
        engine.on_callback(wid, "data", {"value": 1}, actor="ana")
    clock.advance(timedelta(minutes=5))
    engine.run_due()
    for wid, path in paths.items():
        info = engine.get(wid)
        assert rig.inner.load_waits(wid) == []
        if wid == "c":
            assert info.status is WorkflowStatus.CANCELLED
            continue
        assert info.status is WorkflowStatus.FINISHED
        assert sorted(info.state.done) == expected_keys(path)
    # Each wait torn down as its outcome says: the winners handled, the others not.
    handled = {(w.workflow_id, w.event): manager.teardowns[i] for i, w in manager.waits.items()}
    assert handled["a", "approve"] == [True] and handled["a", "late"] == [False]
    assert handled["t", "late"] == [True] and handled["t", "approve"] == [False]
    assert handled["c", "approve"] == [False] and handled["c", "late"] == [False]
    assert all(len(flags) == 1 for flags in handled.values())  # each torn down once


def test_a_manager_failure_and_a_store_failure_together_lose_nothing(rig: Rig) -> None:
    """The set-up fails and recording its failure fails too: the wait stays due as the
    checkpoint left it, and is set up when both work again."""
    from tests.engine.faults.harness import Point

    rig.manager.down = True
    rig.plan.force("update_wait", Point.ON_COMMIT)
    rig.plan.force("append_history", Point.BEFORE_WRITE)
    wid = rig.at_approval()
    statuses = {w.event: w.status for w in rig.inner.load_waits(wid)}
    assert statuses["approve"] is WaitStatus.PENDING_SETUP  # its failure was not recorded
    rig.manager.down = False
    rig.clock.advance(timedelta(seconds=1))
    rig.engine.run_due()
    assert {w.status for w in rig.inner.load_waits(wid)} == {WaitStatus.SET_UP}
    assert set(rig.manager.setups.values()) == {1}
