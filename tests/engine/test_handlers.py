"""Handlers and CallbackManagers: set-up and tear-down statuses, failures recorded and retried."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from engine import (
    CallbackManager,
    Engine,
    Event,
    Handler,
    InvalidInput,
    ManualClock,
    On,
    Return,
    S,
    Step,
    Timeout,
    UserAction,
    Wait,
    WaitForUserAction,
    WaitStatus,
    Workflow,
    WorkflowStatus,
)


class Review(Workflow):
    ok: bool = False

    def definition(self):
        return S(
            Step("prepare", lambda: None),
            Wait("review",
                On("approve", WaitForUserAction(approve=self.yes, deny=self.no)),
                On("expire", Timeout(after=timedelta(hours=2))),
            ),
            Return(self.ok),
        )  # fmt: skip

    def yes(self) -> None:
        self.ok = True

    def no(self, reason: str) -> None:
        self.ok = False


@pytest.fixture
def managed(engine: Engine, manager: Any) -> Engine:
    engine.managers["user_action"] = manager
    return engine


def wait_of(engine: Engine, wid: str, event: str) -> Any:
    return next(w for w in engine.store.load_waits(wid) if w.event == event)


# -- the built-in handlers ----------------------------------------------------------------


def test_built_in_handlers_satisfy_the_handler_protocol() -> None:
    class M(BaseModel):
        x: int

    for h in (
        WaitForUserAction(approve=lambda: None, deny=lambda r: None),
        Event(model=M),
        Timeout(after=timedelta(seconds=1)),
    ):
        assert isinstance(h, Handler)


def test_user_action_calls_approve_or_deny_with_the_reason() -> None:
    got: list[Any] = []
    h = WaitForUserAction(approve=lambda: got.append("yes") or 1, deny=got.append)
    assert h.handle({"approved": True}) == 1
    h.handle({"approved": False, "reason": "late"})
    h.handle({"approved": False})
    assert got == ["yes", "late", ""]
    with pytest.raises(InvalidInput):
        h.handle({"approved": True, "comment": "extra keys are refused"})


def test_user_action_describes_its_input_schema() -> None:
    h = WaitForUserAction(approve=lambda: None, deny=lambda r: None)
    schema = h.describe()["input"]
    assert schema == UserAction.model_json_schema()
    assert schema["required"] == ["approved"]


def test_event_handler_and_describe() -> None:
    class Paid(BaseModel):
        amount: int

    h = Event(model=Paid, handle=lambda p: p.amount + 1)
    assert h.handle({"amount": 41}) == 42
    assert h.handle('{"amount": 1}') == 2
    assert h.describe()["model"] == "Paid"
    with pytest.raises(InvalidInput) as err:
        h.handle({"amount": "lots"})
    assert err.value.errors[0]["loc"] == ("amount",)


def test_timeout_due_time() -> None:
    h = Timeout(after=timedelta(minutes=10))
    start = ManualClock().now()
    assert h.due(start) == start + timedelta(minutes=10)
    assert h.handle(None) is None


# -- set-up and tear-down -----------------------------------------------------------------


def test_setup_is_called_once_per_case_with_a_manager(managed: Engine, manager: Any) -> None:
    wid = managed.new_workflow(Review())

    assert manager.of("setup") == [("setup", "approve", None)]  # no manager for timeouts
    (seen,) = manager.waits
    assert (seen.workflow_id, seen.thread_id, seen.wait, seen.type) == (
        wid,
        "main",
        "review",
        "user_action",
    )
    assert "input" in seen.data
    assert wait_of(managed, wid, "approve").status is WaitStatus.SET_UP
    assert wait_of(managed, wid, "expire").status is WaitStatus.SET_UP


def test_setup_failure_is_recorded_on_the_wait_and_retried(
    managed: Engine, manager: Any, clock: ManualClock
) -> None:
    manager.fail_setup = 2
    wid = managed.new_workflow(Review())

    w = wait_of(managed, wid, "approve")
    assert w.status is WaitStatus.SETUP_ERROR
    assert w.error == "ConnectionError: slack is down (setup of approve)"
    assert w.attempts == 1
    assert w.retry_at == clock.now() + timedelta(seconds=1)
    assert managed.get(wid).status is WorkflowStatus.WAITING  # the workflow is not lost
    assert [h.kind for h in managed.history(wid)].count("setup_error") == 1

    managed.run_due()
    assert len(manager.of("setup")) == 1  # not due yet

    clock.advance(timedelta(seconds=1))
    managed.run_due()
    w = wait_of(managed, wid, "approve")
    assert (w.status, w.attempts) == (WaitStatus.SETUP_ERROR, 2)
    assert w.retry_at == clock.now() + timedelta(seconds=2)  # backed off

    clock.advance(timedelta(seconds=2))
    managed.run_due()
    w = wait_of(managed, wid, "approve")
    assert w.status is WaitStatus.SET_UP
    assert w.error is None
    assert w.retry_at is None
    assert len(manager.of("setup")) == 3

    managed.on_callback(wid, "approve", {"approved": True})
    assert managed.get(wid).result is True


def test_a_wait_whose_setup_failed_still_accepts_its_event(managed: Engine, manager: Any) -> None:
    manager.fail_setup = 1
    wid = managed.new_workflow(Review())
    assert {w.event for w in managed.pending_waits(wid)} == {"approve", "expire"}

    managed.on_callback(wid, "approve", {"approved": False, "reason": "no"})

    info = managed.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.result is False


def test_teardown_failure_is_recorded_and_retried(
    managed: Engine, manager: Any, clock: ManualClock
) -> None:
    manager.fail_teardown = 1
    wid = managed.new_workflow(Review())

    managed.on_callback(wid, "approve", {"approved": True})

    info = managed.get(wid)
    assert info.status is WorkflowStatus.FINISHED  # the workflow went on regardless
    assert info.result is True
    w = wait_of(managed, wid, "approve")
    assert w.status is WaitStatus.TEARDOWN_ERROR
    assert w.error == "ConnectionError: slack is down (teardown of approve)"
    assert w.attempts == 1
    assert w.handled is True
    assert managed.pending_waits(wid) == []  # a closed wait is not in the inbox
    assert [h.kind for h in managed.history(wid)].count("teardown_error") == 1

    clock.advance(timedelta(seconds=1))
    managed.run_due()

    assert managed.store.load_waits(wid) == []
    assert manager.of("teardown") == [
        ("teardown", "approve", True),
        ("teardown", "approve", True),
    ]


def test_cancel_tears_waits_down_as_not_handled(managed: Engine, manager: Any) -> None:
    wid = managed.new_workflow(Review())
    managed.cancel(wid, actor="ops")
    assert manager.of("teardown") == [("teardown", "approve", False)]
    assert managed.store.load_waits(wid) == []


def test_timeout_manager_sees_the_due_time(engine: Engine, manager: Any) -> None:
    engine.managers["timeout"] = manager
    wid = engine.new_workflow(Review())
    (seen,) = manager.waits
    assert seen.event == "expire"
    assert seen.due_at == seen.created_at + timedelta(hours=2)
    engine.on_callback(wid, "approve", {"approved": True})
    assert manager.of("teardown") == [("teardown", "expire", False)]


def test_recording_manager_is_a_callback_manager(manager: Any) -> None:
    m: CallbackManager = manager
    assert callable(m.setup) and callable(m.teardown)
