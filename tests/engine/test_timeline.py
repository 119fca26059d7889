"""``Engine.timeline``: where every thread stood after each history line, replayed from the
history alone, checked against the stored record after every single step and action."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine import (
    MAIN,
    Engine,
    For,
    Go,
    HistoryEntry,
    HistoryKind,
    If,
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
    WaitFor,
    WaitForUserAction,
    Workflow,
    WorkflowNotFound,
    known_from,
)

FLAKY = {"left": 0}


class Busy(Workflow):
    n: int = 0
    ok: bool = False
    ready: bool = False
    crash: bool = False

    def definition(self):
        return S(
            Step("start", self.inc),
            Go("worker", S(
                For("loop", lambda: self.n < 3, Step("tick", self.inc)),
                WaitFor("until ready", lambda: self.ready),
                Step("after ready", self.inc),
            ), id="w1"),
            Step("flaky", self.flaky, retry=RetryPolicy(max_attempts=2,
                                                         initial_interval=timedelta(seconds=5))),
            Wait("decide",
                On("ok", WaitForUserAction(approve=self.approve, deny=self.deny)),
                On("late", Timeout(after=timedelta(hours=1))),
            ),
            Step("set ready", self.set_ready),
            If(lambda: self.boom(), Step("never", self.inc), name="check"),
            Return(self.n),
        )  # fmt: skip

    def inc(self) -> None:
        self.n += 1

    def flaky(self) -> None:
        if FLAKY["left"] > 0:
            FLAKY["left"] -= 1
            raise RuntimeError("flaky")

    def approve(self) -> None:
        self.ok = True

    def deny(self, reason: str) -> None:
        self.ok = False

    def set_ready(self) -> None:
        self.ready = True

    def boom(self) -> bool:
        if self.crash:
            raise ValueError("condition broke")
        return False


def agrees(engine: Engine, wid: str) -> None:
    """The timeline's last point is the workflow as stored."""
    info = engine.get(wid)
    last = engine.timeline(wid)[-1]
    assert last.status == info.status
    # ``event`` means something with the ``handled`` phase only (a record keeps it after)
    assert [
        (t.id, t.name, t.position, t.phase, t.status, t.event if t.phase == "handled" else None)
        for t in last.threads
    ] == [
        (t.id, t.name, t.position, t.phase, t.status, t.event if t.phase == "handled" else None)
        for t in info.threads
    ]
    assert last.exact
    if info.status.done:
        assert (last.result, last.error) == (info.result, info.error)


@pytest.fixture
def engine() -> Engine:
    return Engine(MemoryStore(), [Busy], clock=ManualClock(), resumer=PollingResumer())


def test_every_step_of_a_busy_workflow_replays_to_what_is_stored(engine: Engine) -> None:
    FLAKY["left"] = 1
    wid = engine.new_workflow(Busy(), "b1")
    agrees(engine, wid)
    for _ in range(12):
        engine.step(wid)
        agrees(engine, wid)
    engine.clock.advance(timedelta(seconds=6))  # type: ignore[attr-defined]
    for _ in range(4):
        engine.step(wid)
        agrees(engine, wid)
    assert engine.get(wid).status == "waiting"
    engine.on_callback(wid, "ok", {"approved": True}, actor="ann")
    agrees(engine, wid)
    engine.goto(wid, MAIN, "flaky", actor="ops")
    agrees(engine, wid)
    engine.execute(wid)
    agrees(engine, wid)
    engine.clock.advance(timedelta(hours=2))  # type: ignore[attr-defined]
    engine.run_due()
    agrees(engine, wid)
    assert engine.get(wid).status == "finished"
    kinds = {p.entry.kind for p in engine.timeline(wid)}
    assert {"go", "step_error", "waitfor", "waitfor_done", "callback", "goto", "finished"} <= kinds


def test_failures_retries_and_cancel_replay(engine: Engine) -> None:
    wid = engine.new_workflow(Busy(crash=True), "b2")
    engine.execute(wid)
    engine.on_callback(wid, "ok", {"approved": True}, actor="ann")
    engine.execute(wid)
    info = engine.get(wid)
    assert info.status == "failed"
    agrees(engine, wid)
    failed = engine.timeline(wid)[-1].thread(MAIN)
    assert failed is not None and failed.status == "failed" and failed.error
    engine.retry(wid, actor="ops")
    agrees(engine, wid)
    engine.cancel(wid, actor="ops")
    agrees(engine, wid)
    assert engine.timeline(wid)[-1].status == "cancelled"


def test_points_are_in_history_order_with_their_entries(engine: Engine) -> None:
    wid = engine.new_workflow(Busy(), "b3")
    engine.execute(wid)
    points, history = engine.timeline(wid), engine.history(wid)
    assert [p.entry for p in points] == history
    assert [p.index for p in points] == list(range(len(history)))
    assert points[0].entry.kind == "created" and points[0].threads[0].position == ""
    assert known_from(points) == 0


def test_unknown_id_raises_workflow_not_found(engine: Engine) -> None:
    with pytest.raises(WorkflowNotFound):
        engine.timeline("nope")
    with pytest.raises(WorkflowNotFound):
        engine.timeline("\x00")


def test_a_failure_line_stored_before_positions_were_recorded_is_marked_inexact() -> None:
    from engine._timeline import replay

    def line(kind: str, **kw: object) -> HistoryEntry:
        return HistoryEntry("w", ManualClock().now(), kind, **kw)  # type: ignore[arg-type]

    old = [
        line(HistoryKind.CREATED),
        line(HistoryKind.STEP, thread=MAIN, statement="a"),
        line(HistoryKind.THREAD_FAILED, thread=MAIN, statement="cond", detail={"error": "x"}),
        line(HistoryKind.RETRIED, thread=MAIN, statement="a"),
        line(HistoryKind.GOTO, thread=MAIN, statement="a"),
    ]
    points = replay(old)
    assert [p.exact for p in points] == [True, True, False, False, True]
    assert points[2].threads[0].position == "cond"  # the best guess: where it failed
    assert known_from(points) == 4
    assert known_from(points[:3]) == 3
