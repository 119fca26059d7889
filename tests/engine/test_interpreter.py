"""The interpreter as a pure function of (compiled definition, thread record): no store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine import (
    Break,
    Case,
    Continue,
    Default,
    DefinitionMismatch,
    For,
    Go,
    If,
    On,
    Return,
    RunawayLoop,
    S,
    Step,
    Switch,
    Wait,
    WaitFor,
    WaitForUserAction,
    current_thread,
)
from engine._definition.compiler import compile_definition
from engine._interpreter import (
    Blocked,
    BlockedFor,
    Crashed,
    Ended,
    GoStart,
    Returned,
    StepRaised,
    StepRan,
    advance,
    run_callable,
)
from engine._records import Phase, ThreadState


def noop() -> None:
    return None


def ua() -> WaitForUserAction:
    return WaitForUserAction(approve=noop, deny=lambda reason: None)


def at(position: str = "", phase: Phase = Phase.AT, **kw: Any) -> ThreadState:
    return ThreadState("main", position=position, phase=phase, **kw)


def run(definition: Any, thread: ThreadState | None = None, **kw: Any) -> Any:
    return advance(compile_definition(definition), thread or at(), **kw)


def test_first_step_runs_and_the_thread_record_is_left_alone() -> None:
    ran: list[str] = []
    d = S(Step("a", lambda: ran.append("a") or 41), Step("b", lambda: ran.append("b")))
    t = at()
    before = t.copy()

    out = run(d, t)

    assert isinstance(out, StepRan)
    assert out.step.name == "a"
    assert out.value == 41
    assert ran == ["a"]
    assert t == before


def test_a_done_position_continues_after_it() -> None:
    ran: list[str] = []
    d = S(Step("a", lambda: ran.append("a")), Step("b", lambda: ran.append("b")))
    out = run(d, at("a", Phase.DONE))
    assert isinstance(out, StepRan) and out.step.name == "b"
    assert ran == ["b"]


def test_an_at_position_runs_that_statement_again() -> None:
    ran: list[str] = []
    d = S(Step("a", lambda: ran.append("a")), Step("b", lambda: ran.append("b")))
    out = run(d, at("b", Phase.AT))
    assert isinstance(out, StepRan) and out.step.name == "b"


def test_end_of_body_is_ended_and_return_is_returned() -> None:
    assert isinstance(run(S(Step("a", noop)), at("a", Phase.DONE)), Ended)
    out = run(S(Step("a", noop), Return({"x": 1}, error="e")), at("a", Phase.DONE))
    assert out == Returned({"x": 1}, "e")


def test_raising_step_is_reported_not_raised() -> None:
    boom = ValueError("boom")

    def fail() -> None:
        raise boom

    out = run(S(Step("a", fail)))
    assert isinstance(out, StepRaised)
    assert out.error is boom
    assert out.step.name == "a"


def test_if_elseif_else_pick_the_first_branch_that_holds() -> None:
    def pick(x: int) -> str:
        d = S(
            If(x == 1, Step("one", noop))
            .ElseIf(lambda: x == 2, Step("two", noop))
            .Else(Step("other", noop)),
        )
        out = run(d)
        assert isinstance(out, StepRan)
        return out.step.name

    assert [pick(1), pick(2), pick(3)] == ["one", "two", "other"]


def test_if_without_a_holding_branch_is_skipped() -> None:
    out = run(S(If(False, Step("no", noop)), Step("after", noop)))
    assert isinstance(out, StepRan) and out.step.name == "after"


def test_switch_picks_the_first_case_or_the_default() -> None:
    def pick(x: int) -> str:
        d = S(
            Switch(
                Case(x < 0, Step("neg", noop)),
                Case(lambda: x == 0, Step("zero", noop)),
                Default(Step("pos", noop)),
            )
        )
        out = run(d)
        assert isinstance(out, StepRan)
        return out.step.name

    assert [pick(-1), pick(0), pick(5)] == ["neg", "zero", "pos"]


def test_after_a_branch_the_thread_continues_after_the_if() -> None:
    d = S(If(True, Step("in", noop)), Step("after", noop))
    out = run(d, at("in", Phase.DONE))
    assert isinstance(out, StepRan) and out.step.name == "after"


def test_end_of_loop_body_goes_back_to_the_condition() -> None:
    state = {"go": True}
    d = S(For("l", lambda: state["go"], Step("body", noop)), Step("after", noop))
    out = run(d, at("body", Phase.DONE))
    assert isinstance(out, StepRan) and out.step.name == "body"
    state["go"] = False
    out = run(d, at("body", Phase.DONE))
    assert isinstance(out, StepRan) and out.step.name == "after"


def test_break_leaves_the_innermost_loop_only() -> None:
    d = S(
        For(
            "outer",
            True,
            For("inner", True, Step("s", noop), Break()),
            Step("outer step", noop),
        ),
    )
    out = run(d, at("s", Phase.DONE))
    assert isinstance(out, StepRan) and out.step.name == "outer step"


def test_continue_skips_the_rest_of_the_body() -> None:
    calls = {"n": 0}

    def cond() -> bool:
        calls["n"] += 1
        return calls["n"] < 3

    d = S(
        For("l", cond, Step("s", noop), If(True, Continue()), Step("skipped", noop)),
        Step("after", noop),
    )
    out = run(d, at("s", Phase.DONE))
    assert isinstance(out, StepRan) and out.step.name == "s"
    assert calls["n"] == 1  # Continue went back to the condition, which held


def test_break_inside_a_wait_case_leaves_the_loop() -> None:
    d = S(For("l", True, Wait("w", On("stop", ua(), Break()))), Step("after", noop))
    t = at("w", Phase.HANDLED, event="stop")
    out = run(d, t)
    assert isinstance(out, StepRan) and out.step.name == "after"


def test_wait_blocks_and_a_handled_case_runs_its_statements() -> None:
    d = S(Wait("w", On("a", ua(), Step("in a", noop)), On("b", ua())), Step("after", noop))
    out = run(d)
    assert isinstance(out, Blocked) and out.wait.name == "w"
    out = run(d, at("w", Phase.HANDLED, event="a"))
    assert isinstance(out, StepRan) and out.step.name == "in a"
    out = run(d, at("w", Phase.HANDLED, event="b"))  # an empty case continues after the Wait
    assert isinstance(out, StepRan) and out.step.name == "after"


def test_waitfor_blocks_until_its_condition_holds() -> None:
    flag = {"v": False}
    d = S(WaitFor("ready", lambda: flag["v"]), Step("after", noop))
    out = run(d)
    assert isinstance(out, BlockedFor) and out.waitfor.name == "ready"
    flag["v"] = True
    out = run(d)
    assert isinstance(out, StepRan) and out.step.name == "after"


def test_go_starts_a_thread_with_its_id() -> None:
    i = {"v": 7}
    d = S(Go("fan", S(Step("x", noop)), id=lambda: f"t{i['v']}"), Go("fixed", S(Return())))
    out = run(d)
    assert out == GoStart(d.stmts[0], "t7")  # type: ignore[arg-type]
    out = run(d, at("fan", Phase.DONE))
    assert isinstance(out, GoStart) and out.thread_id == "fixed"  # defaults to the name


def test_a_goroutine_thread_runs_the_body_of_its_go() -> None:
    d = S(Go("g", S(Step("in g", noop))), Step("main step", noop))
    out = advance(compile_definition(d), ThreadState("g1", go="g"))
    assert isinstance(out, StepRan) and out.step.name == "in g"


@pytest.mark.parametrize("bad", [lambda: "", lambda: 3])
def test_go_id_that_is_not_a_non_empty_string_crashes(bad: Any) -> None:
    out = run(S(Go("g", S(Return()), id=bad)))
    assert isinstance(out, Crashed)
    assert out.statement == "g"
    assert isinstance(out.error, TypeError)


def test_a_raising_condition_crashes_at_its_statement() -> None:
    def cond() -> bool:
        raise ZeroDivisionError

    for d, name in [
        (S(For("loop", cond, Step("s", noop))), "loop"),
        (S(WaitFor("wf", cond)), "wf"),
        (S(If(cond, Step("s", noop), name="branch")), "branch"),
    ]:
        out = run(d)
        assert isinstance(out, Crashed)
        assert out.statement == name
        assert isinstance(out.error, ZeroDivisionError)


def test_loop_without_a_checkpoint_is_a_runaway() -> None:
    d = S(For("spin", True, If(False, Step("never", noop))))
    with pytest.raises(RunawayLoop) as err:
        run(d, max_iterations=50)
    assert err.value.statement == "spin"
    assert err.value.thread == "main"
    assert "50 iterations" in str(err.value)


def test_missing_position_is_a_definition_mismatch() -> None:
    with pytest.raises(DefinitionMismatch) as err:
        run(S(Step("b", noop)), at("a", Phase.DONE))
    assert err.value.statement == "a"
    assert err.value.thread == "main"


def test_missing_goroutine_is_a_definition_mismatch() -> None:
    with pytest.raises(DefinitionMismatch, match="goroutine 'gone'"):
        advance(compile_definition(S(Step("a", noop))), ThreadState("g1", go="gone"))


def test_position_moved_to_another_thread_is_a_definition_mismatch() -> None:
    d = S(Go("g", S(Step("s", noop))))
    with pytest.raises(DefinitionMismatch, match="belongs to goroutine 'g'"):
        run(d, at("s", Phase.DONE))


def test_handled_case_gone_is_a_definition_mismatch() -> None:
    d = S(Wait("w", On("a", ua())))
    with pytest.raises(DefinitionMismatch, match="no longer has that case"):
        run(d, at("w", Phase.HANDLED, event="b"))


def test_current_thread_is_set_only_while_a_step_runs() -> None:
    seen: list[str | None] = []
    d = S(Go("g", S(Step("s", lambda: seen.append(current_thread())))))
    advance(compile_definition(d), ThreadState("worker-3", go="g"))
    assert seen == ["worker-3"]
    assert current_thread() is None


def test_run_callable_runs_sync_and_async() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert run_callable(lambda x: x + 1, 1) == 2
    assert run_callable(double, 21) == 42


def test_run_callable_inside_a_running_event_loop() -> None:
    async def value() -> str:
        await asyncio.sleep(0)
        return "ok"

    async def main() -> str:
        return run_callable(value)  # called synchronously from inside the loop

    assert asyncio.run(main()) == "ok"


def test_async_step_is_awaited() -> None:
    ran: list[str] = []

    async def act() -> int:
        await asyncio.sleep(0)
        ran.append(current_thread() or "?")
        return 5

    out = run(S(Step("a", act)))
    assert isinstance(out, StepRan)
    assert out.value == 5
    assert ran == ["main"]
