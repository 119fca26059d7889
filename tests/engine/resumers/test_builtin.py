"""Resumers: inline runs due work at once; polling leaves it to execute/step/run_due.

The engine tells its resumer about work due later (a timer, a step's retry) after a session,
and ``Engine.resume`` fires one workflow's due timers and runs it: what a task queue needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine import (
    Engine,
    InlineResumer,
    ManualClock,
    MemoryStore,
    On,
    PollingResumer,
    RetryPolicy,
    Return,
    S,
    Step,
    Timeout,
    Wait,
    Workflow,
    WorkflowStatus,
)

RAN: list[str] = []


class Short(Workflow):
    def definition(self):
        return S(
            Step("a", lambda: RAN.append("a")),
            Wait("w", On("t", Timeout(after=timedelta(seconds=5)))),
            Return("ok"),
        )


def test_inline_resumer_executes_at_once(store: MemoryStore, clock: ManualClock) -> None:
    RAN.clear()
    engine = Engine(store, clock=clock, resumer=InlineResumer())
    wid = engine.new_workflow(Short())
    assert RAN == ["a"]
    assert engine.get(wid).status is WorkflowStatus.WAITING


def test_inline_resumer_leaves_future_work_to_run_due(
    store: MemoryStore, clock: ManualClock
) -> None:
    RAN.clear()
    engine = Engine(store, clock=clock, resumer=PollingResumer())
    wid = engine.new_workflow(Short())
    InlineResumer().schedule(engine, wid, at=clock.now() + timedelta(hours=1))
    assert RAN == []
    InlineResumer().schedule(engine, wid, at=clock.now())
    assert RAN == ["a"]


def test_inline_resumer_logs_engine_errors_instead_of_raising(
    store: MemoryStore, clock: ManualClock, caplog
) -> None:
    engine = Engine(store, clock=clock)
    InlineResumer().schedule(engine, "missing")  # WorkflowNotFound is logged, not raised
    assert "missing" in caplog.text


def test_polling_resumer_runs_nothing_until_run_due(store: MemoryStore, clock: ManualClock) -> None:
    RAN.clear()
    engine = Engine(store, clock=clock, resumer=PollingResumer())
    wid = engine.new_workflow(Short())
    assert RAN == []
    assert engine.run_due() == 1
    assert RAN == ["a"]
    clock.advance(timedelta(seconds=5))
    engine.run_due()  # fires the timer, then runs the workflow it made due
    assert engine.get(wid).result == "ok"


@dataclass
class Recording:
    """A resumer that only notes what it was told."""

    calls: list[tuple[str, datetime | None]] = field(default_factory=list)

    def schedule(self, engine: Engine, workflow_id: str, *, at: datetime | None = None) -> None:
        self.calls.append((workflow_id, at))


class Flaky(Workflow):
    fails: int = 1

    def definition(self):
        return S(Step("flaky", self.flaky, retry=RetryPolicy(max_attempts=3)), Return("ok"))

    def flaky(self) -> None:
        RAN.append("flaky")
        if len(RAN) <= self.fails:
            raise RuntimeError("not yet")


def test_an_armed_timer_is_scheduled_for_when_it_falls_due(
    store: MemoryStore, clock: ManualClock
) -> None:
    resumer = Recording()
    engine = Engine(store, clock=clock, resumer=resumer)
    wid = engine.new_workflow(Short())
    assert resumer.calls == [(wid, None)]
    engine.execute(wid)
    assert resumer.calls[1:] == [(wid, clock.now() + timedelta(seconds=5))]
    engine.execute(wid)  # nothing ran, the timer still stands: told again (duplicates are fine)
    assert resumer.calls[2:] == [(wid, clock.now() + timedelta(seconds=5))]


def test_a_step_retry_is_scheduled_for_its_back_off(store: MemoryStore, clock: ManualClock) -> None:
    RAN.clear()
    resumer = Recording()
    engine = Engine(store, clock=clock, resumer=resumer)
    wid = engine.new_workflow(Flaky())
    engine.execute(wid)
    assert engine.get(wid).threads[0].retry_at == clock.now() + timedelta(seconds=1)
    assert resumer.calls[1:] == [(wid, clock.now() + timedelta(seconds=1))]
    clock.advance(timedelta(seconds=1))
    engine.execute(wid)
    assert engine.get(wid).result == "ok"
    assert resumer.calls[2:] == []  # finished: nothing due later


def test_work_due_now_is_not_rescheduled(store: MemoryStore, clock: ManualClock) -> None:
    RAN.clear()
    resumer = Recording()
    engine = Engine(store, clock=clock, resumer=resumer)
    wid = engine.new_workflow(Short())
    engine.step(wid)  # one step of two: the rest is due now, for whoever runs step/execute
    assert resumer.calls == [(wid, None)]
    assert RAN == ["a"]


def test_resume_fires_due_timers_then_executes(store: MemoryStore, clock: ManualClock) -> None:
    RAN.clear()
    engine = Engine(store, clock=clock, resumer=PollingResumer())
    wid = engine.new_workflow(Short())
    assert engine.resume(wid).status is WorkflowStatus.WAITING
    assert engine.resume(wid).status is WorkflowStatus.WAITING  # the timer is not due yet
    clock.advance(timedelta(seconds=5))
    info = engine.resume(wid)
    assert (info.status, info.result) == (WorkflowStatus.FINISHED, "ok")
    assert [h.actor for h in engine.history(wid) if h.kind == "callback"] == ["timer"]


class TwoTimers(Workflow):
    def definition(self):
        return S(
            Wait(
                "w",
                On("soon", Timeout(after=timedelta(seconds=1)), Return("soon")),
                On("later", Timeout(after=timedelta(seconds=2)), Return("later")),
            )
        )


def test_resume_with_two_due_timers_of_one_wait_takes_the_first(
    store: MemoryStore, clock: ManualClock
) -> None:
    engine = Engine(store, clock=clock, resumer=PollingResumer())
    wid = engine.new_workflow(TwoTimers())
    engine.execute(wid)
    clock.advance(timedelta(seconds=3))
    assert engine.resume(wid).result in {"soon", "later"}
    assert len([h for h in engine.history(wid) if h.kind == "callback"]) == 1
