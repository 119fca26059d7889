"""validate(): structural errors are found before anything runs, naming the statement."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine import (
    Break,
    Case,
    Continue,
    DefinitionError,
    Engine,
    For,
    Go,
    If,
    On,
    Return,
    S,
    Step,
    Switch,
    Timeout,
    Wait,
    WaitFor,
    WaitForUserAction,
    Workflow,
    WorkflowNotFound,
    validate,
)
from engine._definition.compiler import compile_definition


def noop() -> None:
    return None


def ua() -> WaitForUserAction:
    return WaitForUserAction(approve=noop, deny=lambda reason: None)


class NotAHandler:
    """Has neither ``type`` nor ``handle``."""


# (definition, text the message must contain, the statement it must name or None)
BAD: dict[str, tuple[Any, str, str | None]] = {
    "duplicate step names": (
        S(Step("a", noop), Step("a", noop)),
        "duplicate name 'a'",
        "a",
    ),
    "duplicate across kinds": (
        S(Step("x", noop), Wait("x", On("e", ua()))),
        "duplicate name 'x'",
        "x",
    ),
    "duplicate between goroutine and main": (
        S(Go("g", S(Step("shared", noop))), Step("shared", noop)),
        "duplicate name 'shared'",
        "shared",
    ),
    "duplicate in nested branches": (
        S(If(True, Step("dup", noop)).Else(Step("dup", noop))),
        "duplicate name 'dup'",
        "dup",
    ),
    "break outside a loop": (S(Step("a", noop), Break()), "Break() outside a For loop", None),
    "continue outside a loop": (S(If(True, Continue())), "Continue() outside a For loop", None),
    "break in a goroutine started inside a loop": (
        S(For("loop", True, Step("s", noop), Go("g", S(Step("t", noop), Break()), id="x"))),
        "Break() outside a For loop in goroutine 'g'",
        None,
    ),
    "continue in a goroutine started inside a loop": (
        S(For("loop", True, Step("s", noop), Go("g", S(Continue()), id="x"))),
        "Continue() outside a For loop in goroutine 'g'",
        None,
    ),
    "empty loop": (S(For("spin", True)), "For 'spin' has an empty body", "spin"),
    "loop body that can never change its condition": (
        S(For("spin", True, Go("g", S(Step("s", noop)), id=lambda: "x"))),
        "For 'spin': its body has no Step, Wait, WaitFor, Break or Return",
        "spin",
    ),
    "loop body of empty branches": (
        S(For("spin", True, If(True).Else())),
        "For 'spin': its body has no Step",
        "spin",
    ),
    "unreachable after Return": (
        S(Step("a", noop), Return(), Step("never", noop)),
        "Step never after Return() can never run",
        "never",
    ),
    "unreachable after Break": (
        S(For("l", True, Step("s", noop), Break(), Step("never", noop))),
        "Step never after Break() can never run",
        "never",
    ),
    "unreachable after Continue": (
        S(For("l", True, Step("s", noop), Continue(), Wait("never", On("e", ua())))),
        "Wait never after Continue() can never run",
        "never",
    ),
    "unreachable in a goroutine": (
        S(Go("g", S(Return(), Step("never", noop)))),
        "after Return() can never run",
        "never",
    ),
    "wait with no cases": (S(Wait("w")), "Wait 'w' has no On(...) case", "w"),
    "wait with an event twice": (
        S(Wait("w", On("e", ua()), On("e", Timeout(after=timedelta(1))))),
        "Wait 'w': event 'e' appears twice",
        "w",
    ),
    "wait with an empty event name": (
        S(Wait("w", On("", ua()))),
        "event names must be non-empty strings",
        "w",
    ),
    "wait with a non-handler": (
        S(Wait("w", On("e", NotAHandler()))),  # type: ignore[arg-type]
        "Wait 'w', event 'e': the handler",
        "w",
    ),
    "if with an int condition": (
        S(If(1, Step("a", noop), name="check")),  # type: ignore[arg-type]
        "If check: condition must be a bool or a zero-argument callable, not int",
        "check",
    ),
    "elseif with a string condition": (
        S(If(True, Step("a", noop)).ElseIf("yes", Step("b", noop))),  # type: ignore[arg-type]
        "condition must be a bool or a zero-argument callable, not str",
        None,
    ),
    "for with a string condition": (
        S(For("loop", "always", Step("a", noop))),  # type: ignore[arg-type]
        "For 'loop': condition must be a bool",
        "loop",
    ),
    "for with a None condition": (
        S(For("loop", None, Step("a", noop))),  # type: ignore[arg-type]
        "For 'loop': condition must be a bool",
        "loop",
    ),
    "waitfor with a list condition": (
        S(WaitFor("ready", [])),  # type: ignore[arg-type]
        "WaitFor 'ready': condition must be a bool",
        "ready",
    ),
    "switch case with an int condition": (
        S(Switch(Case(0, Step("a", noop)), name="route")),  # type: ignore[arg-type]
        "Switch route: condition must be a bool",
        "route",
    ),
    "step action not callable": (
        S(Step("s", 42)),  # type: ignore[arg-type]
        "Step 's': action 42 is not callable",
        "s",
    ),
    "empty name": (S(Step("", noop)), "Step has an empty or non-string name", None),
    "non-string name": (
        S(Step(7, noop)),  # type: ignore[arg-type]
        "Step has an empty or non-string name: 7",
        None,
    ),
    "go id neither string nor callable": (
        S(Go("g", S(Step("s", noop)), id=5)),  # type: ignore[arg-type]
        "Go 'g': id must be a string or a callable",
        "g",
    ),
    "return error not a string": (
        S(Return(error=RuntimeError("x"))),  # type: ignore[arg-type]
        "Return(error=...) must be a string",
        None,
    ),
}


@pytest.mark.parametrize(("definition", "text", "statement"), BAD.values(), ids=BAD.keys())
def test_bad_definitions_raise_definition_error_naming_the_statement(
    definition: Any, text: str, statement: str | None
) -> None:
    with pytest.raises(DefinitionError) as err:
        validate(definition)
    assert text in str(err.value)
    assert err.value.statement == statement
    assert err.value.problems  # the list of problems is never empty
    assert any(text in p for p in err.value.problems)


@pytest.mark.parametrize("cond", [None, 0, "x"], ids=["None", "int", "str"])
def test_if_with_a_non_bool_condition_is_rejected(cond: Any) -> None:
    """``If(self.maybe, ...)`` with a None field must not silently become an Else."""
    with pytest.raises(DefinitionError, match="condition must be a bool"):
        validate(S(If(cond, Step("s", noop), name="check")))


@pytest.mark.parametrize("cond", [None, 0], ids=["None", "int"])
def test_switch_case_with_a_non_bool_condition_is_rejected(cond: Any) -> None:
    with pytest.raises(DefinitionError, match="condition must be a bool"):
        validate(S(Switch(Case(cond, Step("s", noop)), name="route")))


def test_every_problem_is_listed() -> None:
    bad = S(Step("a", noop), Step("a", noop), Wait("w"), Break())
    with pytest.raises(DefinitionError) as err:
        validate(bad)
    assert len(err.value.problems) == 3
    assert str(err.value).startswith("3 problems:")
    assert err.value.statement == "a"  # the first named culprit


def test_definition_must_be_a_section() -> None:
    with pytest.raises(DefinitionError, match="must return S"):
        validate([Step("a", noop)])


def test_valid_definitions_pass() -> None:
    ok = S(
        Step("a", noop),
        Go("g", S(For("inner", True, Step("t", noop), If(True, Break()))), id=lambda: "g1"),
        For(
            "outer",
            lambda: True,
            Wait("w", On("e", ua(), Continue()), On("t", Timeout(after=timedelta(1)), Break())),
            Switch(Case(False, Step("s1", noop)), Case(lambda: True, Return(1))),
        ),
        WaitFor("ready", lambda: True),
        If(False, Return(error="no"), name="decide").ElseIf(True, Return(2)).Else(Return()),
    )
    assert validate(ok) is None
    program = compile_definition(ok)
    assert set(program.index) == {"a", "g", "t", "inner", "outer", "w", "s1", "ready", "decide"}
    assert program.index["t"].thread == "g"
    assert program.index["a"].thread is None
    assert program.go("g") is not None
    assert program.go("a") is None


def test_loop_body_with_only_a_wait_or_waitfor_or_return_is_fine() -> None:
    validate(S(For("a", True, Wait("w", On("e", ua())))))
    validate(S(For("b", True, WaitFor("wf", True))))
    validate(S(For("c", True, Return())))
    validate(S(For("d", True, If(True, Break()))))
    validate(S(For("e", True, For("inner", True, Step("s", noop)))))


def test_nesting_too_deep_is_a_definition_error() -> None:
    inner: Any = Step("leaf", noop)
    for i in range(300):
        inner = If(True, inner, name=f"if{i}")
    with pytest.raises(DefinitionError, match="nested"):
        validate(S(inner))


# -- with the engine ----------------------------------------------------------------------


class Broken(Workflow):
    def definition(self):
        return S(Step("a", noop), Step("a", noop))


class Raises(Workflow):
    def definition(self):
        raise KeyError("boom")


class Missing(Workflow):
    pass


@pytest.mark.parametrize("cls", [Broken, Raises, Missing])
def test_new_workflow_with_a_bad_definition_stores_nothing(
    engine: Engine, cls: type[Workflow]
) -> None:
    with pytest.raises(DefinitionError) as err:
        engine.new_workflow(cls(), id="bad-1")

    assert err.value.workflow_id == "bad-1"
    assert engine.list() == []
    assert engine.pending_waits() == []
    with pytest.raises(WorkflowNotFound):
        engine.get("bad-1")
    with pytest.raises(WorkflowNotFound):
        engine.history("bad-1")


def test_duplicate_names_from_new_workflow_name_the_statement(engine: Engine) -> None:
    with pytest.raises(DefinitionError) as err:
        engine.new_workflow(Broken())
    assert err.value.statement == "a"


def test_definition_raising_is_wrapped_with_its_cause(engine: Engine) -> None:
    with pytest.raises(DefinitionError) as err:
        engine.new_workflow(Raises())
    assert "Raises.definition() raised KeyError" in str(err.value)
    assert isinstance(err.value.__cause__, KeyError)
