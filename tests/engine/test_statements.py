"""Statements are frozen values; malformed ones fail at construction with a DefinitionError."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from pydantic import BaseModel

from engine import (
    Break,
    Case,
    Continue,
    Default,
    DefinitionError,
    Event,
    For,
    Go,
    If,
    On,
    RetryPolicy,
    Return,
    S,
    Section,
    Step,
    Switch,
    Timeout,
    Wait,
    WaitFor,
    WaitForUserAction,
)
from engine._definition.statements import evaluate


def noop() -> None:
    return None


def user_action() -> WaitForUserAction:
    return WaitForUserAction(approve=noop, deny=lambda reason: None)


def test_s_builds_a_section_in_order() -> None:
    a, b = Step("a", noop), Step("b", noop)
    sec = S(a, b)
    assert isinstance(sec, Section)
    assert sec.stmts == (a, b)


@pytest.mark.parametrize(
    "stmt",
    [
        Step("a", noop),
        Go("g", S(Step("x", noop))),
        WaitFor("wf", True),
        For("l", True, Step("s", noop)),
        Wait("w", On("e", user_action())),
        Return(1),
    ],
    ids=lambda s: type(s).__name__,
)
def test_statements_are_frozen(stmt: object) -> None:
    field = dataclasses.fields(stmt)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(stmt, field, "changed")


def test_equal_statements_compare_equal() -> None:
    assert Step("a", noop) == Step("a", noop)
    assert S(Step("a", noop), Return()) == S(Step("a", noop), Return())
    assert Step("a", noop) != Step("b", noop)


@pytest.mark.parametrize(
    ("build", "where"),
    [
        (lambda: S(Step("a", noop), noop), "S(...): item 1"),
        (lambda: S("just a string"), "S(...): item 0"),
        (lambda: For("loop", True, Step("s", noop), 42), "For('loop'): item 1"),
        (lambda: On("ev", user_action(), noop), "On('ev'): item 0"),
        (lambda: If(True, None), "If: item 0"),
        (lambda: If(True, Return()).ElseIf(False, "x"), "ElseIf: item 0"),
        (lambda: If(True, Return()).Else(noop), "Else: item 0"),
        (lambda: Case(True, 1), "Case: item 0"),
        (lambda: Default(1.5), "Default: item 0"),
    ],
)
def test_a_non_statement_inside_a_section_is_rejected(build, where: str) -> None:
    with pytest.raises(DefinitionError) as err:
        build()
    assert where in str(err.value)
    assert "not a statement" in str(err.value)


def test_forgetting_step_around_an_action_gets_a_hint() -> None:
    with pytest.raises(DefinitionError, match=r"Step\(name, action\)"):
        S(noop)


def test_go_body_must_be_a_section() -> None:
    with pytest.raises(DefinitionError) as err:
        Go("fan out", Step("s", noop))  # type: ignore[arg-type]
    assert err.value.statement == "fan out"
    assert "S(...)" in str(err.value)


def test_wait_cases_must_be_on() -> None:
    with pytest.raises(DefinitionError) as err:
        Wait("approval", Step("s", noop))  # type: ignore[arg-type]
    assert err.value.statement == "approval"
    assert "On(event, handler" in str(err.value)


def test_if_elseif_else_collects_branches_in_order() -> None:
    stmt = If(False, Step("a", noop)).ElseIf(True, Step("b", noop)).Else(Step("c", noop))
    assert [b.cond for b in stmt.branches[:2]] == [False, True]
    assert [b.default for b in stmt.branches] == [False, False, True]
    assert [b.body.stmts[0].name for b in stmt.branches] == ["a", "b", "c"]


def test_if_builders_do_not_mutate_the_original() -> None:
    base = If(True, Step("a", noop), name="choice")
    extended = base.Else(Step("b", noop))
    assert len(base.branches) == 1
    assert len(extended.branches) == 2
    assert extended.name == "choice"


@pytest.mark.parametrize("what", ["Else", "ElseIf"])
def test_anything_after_else_is_rejected_naming_the_if(what: str) -> None:
    done = If(True, Step("a", noop), name="choice").Else(Step("b", noop))
    with pytest.raises(DefinitionError) as err:
        if what == "Else":
            done.Else(Step("c", noop))
        else:
            done.ElseIf(True, Step("c", noop))
    assert err.value.statement == "choice"
    assert f"{what} after Else" in str(err.value)
    assert "'choice'" in str(err.value)


def test_else_after_else_on_an_unnamed_if_is_rejected() -> None:
    with pytest.raises(DefinitionError, match="Else after Else"):
        If(True, Return()).Else(Return()).Else(Return())


def test_switch_collects_cases_and_default() -> None:
    sw = Switch(Case(False, Step("a", noop)), Case(True, Step("b", noop)), Default(Return()))
    assert [b.cond for b in sw.branches[:2]] == [False, True]
    assert [b.default for b in sw.branches] == [False, False, True]


def test_switch_default_must_be_last() -> None:
    with pytest.raises(DefinitionError) as err:
        Switch(Default(Return()), Case(True, Return()), name="route")
    assert err.value.statement == "route"
    assert "Default must be the last" in str(err.value)


def test_switch_rejects_what_is_not_a_case() -> None:
    with pytest.raises(DefinitionError, match="Case"):
        Switch(Step("a", noop), name="route")  # type: ignore[arg-type]


def test_wait_case_lookup_by_event() -> None:
    w = Wait("w", On("yes", user_action()), On("late", Timeout(after=timedelta(seconds=1))))
    assert w.case("late") is w.cases[1]
    assert w.case("nope") is None


def test_labels_are_the_names() -> None:
    assert Step("s", noop).label == "s"
    assert For("l", True, Step("x", noop)).label == "l"
    assert If(True, Return(), name="n").label == "n"
    assert If(True, Return()).label is None
    assert Break().label is None
    assert Continue().label is None


def test_return_keeps_value_and_error() -> None:
    assert Return().value is None and Return().error is None
    r = Return({"ok": 1}, error="bad")
    assert (r.value, r.error) == ({"ok": 1}, "bad")


def test_evaluate_bools_and_callables() -> None:
    assert evaluate(True) is True
    assert evaluate(False) is False
    assert evaluate(lambda: 1) is True
    assert evaluate(lambda: []) is False


# -- retry policy -------------------------------------------------------------------------


def test_retry_policy_backoff_is_exponential_and_capped() -> None:
    p = RetryPolicy(
        max_attempts=10,
        initial_interval=timedelta(seconds=2),
        backoff=3,
        max_interval=timedelta(seconds=60),
    )
    assert [p.delay(n).total_seconds() for n in range(1, 6)] == [2, 6, 18, 54, 60]


def test_retry_policy_defaults() -> None:
    p = RetryPolicy()
    assert p.max_attempts == 3
    assert p.delay(1) == timedelta(seconds=1)
    assert p.delay(2) == timedelta(seconds=2)


@pytest.mark.parametrize(
    "kw",
    [
        {"max_attempts": 0},
        {"initial_interval": timedelta(seconds=-1)},
        {"max_interval": timedelta(seconds=-1)},
        {"backoff": 0.5},
    ],
)
def test_retry_policy_rejects_nonsense(kw: dict[str, object]) -> None:
    with pytest.raises(DefinitionError):
        RetryPolicy(**kw)  # type: ignore[arg-type]


def test_step_keeps_its_retry_policy() -> None:
    p = RetryPolicy(max_attempts=5)
    assert Step("s", noop, retry=p).retry is p
    assert Step("s", noop).retry is None


# -- handler values -----------------------------------------------------------------------


@pytest.mark.parametrize("after", [timedelta(seconds=-1), 10, "10m"])
def test_timeout_needs_a_non_negative_timedelta(after: object) -> None:
    with pytest.raises(DefinitionError, match="Timeout"):
        Timeout(after=after)  # type: ignore[arg-type]


def test_event_needs_a_pydantic_model() -> None:
    with pytest.raises(DefinitionError, match="pydantic model"):
        Event(model=dict)  # type: ignore[arg-type]


def test_handlers_are_frozen_values_with_a_type() -> None:
    class M(BaseModel):
        x: int

    assert Timeout(after=timedelta(1)).type == "timeout"
    assert Event(model=M).type == "event"
    assert user_action().type == "user_action"
    with pytest.raises(dataclasses.FrozenInstanceError):
        Timeout(after=timedelta(1)).after = timedelta(2)  # type: ignore[misc]
