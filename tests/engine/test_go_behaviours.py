"""The Go original's behaviours: loops with waits, conditions between resumes, goroutines in
loops, WaitFor across threads, select teardown, and new code under running workflows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from engine import (
    CallbackRejected,
    DefinitionMismatch,
    Engine,
    Event,
    For,
    Go,
    If,
    On,
    Return,
    S,
    Step,
    ThreadStatus,
    Timeout,
    Wait,
    WaitFor,
    WaitForUserAction,
    Workflow,
    WorkflowStatus,
    current_thread,
)

ORDER: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    ORDER.clear()


def mark(name: str) -> Callable[[], None]:
    return lambda: ORDER.append(f"{current_thread()}:{name}")


# -- loops with waits inside --------------------------------------------------------------


class Item(BaseModel):
    sku: str


class Collect(Workflow):
    n: int = 3
    i: int = 0
    got: list[str] = []

    def definition(self):
        return S(
            For("each item", self.i < self.n,
                Wait("wait for item", On("item", Event(model=Item, handle=self.take))),
                Step("count", self.count),
            ),
            Return(self.got),
        )  # fmt: skip

    def take(self, item: Item) -> str:
        self.got.append(item.sku)
        return f"took {item.sku}"

    def count(self) -> None:
        ORDER.append(f"count {self.i}")
        self.i += 1


def test_loop_with_a_wait_inside_is_driven_by_n_callbacks(engine: Engine) -> None:
    wid = engine.new_workflow(Collect(n=3))
    seen_pcs = []
    for k, sku in enumerate(["a", "b", "c"]):
        info = engine.get(wid)
        assert info.status is WorkflowStatus.WAITING
        assert info.state.i == k
        (wait,) = engine.pending_waits(wid)
        assert (wait.wait, wait.event) == ("wait for item", "item")
        seen_pcs.append(wait.pc)
        assert engine.on_callback(wid, "item", {"sku": sku}, pc=wait.pc) == f"took {sku}"

    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.result == ["a", "b", "c"]
    assert ORDER == ["count 0", "count 1", "count 2"]
    assert len(set(seen_pcs)) == 3  # every iteration's wait is a new wait
    assert engine.pending_waits(wid) == []


def test_a_callback_quoting_a_previous_iterations_pc_is_stale(engine: Engine, snapshot) -> None:
    wid = engine.new_workflow(Collect(n=3))
    (first,) = engine.pending_waits(wid)
    engine.on_callback(wid, "item", {"sku": "a"}, pc=first.pc)
    before = snapshot(engine, wid)

    with pytest.raises(CallbackRejected) as err:
        engine.on_callback(wid, "item", {"sku": "again"}, pc=first.pc)

    assert err.value.reason == "stale_pc"
    assert snapshot(engine, wid) == before


class Bench(Workflow):
    """The Go original's benchmark workflow."""

    counter: int = 0

    def definition(self):
        return S(
            For("five steps", self.counter < 5,
                Step("bump", self.bump),
            ),
            Step("reset", self.reset),
            For("two waits", self.counter < 2,
                Wait("wait event", On("event", Event(model=Item, handle=self.on_event))),
                Step("after event", self.after),
            ),
        )  # fmt: skip

    def bump(self) -> None:
        self.counter += 1

    def reset(self) -> None:
        self.counter = 0

    def on_event(self, item: Item) -> None:
        self.counter += 1

    def after(self) -> None:
        ORDER.append(f"after {self.counter}")


def test_go_benchmark_workflow_runs_to_the_end_with_two_callbacks(engine: Engine) -> None:
    wid = engine.new_workflow(Bench())
    assert engine.get(wid).state.counter == 0
    engine.on_callback(wid, "event", {"sku": "1"})
    assert engine.get(wid).status is WorkflowStatus.WAITING
    engine.on_callback(wid, "event", {"sku": "2"})

    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.state.counter == 2
    assert ORDER == ["after 1", "after 2"]
    steps = [h.statement for h in engine.history(wid) if h.kind == "step"]
    assert steps == ["bump"] * 5 + ["reset", "after event", "after event"]


# -- conditions changing between resumes ---------------------------------------------------


class Toggle(Workflow):
    x: bool = False
    i: int = 0

    def definition(self):
        return S(
            If(self.x, Step("x at start", mark("x at start"))),
            Step("set x", self.set_x),
            If(self.x, Step("x after step", mark("x after step")))
            .Else(Step("no x after step", mark("no x after step"))),
            For("bool loop", self.i < 3, Step("inc", self.inc)),
            Wait("flip", On("flip", WaitForUserAction(approve=self.clear, deny=self.keep))),
            If(self.x, Return("x still set")),
            Return("x cleared"),
        )  # fmt: skip

    def set_x(self) -> None:
        self.x = True

    def inc(self) -> None:
        self.i += 1

    def clear(self) -> None:
        self.x = False

    def keep(self, reason: str) -> None:
        return None


