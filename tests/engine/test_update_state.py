"""``Engine.update_state``: an operator edits the state through the model's validation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import field_validator

from engine import (
    DefinitionMismatch,
    Engine,
    InvalidOperation,
    On,
    PollingResumer,
    Return,
    S,
    StateError,
    Step,
    Wait,
    WaitFor,
    WaitForUserAction,
    Workflow,
    WorkflowStatus,
)


class Claim(Workflow):
    amount: int = 0
    ready: bool = False
    approved: bool = False
    renamed: bool = False

    def definition(self):
        wait_name = "renamed wait" if self.renamed else "approval"
        return S(
            Step("start", lambda: None),
            Wait(wait_name, On("decision", WaitForUserAction(approve=self.approve, deny=print))),
            WaitFor("ready", lambda: self.ready),
            Return(self.amount),
        )

    def approve(self) -> None:
        self.approved = True


@pytest.fixture
def claim(engine: Engine) -> str:
    return engine.new_workflow(Claim(amount=10), "c1")


def test_update_state_validates_writes_and_records_who_and_why(engine: Engine, claim: str) -> None:
    info = engine.update_state(claim, {"amount": "25"}, actor="ana", reason="typo in the claim")
    assert info.state.amount == 25  # validated and coerced through the model
    assert info.status is WorkflowStatus.WAITING
    last = engine.history(claim)[-1]
    assert (last.kind, last.actor) == ("state_updated", "ana")
    assert last.detail == {"reason": "typo in the claim", "changed": {"amount": [10, 25]}}
    assert engine.get(claim).state.amount == 25


def test_update_state_accepts_a_model_instance(engine: Engine, claim: str) -> None:
    new = engine.get(claim).state.model_copy(update={"amount": 99})
    assert engine.update_state(claim, new, actor="bo").state.amount == 99


def test_invalid_state_is_rejected_and_changes_nothing(
    engine: Engine, claim: str, snapshot
) -> None:
    before = snapshot(engine, claim)
    with pytest.raises(StateError, match="amount"):
        engine.update_state(claim, {"amount": "lots"}, actor="ana")
    assert snapshot(engine, claim) == before


def test_state_whose_definition_loses_a_position_is_rejected(
    engine: Engine, claim: str, snapshot
) -> None:
    before = snapshot(engine, claim)
    with pytest.raises(DefinitionMismatch, match="approval"):
        engine.update_state(claim, {"amount": 10, "renamed": True}, actor="ana")
    assert snapshot(engine, claim) == before


def test_an_edit_that_changes_nothing_writes_nothing(engine: Engine, claim: str, snapshot) -> None:
    before = snapshot(engine, claim)
    engine.update_state(claim, engine.get(claim).state.model_dump(), actor="ana")
    assert snapshot(engine, claim) == before


def test_update_state_of_a_finished_workflow_is_invalid(engine: Engine, claim: str) -> None:
    engine.cancel(claim, actor="ana")
    with pytest.raises(InvalidOperation, match="cancelled"):
        engine.update_state(claim, {"amount": 1}, actor="ana")


def test_an_edit_can_release_a_waitfor(store, clock) -> None:
    engine = Engine(store, [Claim], clock=clock, resumer=PollingResumer())
    wid = engine.new_workflow(Claim(amount=3))
    engine.execute(wid)
    engine.on_callback(wid, "decision", {"approved": True}, actor="ana")
    engine.execute(wid)
    assert engine.get(wid).threads[0].position == "ready"
    engine.update_state(wid, {"amount": 3, "approved": True, "ready": True}, actor="ana")
    info = engine.execute(wid)
    assert (info.status, info.result) == (WorkflowStatus.FINISHED, 3)


def test_a_field_the_model_does_not_declare_is_refused(
    engine: Engine, claim: str, snapshot
) -> None:
    before = snapshot(engine, claim)
    with pytest.raises(StateError, match="'amout', which Claim does not declare"):
        engine.update_state(claim, {"amout": 25}, actor="ana")  # pydantic alone would ignore it
    assert snapshot(engine, claim) == before


class Stamped(Workflow):
    """Takes a datetime but refuses the text it is stored as: it would never load again."""

    when: datetime | None = None

    @field_validator("when", mode="before")
    @classmethod
    def no_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("text is not accepted")
        return value

    def definition(self):
        return S(Wait("w", On("go", WaitForUserAction(approve=print, deny=print))))


def test_a_state_that_would_not_load_back_is_refused(engine: Engine, snapshot) -> None:
    wid = engine.new_workflow(Stamped(), "s1")
    before = snapshot(engine, wid)
    with pytest.raises(StateError, match=r"would not load back as .*'when'"):
        engine.update_state(wid, {"when": datetime(2026, 1, 1, tzinfo=UTC)}, actor="ana")
    assert snapshot(engine, wid) == before
