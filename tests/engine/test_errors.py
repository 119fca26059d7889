"""One hierarchy rooted in GorchError, drawn in the module docstring, with structured fields."""

from __future__ import annotations

import inspect

import pytest

import engine as gorch
from engine import (
    CallbackRejected,
    DefinitionError,
    Engine,
    GorchError,
    InvalidInput,
    InvalidOperation,
    LeaseLost,
    On,
    Return,
    S,
    Step,
    UnknownWorkflowType,
    Wait,
    WaitForUserAction,
    Workflow,
    WorkflowBusy,
    WorkflowNotFound,
)
from engine import errors as errors_module

ERRORS = [
    obj
    for name in gorch.__all__
    if inspect.isclass(obj := getattr(gorch, name)) and issubclass(obj, BaseException)
]


def test_every_exported_error_is_a_gorch_error() -> None:
    assert len(ERRORS) >= 14
    for cls in ERRORS:
        assert issubclass(cls, GorchError), cls


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_every_error_is_drawn_in_the_docstring_tree(cls: type[Exception]) -> None:
    doc = errors_module.__doc__ or ""
    assert f"── {cls.__name__} " in doc or f"{cls.__name__}\n" in doc


def test_fields_are_structured() -> None:
    e = CallbackRejected(
        "no", reason="stale_pc", workflow_id="w", event="ev", thread="t", statement="s"
    )
    assert e.fields() == {
        "workflow_id": "w",
        "thread": "t",
        "statement": "s",
        "reason": "stale_pc",
        "event": "ev",
    }
    assert e.message == "no"
    assert str(e) == "no"
    assert LeaseLost("x", workflow_id="w", owner="o").fields() == {"workflow_id": "w", "owner": "o"}
    assert WorkflowNotFound("w").fields() == {"workflow_id": "w"}
    assert UnknownWorkflowType("T").fields() == {"type_name": "T"}
    assert InvalidInput("bad", errors=[{"loc": ("x",)}]).fields()["reason"] == "invalid_input"
    assert DefinitionError("one problem").problems == ["one problem"]
    assert issubclass(WorkflowBusy, LeaseLost)


class Waiting(Workflow):
    def definition(self):
        return S(
            Step("s", lambda: None),
            Wait("w", On("e", WaitForUserAction(approve=lambda: None, deny=lambda r: None))),
            Return(),
        )


def test_errors_from_the_engine_carry_the_workflow_id(engine: Engine) -> None:
    wid = engine.new_workflow(Waiting(), id="wf-9")
    raised: list[GorchError] = []
    for call in (
        lambda: engine.on_callback(wid, "nope"),
        lambda: engine.on_callback(wid, "e", {"approved": 3}),
        lambda: engine.retry(wid, actor="ops"),
        lambda: engine.goto(wid, "main", "nowhere", actor="ops"),
        lambda: engine.goto(wid, "ghost", "s", actor="ops"),
        lambda: engine.get("wf-missing"),
    ):
        with pytest.raises(GorchError) as err:
            call()
        raised.append(err.value)
    assert [type(e) for e in raised] == [
        CallbackRejected,
        InvalidInput,
        InvalidOperation,
        InvalidOperation,
        InvalidOperation,
        WorkflowNotFound,
    ]
    assert [e.workflow_id for e in raised] == ["wf-9"] * 5 + ["wf-missing"]
    assert raised[3].statement == "nowhere"
    assert raised[4].thread == "ghost"


def test_an_unknown_status_filter_is_a_gorch_error(engine: Engine) -> None:
    with pytest.raises(GorchError):
        engine.list(status="sleeping")


def test_registering_a_non_workflow_is_a_definition_error(engine: Engine) -> None:
    with pytest.raises(DefinitionError):
        engine.register(int)  # type: ignore[arg-type]