@pytest.mark.parametrize(("approved", "result"), [(True, "x cleared"), (False, "x still set")])
def test_bool_conditions_see_the_state_of_the_last_step(
    polling_engine: Engine, approved: bool, result: str
) -> None:
    engine = polling_engine
    wid = engine.new_workflow(Toggle())
    while engine.get(wid).status is WorkflowStatus.RUNNING:
        engine.step(wid)  # every step is its own session: the state comes from the store

    info = engine.get(wid)
    assert info.state.i == 3  # the bool loop condition was re-evaluated every iteration
    assert ORDER == ["main:x after step"]

    engine.on_callback(wid, "flip", {"approved": approved, "reason": "r"})
    engine.execute(wid)

    assert engine.get(wid).result == result


# -- goroutines started in a loop with ids -------------------------------------------------


class FanOut(Workflow):
    n: int = 3
    i: int = 0
    done: list[str] = []

    def definition(self):
        return S(
            For("spawn", self.i < self.n,
                Go("worker", S(
                    Step("work", self.work),
                    Wait("worker approval",
                         On("approve", WaitForUserAction(approve=self.ok, deny=self.nok))),
                    Step("finish work", self.finish),
                ), id=lambda: f"t{self.i}"),
                Step("next", self.next),
            ),
            WaitFor("all done", lambda: len(self.done) == self.n),
            Return(sorted(self.done)),
        )  # fmt: skip

    def work(self) -> None:
        ORDER.append(f"work in {current_thread()}")

    def next(self) -> None:
        self.i += 1

    def ok(self) -> str:
        return f"approved {current_thread()}"

    def nok(self, reason: str) -> None:
        return None

    def finish(self) -> None:
        self.done.append(current_thread() or "?")


def test_goroutines_started_in_a_loop_each_run_their_own_body(engine: Engine) -> None:
    wid = engine.new_workflow(FanOut(n=3))
    info = engine.get(wid)

    assert [t.id for t in info.threads] == ["main", "t0", "t1", "t2"]
    assert {t.name for t in info.threads[1:]} == {"worker"}
    assert sorted(ORDER) == ["work in t0", "work in t1", "work in t2"]
    assert sorted(w.thread_id for w in engine.pending_waits(wid)) == ["t0", "t1", "t2"]
    assert info.thread("main").position == "all done"  # type: ignore[union-attr]

    with pytest.raises(CallbackRejected) as err:
        engine.on_callback(wid, "approve", {"approved": True})
    assert err.value.reason == "ambiguous"

    for tid in ["t1", "t0", "t2"]:
        assert engine.on_callback(wid, "approve", {"approved": True}, thread=tid) == (
            f"approved {tid}"
        )
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.result == ["t0", "t1", "t2"]
    # Every worker got through its body; main's Return may cancel one that had yet to end.
    assert [t.position for t in info.threads[1:]] == ["finish work"] * 3
    assert {t.status for t in info.threads} <= {ThreadStatus.FINISHED, ThreadStatus.CANCELLED}
    go_entries = [h.detail["started"] for h in engine.history(wid) if h.kind == "go"]
    assert go_entries == ["t0", "t1", "t2"]


# -- WaitFor across threads ---------------------------------------------------------------


class Flag(Workflow):
    flag: bool = False

    def definition(self):
        return S(
            Go("setter", S(
                Step("slow 1", mark("slow 1")),
                Step("slow 2", mark("slow 2")),
                Step("set flag", self.set_flag),
                Step("slow 3", mark("slow 3")),
            )),
            WaitFor("until flag", lambda: self.flag),
            Step("after flag", mark("after flag")),
            WaitFor("bool form", self.flag),
            Return("done"),
        )  # fmt: skip

    def set_flag(self) -> None:
        ORDER.append(f"{current_thread()}:set flag")
        self.flag = True


def test_waitfor_waits_until_another_threads_step_sets_the_flag(polling_engine: Engine) -> None:
    engine = polling_engine
    wid = engine.new_workflow(Flag())
    engine.step(wid)  # main: Go
    engine.step(wid)  # main: blocks on the WaitFor
    info = engine.get(wid)
    assert info.thread("main").status is ThreadStatus.WAITING  # type: ignore[union-attr]
    assert info.thread("main").position == "until flag"  # type: ignore[union-attr]
    assert info.status is WorkflowStatus.RUNNING  # the setter can still run

    engine.execute(wid)

    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.result == "done"
    assert ORDER.index("setter:set flag") < ORDER.index("main:after flag")
    assert ORDER[:3] == ["setter:slow 1", "setter:slow 2", "setter:set flag"]
    kinds = [(h.kind, h.statement) for h in engine.history(wid) if "waitfor" in h.kind]
    assert kinds[:2] == [("waitfor", "until flag"), ("waitfor_done", "until flag")]


