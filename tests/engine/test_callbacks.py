"""on_callback: exactly-once delivery; every rejection names its reason and changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from engine import (
    CallbackRejected,
    Engine,
    Event,
    For,
    Go,
    GorchError,
    InvalidInput,
    InvalidOperation,
    ManualClock,
    On,
    Return,
    S,
    Step,
    Timeout,
    UserAction,
    Wait,
    WaitForUserAction,
    Workflow,
    WorkflowNotFound,
    WorkflowStatus,
)


class Approval(Workflow):
    approved: bool | None = None
    reason: str = ""
    touched: int = 0

    def definition(self):
        return S(
            Step("prepare", lambda: None),
            Wait("approval",
                On("decision", WaitForUserAction(approve=self.approve, deny=self.deny)),
                On("expire", Timeout(after=timedelta(hours=1))),
            ),
            Return(self.approved),
        )  # fmt: skip

    def approve(self) -> str:
        self.approved = True
        return "thanks"

    def deny(self, reason: str) -> str:
        self.approved, self.reason = False, reason
        return f"denied: {reason}"


@pytest.fixture
def waiting(engine: Engine) -> str:
    return engine.new_workflow(Approval(), id="ap-1")


def test_callback_returns_the_handler_output_and_records_the_actor(
    engine: Engine, waiting: str
) -> None:
    out = engine.on_callback(waiting, "decision", {"approved": True}, actor="alice")

    assert out == "thanks"
    info = engine.get(waiting)
    assert info.result is True
    (cb,) = [h for h in engine.history(waiting) if h.kind == "callback"]
    assert (cb.actor, cb.thread, cb.statement) == ("alice", "main", "approval")
    assert cb.detail == {"event": "decision", "input": {"approved": True}, "output": "thanks"}


def test_the_right_pc_is_accepted(engine: Engine, waiting: str) -> None:
    (w,) = [w for w in engine.pending_waits(waiting) if w.event == "decision"]
    assert engine.on_callback(waiting, "decision", {"approved": True}, pc=w.pc) == "thanks"


def test_unknown_workflow_is_not_found(engine: Engine) -> None:
    with pytest.raises(WorkflowNotFound) as err:
        engine.on_callback("ghost", "decision", {"approved": True})
    assert err.value.workflow_id == "ghost"


def _reject(engine: Engine, wid: str, snapshot: Any, *args: Any, **kw: Any) -> CallbackRejected:
    before = snapshot(engine, wid)
    with pytest.raises(CallbackRejected) as err:
        engine.on_callback(wid, *args, **kw)
    assert snapshot(engine, wid) == before, "a rejected callback changed the workflow"
    assert err.value.workflow_id == wid
    return err.value


def test_unknown_event_is_rejected(engine: Engine, waiting: str, snapshot) -> None:
    err = _reject(engine, waiting, snapshot, "no-such-event", {"approved": True})
    assert err.reason == "no_wait"
    assert err.event == "no-such-event"
    assert "decision (main)" in str(err)  # tells what is pending


def test_delivering_twice_is_rejected(engine: Engine, polling_engine: Engine, snapshot) -> None:
    wid = polling_engine.new_workflow(Approval())
    polling_engine.execute(wid)
    polling_engine.on_callback(wid, "decision", {"approved": True})  # not yet run on
    err = _reject(polling_engine, wid, snapshot, "decision", {"approved": False, "reason": "x"})
    assert err.reason == "no_wait"
    err = _reject(polling_engine, wid, snapshot, "expire")  # the losing case is closed too
    assert err.reason == "no_wait"
    assert polling_engine.execute(wid).result is True


def test_finished_workflow_is_rejected(engine: Engine, waiting: str, snapshot) -> None:
    engine.on_callback(waiting, "decision", {"approved": True})
    err = _reject(engine, waiting, snapshot, "decision", {"approved": True})
    assert err.reason == "finished"


def test_cancelled_workflow_is_rejected(engine: Engine, waiting: str, snapshot) -> None:
    engine.cancel(waiting, actor="ops")
    err = _reject(engine, waiting, snapshot, "decision", {"approved": True})
    assert err.reason == "finished"


@pytest.mark.parametrize("delta", [-1, 1, 100])
def test_stale_pc_is_rejected(engine: Engine, waiting: str, snapshot, delta: int) -> None:
    (w,) = [w for w in engine.pending_waits(waiting) if w.event == "decision"]
    err = _reject(engine, waiting, snapshot, "decision", {"approved": True}, pc=w.pc + delta)
    assert err.reason == "stale_pc"
    assert err.statement == "approval"
    assert err.thread == "main"


class Twins(Workflow):
    def definition(self):
        return S(
            Go("left", S(Wait("left wait", On("ping", _ua())))),
            Go("right", S(Wait("right wait", On("ping", _ua())))),
            Wait("main wait", On("stop", _ua())),
        )


def _ua() -> WaitForUserAction:
    return WaitForUserAction(approve=lambda: "pong", deny=lambda reason: None)


def test_ambiguous_thread_is_rejected_and_thread_picks_one(engine: Engine, snapshot) -> None:
    wid = engine.new_workflow(Twins())
    err = _reject(engine, wid, snapshot, "ping", {"approved": True})
    assert err.reason == "ambiguous"
    assert "pass thread=" in str(err)

    err = _reject(engine, wid, snapshot, "ping", {"approved": True}, thread="nobody")
    assert err.reason == "no_wait"
    err = _reject(engine, wid, snapshot, "stop", {"approved": True}, thread="left")
    assert err.reason == "no_wait"

    assert engine.on_callback(wid, "ping", {"approved": True}, thread="right") == "pong"
    info = engine.get(wid)
    assert info.thread("right").status.value == "finished"  # type: ignore[union-attr]
    assert info.thread("left").status.value == "waiting"  # type: ignore[union-attr]


# -- input validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"approved": "maybe"},
        {"approved": True, "extra": 1},
        {"reason": "no decision"},
        {},
        None,
        "not json",
        '{"approved": "maybe"}',
        [True],
    ],
    ids=["not-bool", "extra-key", "missing-key", "empty", "none", "bad-json", "json", "list"],
)
def test_bad_user_action_input_is_invalid_input(
    engine: Engine, waiting: str, snapshot, bad: Any
) -> None:
    err = _reject(engine, waiting, snapshot, "decision", bad)
    assert isinstance(err, InvalidInput)
    assert err.reason == "invalid_input"
    assert err.errors  # the validation details
    assert "UserAction" in str(err)


def test_invalid_input_names_the_event(engine: Engine, waiting: str) -> None:
    with pytest.raises(InvalidInput) as err:
        engine.on_callback(waiting, "decision", {"approved": "maybe"})
    assert err.value.workflow_id == waiting
    assert err.value.event == "decision"


@pytest.mark.parametrize(
    ("given", "approved", "reason"),
    [
        ({"approved": True}, True, ""),
        ({"approved": False, "reason": "too much"}, False, "too much"),
        ('{"approved": false, "reason": "json"}', False, "json"),
        (UserAction(approved=True), True, ""),
    ],
)
def test_good_user_action_input(
    engine: Engine, waiting: str, given: Any, approved: bool, reason: str
) -> None:
    engine.on_callback(waiting, "decision", given)
    info = engine.get(waiting)
    assert (info.state.approved, info.state.reason) == (approved, reason)


class Shipped(BaseModel):
    carrier: str
    weight_kg: float


class Shipping(Workflow):
    seen: list[str] = []

    def definition(self):
        return S(
            Wait("ship", On("shipped", Event(model=Shipped, handle=self.ship))),
            Wait("ack", On("ack", Event(model=Shipped))),
            Return(self.seen),
        )

    def ship(self, event: Shipped) -> float:
        assert isinstance(event, Shipped)  # the validated model, not the raw dict
        self.seen.append(event.carrier)
        return event.weight_kg * 2


def test_event_validates_and_passes_the_model_instance(engine: Engine, snapshot) -> None:
    wid = engine.new_workflow(Shipping())
    err = _reject(engine, wid, snapshot, "shipped", {"carrier": "dhl", "weight_kg": "heavy"})
    assert isinstance(err, InvalidInput)
    assert any(e["loc"] == ("weight_kg",) for e in err.errors)
    err = _reject(engine, wid, snapshot, "shipped", {"weight_kg": 1})
    assert isinstance(err, InvalidInput)

    assert engine.on_callback(wid, "shipped", {"carrier": "dhl", "weight_kg": "1.5"}) == 3.0
    assert engine.on_callback(wid, "ack", Shipped(carrier="x", weight_kg=0)) is None
    assert engine.get(wid).result == ["dhl"]


# -- handlers that fail -------------------------------------------------------------------


class Fragile(Workflow):
    value: int = 0

    def definition(self):
        return S(
            Wait("w",
                 On("explode", WaitForUserAction(approve=self.explode, deny=self.gorch))),
            Return(self.value),
        )  # fmt: skip

    def explode(self) -> None:
        self.value = 999  # changed, then the handler fails: the change must not stick
        raise RuntimeError("handler blew up")

    def gorch(self, reason: str) -> None:
        raise InvalidOperation(f"refused: {reason}")


def test_a_raising_handler_is_rejected_and_the_state_is_unchanged(engine: Engine, snapshot) -> None:
    wid = engine.new_workflow(Fragile())
    err = _reject(engine, wid, snapshot, "explode", {"approved": True})
    assert err.reason == "handler_error"
    assert "RuntimeError: handler blew up" in str(err)
    assert isinstance(err.__cause__, RuntimeError)
    assert engine.get(wid).state.value == 0
    assert len(engine.pending_waits(wid)) == 1  # still deliverable


def test_a_handler_raising_a_gorch_error_keeps_it(engine: Engine, snapshot) -> None:
    wid = engine.new_workflow(Fragile())
    before = snapshot(engine, wid)
    with pytest.raises(InvalidOperation) as err:
        engine.on_callback(wid, "explode", {"approved": False, "reason": "no"})
    assert err.value.workflow_id == wid
    assert snapshot(engine, wid) == before


class CustomHandler:
    """A user-written handler: anything with ``type`` and ``handle(input)``."""

    type = "webhook"

    def __init__(self, sink: list[Any]) -> None:
        self.sink = sink

    def handle(self, input: Any) -> Any:
        self.sink.append(input)
        return {"received": input}


def test_a_custom_handler_follows_the_protocol(engine: Engine) -> None:
    sink: list[Any] = []

    class Hook(Workflow):
        def definition(self):
            return S(Wait("hook", On("called", CustomHandler(sink))), Return("hooked"))

    wid = engine.new_workflow(Hook())
    (w,) = engine.pending_waits(wid)
    assert w.type == "webhook"
    assert engine.on_callback(wid, "called", {"x": 1}) == {"received": {"x": 1}}
    assert sink == [{"x": 1}]
    assert engine.get(wid).result == "hooked"


def test_async_handlers_are_awaited(engine: Engine) -> None:
    class AsyncApproval(Workflow):
        approved: bool = False

        def definition(self):
            return S(
                Wait("w", On("d", WaitForUserAction(approve=self.approve, deny=self.deny))),
                Return(self.approved),
            )

        async def approve(self) -> str:
            self.approved = True
            return "async ok"

        async def deny(self, reason: str) -> None:
            return None

    wid = engine.new_workflow(AsyncApproval())
    assert engine.on_callback(wid, "d", {"approved": True}) == "async ok"
    assert engine.get(wid).result is True


# -- timers -------------------------------------------------------------------------------


def test_timeout_fires_only_once_its_time_has_come(
    engine: Engine, waiting: str, clock: ManualClock
) -> None:
    (timer,) = [w for w in engine.pending_waits(waiting) if w.type == "timeout"]
    assert timer.due_at == clock.now() + timedelta(hours=1)
    assert timer.data == {"after_seconds": 3600.0, "assignees": None}  # no person decides it

    clock.advance(timedelta(minutes=59))
    assert engine.run_due() == 0
    assert engine.get(waiting).status is WorkflowStatus.WAITING

    clock.advance(timedelta(minutes=1))
    assert engine.run_due() >= 1
    info = engine.get(waiting)
    assert info.status is WorkflowStatus.FINISHED
    assert info.result is None
    (cb,) = [h for h in engine.history(waiting) if h.kind == "callback"]
    assert (cb.actor, cb.detail["event"]) == ("timer", "expire")
    assert engine.run_due() == 0  # fired once


def test_a_timer_inside_a_loop_is_armed_afresh_each_iteration(
    engine: Engine, clock: ManualClock
) -> None:
    ticks: list[str] = []

    class Ticker(Workflow):
        n: int = 0

        def definition(self):
            return S(
                For("ticks", self.n < 3,
                    Wait("tick", On("t", Timeout(after=timedelta(minutes=5)))),
                    Step("count", self.count),
                ),
                Return(self.n),
            )  # fmt: skip

        def count(self) -> None:
            ticks.append(clock.now().isoformat())
            self.n += 1

    wid = engine.new_workflow(Ticker())
    for _ in range(3):
        clock.advance(timedelta(minutes=5))
        engine.run_due()
    info = engine.get(wid)
    assert info.result == 3
    assert len(ticks) == 3 and len(set(ticks)) == 3


def test_timeout_with_a_handle_function(engine: Engine, clock: ManualClock) -> None:
    class Late(Workflow):
        note: str = ""

        def definition(self):
            return S(
                Wait("w", On("late", Timeout(after=timedelta(seconds=1), handle=self.late))),
                Return(self.note),
            )

        def late(self) -> str:
            self.note = "too late"
            return "fired"

    wid = engine.new_workflow(Late())
    clock.advance(timedelta(seconds=1))
    engine.run_due()
    assert engine.get(wid).result == "too late"
    (cb,) = [h for h in engine.history(wid) if h.kind == "callback"]
    assert cb.detail["output"] == "fired"


def test_every_rejection_is_a_gorch_error() -> None:
    assert issubclass(CallbackRejected, GorchError)
    assert issubclass(InvalidInput, CallbackRejected)


def test_oversized_input_is_rejected_before_anything_runs(store: Any, clock: Any) -> None:
    from engine import Engine, InvalidInput, On, S, Wait, WaitForUserAction, Workflow

    class Small(Workflow):
        got: int = 0

        def definition(self):
            return S(
                Wait(
                    "w",
                    On(
                        "e",
                        WaitForUserAction(
                            approve=lambda: None,
                            deny=lambda reason: setattr(self, "got", len(reason)),
                        ),
                    ),
                )
            )

    engine = Engine(store, [Small], clock=clock, max_input_bytes=1000)
    wid = engine.new_workflow(Small())
    before = engine.get(wid)
    with pytest.raises(InvalidInput, match="over the limit of 1000") as err:
        engine.on_callback(wid, "e", {"approved": False, "reason": "x" * 2000})
    assert err.value.workflow_id == wid and err.value.event == "e"
    after = engine.get(wid)
    assert (after.pc, after.version, after.state.got) == (before.pc, before.version, 0)
    engine.on_callback(wid, "e", {"approved": False, "reason": "x" * 100})
    assert engine.get(wid).state.got == 100
