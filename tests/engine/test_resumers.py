"""Resumers: inline runs due work at once; polling leaves it to execute/step/run_due."""

from __future__ import annotations

from datetime import timedelta

from engine import (
    Engine,
    InlineResumer,
    ManualClock,
    MemoryStore,
    On,
    PollingResumer,
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