class FlagByCallback(Workflow):
    flag: bool = False

    def definition(self):
        return S(
            Go("listener", S(
                Wait("poke", On("poke", WaitForUserAction(approve=self.set, deny=self.no))),
            )),
            WaitFor("until poked", lambda: self.flag),
            Return("poked"),
        )  # fmt: skip

    def set(self) -> None:
        self.flag = True

    def no(self, reason: str) -> None:
        return None


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "polling"])
def test_waitfor_woken_by_a_callback_in_another_thread(
    engine: Engine, polling_engine: Engine, inline: bool
) -> None:
    e = engine if inline else polling_engine
    wid = e.new_workflow(FlagByCallback())
    e.run_due()
    assert e.get(wid).status is WorkflowStatus.WAITING

    e.on_callback(wid, "poke", {"approved": True})
    e.run_due()

    info = e.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.result == "poked"


# -- select teardown ----------------------------------------------------------------------


class Select(Workflow):
    chosen: str = ""

    def definition(self):
        return S(
            Wait("choose",
                On("a", WaitForUserAction(approve=self.pick("a"), deny=self.no)),
                On("b", WaitForUserAction(approve=self.pick("b"), deny=self.no),
                   Step("after b", mark("after b"))),
                On("c", WaitForUserAction(approve=self.pick("c"), deny=self.no)),
                On("late", Timeout(after=__import__("datetime").timedelta(hours=1))),
            ),
            Return(self.chosen),
        )  # fmt: skip

    def pick(self, name: str) -> Callable[[], None]:
        def f() -> None:
            self.chosen = name

        return f

    def no(self, reason: str) -> None:
        return None


def test_select_runs_exactly_one_case_and_tears_the_others_down(
    engine: Engine, manager: Any
) -> None:
    engine.managers["user_action"] = manager
    wid = engine.new_workflow(Select())
    assert sorted(manager.of("setup")) == [("setup", e, None) for e in "abc"]
    assert {w.status.value for w in engine.pending_waits(wid)} == {"set_up"}

    engine.on_callback(wid, "b", {"approved": True}, actor="carol")

    assert sorted(manager.of("teardown")) == [
        ("teardown", "a", False),
        ("teardown", "b", True),
        ("teardown", "c", False),
    ]
    info = engine.get(wid)
    assert info.result == "b"
    assert ORDER == ["main:after b"]
    assert engine.pending_waits(wid) == []
    assert engine.store.load_waits(wid) == []
    with pytest.raises(CallbackRejected) as err:
        engine.on_callback(wid, "a", {"approved": True})
    assert err.value.reason == "finished"


# -- updating the definition between resumes ----------------------------------------------


def _approval() -> WaitForUserAction:
    return WaitForUserAction(approve=lambda: None, deny=lambda reason: None)


class DeployV1(Workflow):
    type_name = "deployed"

    def definition(self):
        return S(
            Step("a", mark("v1 a")),
            Wait("w", On("go", _approval())),
            Return("v1"),
        )


class DeployV2Added(Workflow):
    type_name = "deployed"

    def definition(self):
        return S(
            Step("before a", mark("v2 before a")),  # new, but behind every running workflow
            Step("a", mark("v2 a")),
            Wait("w", On("go", _approval())),
            Step("added", mark("v2 added")),
            Return("v2"),
        )


class DeployV3Removed(Workflow):
    type_name = "deployed"

    def definition(self):
        return S(
            Step("a", mark("v3 a")),
            Wait("renamed wait", On("go", _approval())),
            Step("new end", mark("v3 new end")),
            Return("v3"),
        )


class DeployV4CaseRemoved(Workflow):
    type_name = "deployed"

    def definition(self):
        return S(Step("a", mark("v4 a")), Wait("w", On("other", _approval())), Return("v4"))


def test_a_step_added_after_the_wait_runs_after_the_callback(make_engine) -> None:
    old = make_engine(DeployV1)
    wid = old.new_workflow(DeployV1())
    assert ORDER == ["main:v1 a"]

    new = make_engine(DeployV2Added)  # the deploy: same store, same type name, new code
    new.on_callback(wid, "go", {"approved": True})

    info = new.get(wid)
    assert info.status is WorkflowStatus.FINISHED
    assert info.result == "v2"
    assert ORDER == ["main:v1 a", "main:v2 added"]  # nothing before the wait re-ran


def test_a_callback_to_a_removed_in_flight_wait_is_a_mismatch_and_changes_nothing(
    make_engine, snapshot
) -> None:
    old = make_engine(DeployV1)
    wid = old.new_workflow(DeployV1())
    before = snapshot(old, wid)
    new = make_engine(DeployV3Removed)

    with pytest.raises(DefinitionMismatch) as err:
        new.on_callback(wid, "go", {"approved": True})

    assert err.value.workflow_id == wid
    assert err.value.statement == "w"
    assert snapshot(new, wid) == before
    assert new.get(wid).status is WorkflowStatus.WAITING  # still visible to operators
    assert ORDER == ["main:v1 a"]


def test_execute_with_a_removed_in_flight_wait_is_a_mismatch_and_changes_nothing(
    make_engine, snapshot
) -> None:
    """A thread blocked on a statement the new code lacks is reported, not left silently."""
    old = make_engine(DeployV1)
    wid = old.new_workflow(DeployV1())
    before = snapshot(old, wid)
    new = make_engine(DeployV3Removed)

    with pytest.raises(DefinitionMismatch) as err:
        new.execute(wid)
    assert err.value.workflow_id == wid
    assert err.value.thread == "main"
    assert err.value.statement == "w"
    assert snapshot(new, wid) == before
    assert ORDER == ["main:v1 a"]


def test_operator_moves_a_mismatched_thread_and_it_runs_on(make_engine) -> None:
    old = make_engine(DeployV1)
    wid = old.new_workflow(DeployV1())
    new = make_engine(DeployV3Removed)

    new.goto(wid, "main", "renamed wait", actor="ops")
    new.on_callback(wid, "go", {"approved": True}, actor="alice")

    info = new.get(wid)
    assert info.result == "v3"
    assert ORDER == ["main:v1 a", "main:v3 new end"]


def test_a_removed_position_of_a_running_thread_is_a_mismatch(make_engine, snapshot) -> None:
    from engine import PollingResumer

    old = make_engine(DeployV2Added, resumer=PollingResumer())
    wid = old.new_workflow(DeployV2Added())
    old.step(wid)  # stands on "before a", done
    before = snapshot(old, wid)
    new = make_engine(DeployV1, resumer=PollingResumer())  # a rollback without "before a"

    with pytest.raises(DefinitionMismatch) as err:
        new.execute(wid)
    assert (err.value.workflow_id, err.value.thread, err.value.statement) == (
        wid,
        "main",
        "before a",
    )
    with pytest.raises(DefinitionMismatch):
        new.step(wid)
    assert snapshot(new, wid) == before
    assert ORDER == ["main:v2 before a"]


def test_a_removed_wait_case_after_the_callback_is_a_mismatch(make_engine, snapshot) -> None:
    from engine import PollingResumer

    old = make_engine(DeployV1, resumer=PollingResumer())
    wid = old.new_workflow(DeployV1())
    old.execute(wid)
    old.on_callback(wid, "go", {"approved": True})  # handled, not yet run on
    before = snapshot(old, wid)
    new = make_engine(DeployV4CaseRemoved, resumer=PollingResumer())

    with pytest.raises(DefinitionMismatch, match="no longer has that case"):
        new.execute(wid)
    assert snapshot(new, wid) == before


def test_a_removed_goroutine_is_a_mismatch(make_engine, snapshot) -> None:
    from engine import PollingResumer

    class WithGo(Workflow):
        type_name = "go-deploy"

        def definition(self):
            return S(Go("helper", S(Step("h", mark("h")))), Step("m", mark("m")))

    class WithoutGo(Workflow):
        type_name = "go-deploy"

        def definition(self):
            return S(Step("helper", mark("not a go")), Step("m", mark("m")))

    old = make_engine(WithGo, resumer=PollingResumer())
    wid = old.new_workflow(WithGo())
    old.step(wid)  # main starts the goroutine
    old.step(wid)  # main runs "m"; the helper has not run yet
    before = snapshot(old, wid)
    new = make_engine(WithoutGo, resumer=PollingResumer())

    with pytest.raises(DefinitionMismatch) as err:
        new.execute(wid)
    assert err.value.thread == "helper"
    assert snapshot(new, wid) == before


def test_conditions_in_new_code_see_the_stored_state(make_engine) -> None:
    class V1(Workflow):
        type_name = "cond-deploy"
        amount: int = 0

        def definition(self):
            return S(Wait("w", On("go", _approval())), Return("v1"))

    class V2(Workflow):
        type_name = "cond-deploy"
        amount: int = 0
        note: str = "default for old workflows"

        def definition(self):
            return S(
                Wait("w", On("go", _approval())),
                If(self.amount > 100, Return(f"big: {self.note}")),
                Return("small"),
            )

    old = make_engine(V1)
    wid = old.new_workflow(V1(amount=500))
    new = make_engine(V2)
    new.on_callback(wid, "go", {"approved": True})
    assert new.get(wid).result == "big: default for old workflows"
