"""Deciding waits on every backend: assignees and separation of duties enforced by the engine
(a refusal changes nothing but the history), the decision's context kept with the wait, and
the inbox query (one card per wait, counted, filtered, keyset-paged, oldest first)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from engine import (
    DefinitionError,
    Engine,
    Event,
    HistoryKind,
    InvalidOperation,
    ManualClock,
    MemoryStore,
    NotPermitted,
    On,
    RejectReason,
    S,
    Section,
    Store,
    Wait,
    WaitForUserAction,
    Workflow,
    WorkflowStatus,
)
from engine.examples import Expense


def expense_engine(store: Store, clock: ManualClock | None = None) -> Engine:
    return Engine(store, [Expense, Delivery], clock=clock or ManualClock())


def snapshot(engine: Engine, wid: str) -> tuple[Any, ...]:
    rec = engine.store.load(wid)
    waits = sorted((w.id, w.status.value, w.data == w.data) for w in engine.store.load_waits(wid))
    return rec.state, rec.status, rec.pc, rec.version, [t.to_json() for t in rec.threads], waits


def refusals(engine: Engine, wid: str) -> list[tuple[str | None, str]]:
    return [
        (h.actor, h.detail["refused"])
        for h in engine.history(wid)
        if h.kind == HistoryKind.CALLBACK_REFUSED
    ]


APPROVE = {"approved": True, "reason": "fine by me"}


@pytest.mark.parametrize(
    ("actor", "roles", "reason"),
    [
        (None, (), RejectReason.NOT_ASSIGNED),  # anonymous: cannot be checked
        ("ann", (), RejectReason.EXCLUDED),  # the requester
        ("  ANN ", ("approver",), RejectReason.EXCLUDED),  # case and blanks change nothing
        ("carl", (), RejectReason.NOT_ASSIGNED),  # neither named nor holding the role
        ("carl", ("auditor",), RejectReason.NOT_ASSIGNED),
    ],
)
def test_a_callback_from_someone_not_allowed_is_refused_and_recorded(
    store: Store, actor: str | None, roles: tuple[str, ...], reason: RejectReason
) -> None:
    engine = expense_engine(store)
    wid = engine.new_workflow(
        Expense(amount=120, requester="Ann", approvers=["bob", "role:approver"]), "e-1"
    )
    before = snapshot(engine, wid)
    with pytest.raises(NotPermitted) as caught:
        engine.on_callback(wid, "slackApproval", APPROVE, actor=actor, roles=roles)
    assert caught.value.reason is reason
    assert caught.value.workflow_id == wid and caught.value.statement == "waiting for approval"
    assert "nothing was changed" in str(caught.value)
    assert snapshot(engine, wid) == before  # state, threads, waits, pc, version
    assert refusals(engine, wid) == [(actor, reason.value)]
    assert engine.get(wid).status is WorkflowStatus.WAITING


@pytest.mark.parametrize(("actor", "roles"), [("bob", ()), ("BOB", ()), ("carl", ("approver",))])
def test_an_assignee_decides(store: Store, actor: str, roles: tuple[str, ...]) -> None:
    engine = expense_engine(store)
    wid = engine.new_workflow(
        Expense(amount=120, requester="ann", approvers=["bob", "role:Approver"]), "e-1"
    )
    engine.on_callback(wid, "slackApproval", APPROVE, actor=actor, roles=roles)
    info = engine.get(wid)
    assert info.status is WorkflowStatus.FINISHED and info.result == {"approved": 120}
    assert refusals(engine, wid) == []


def test_without_approvers_anyone_but_the_requester_decides(store: Store) -> None:
    engine = expense_engine(store)
    first = engine.new_workflow(Expense(amount=5, requester="ann"), "e-1")
    with pytest.raises(NotPermitted):
        engine.on_callback(first, "slackApproval", APPROVE, actor="ann")
    engine.on_callback(first, "slackApproval", APPROVE, actor="zoe")
    assert engine.get(first).status is WorkflowStatus.FINISHED
    # Nobody excluded, nobody named: an anonymous callback (a script) may decide, as before.
    second = engine.new_workflow(Expense(amount=5), "e-2")
    engine.on_callback(second, "slackApproval", APPROVE)
    assert engine.get(second).status is WorkflowStatus.FINISHED


def test_the_timer_is_never_refused(store: Store) -> None:
    clock = ManualClock()
    engine = expense_engine(store, clock)
    wid = engine.new_workflow(Expense(amount=5, requester="ann", approvers=["bob"]), "e-1")
    clock.advance(timedelta(minutes=11))
    engine.run_due()
    assert engine.get(wid).error == "workflow finished with timeout"


def test_the_engine_checks_the_state_as_it_is_now(store: Store) -> None:
    """An operator who changes the approvers changes who may decide, at once."""
    engine = expense_engine(store)
    wid = engine.new_workflow(Expense(amount=5, requester="ann", approvers=["bob"]), "e-1")
    state = engine.get(wid).state.model_dump()
    engine.update_state(wid, {**state, "approvers": ["dan"]}, "ops", "bob is away")
    with pytest.raises(NotPermitted):
        engine.on_callback(wid, "slackApproval", APPROVE, actor="bob")
    (card,) = engine.inbox(workflow_id=wid).items
    assert card.assignees == ("dan",)
    engine.on_callback(wid, "slackApproval", APPROVE, actor="dan")
    assert engine.get(wid).status is WorkflowStatus.FINISHED


def test_the_decision_context_is_kept_with_the_wait_and_refreshed(store: Store) -> None:
    engine = expense_engine(store)
    wid = engine.new_workflow(Expense(amount=120, requester="ann"), "e-1")
    (card,) = engine.inbox().items
    assert card.context == {"amount": 120, "requester": "ann"}
    assert card.assignees == () and card.excluded == ("ann",)
    assert card.workflow_type == "Expense"
    state = engine.get(wid).state.model_dump()
    engine.update_state(wid, {**state, "amount": 130}, "ops", "typo")
    (card,) = engine.inbox().items
    assert card.context == {"amount": 130, "requester": "ann"}


class Parcel(BaseModel):
    carrier: str


class Delivery(Workflow):
    """A wait on a typed event with no summary of its own: its plain fields are the context."""

    item: str = "lamp"
    weight: float = 1.5
    tags: list[str] = ["fragile"]  # not plain: not in the default context

    def definition(self) -> Section:
        return S(Wait("delivered", On("parcel", Event(Parcel, assignees=["role:courier"]))))


def test_the_default_context_is_the_plain_fields(store: Store) -> None:
    engine = expense_engine(store)
    wid = engine.new_workflow(Delivery(), "d-1")
    (card,) = engine.inbox().items
    assert card.context == {"item": "lamp", "weight": 1.5}
    with pytest.raises(NotPermitted):
        engine.on_callback(wid, "parcel", {"carrier": "ups"}, actor="eve")
    engine.on_callback(wid, "parcel", {"carrier": "ups"}, actor="eve", roles=["courier"])
    assert engine.get(wid).status is WorkflowStatus.FINISHED


def test_one_card_per_wait_with_its_events(store: Store) -> None:
    engine = expense_engine(store)
    engine.new_workflow(Expense(amount=1), "e-1")
    page = engine.inbox()
    assert page.total == 1 and len(page.items) == 1
    (card,) = page.items
    assert sorted(e.event for e in card.events) == ["slackApproval", "timeout"]
    assert {e.type for e in card.events} == {"user_action", "timeout"}


def test_the_inbox_counts_pages_and_filters(store: Store) -> None:
    clock = ManualClock()
    engine = expense_engine(store, clock)
    ids = []
    for i in range(23):
        who = ["bob"] if i % 2 else ["role:approver"]
        ids.append(engine.new_workflow(Expense(amount=i, requester=f"r{i % 3}", approvers=who),
                                       f"e-{i:02}"))  # fmt: skip
        clock.advance(timedelta(minutes=1))
    engine.new_workflow(Delivery(), "d-1")

    # Every card once, oldest first, in pages of 5, with the total on each page.
    seen, after, pages = [], None, 0
    while True:
        page = engine.inbox(limit=5, after=after)
        assert page.total == 24
        seen += [c.workflow_id for c in page.items]
        pages += 1
        after = page.next_after
        if after is None:
            break
    assert seen == [*ids, "d-1"] and pages == 5

    assert engine.inbox(workflow_type="Delivery").total == 1
    assert engine.inbox(event="parcel").total == 1
    assert engine.inbox(type="timeout").total == 23
    # bob: the 11 naming him, less those he requested (none); r0 requested 8 of the 23.
    bob = engine.inbox(actor="bob", limit=100)
    assert bob.total == 11 and all(c.assignees == ("bob",) for c in bob.items)
    approver = engine.inbox(actor="r0", roles=["approver"], limit=100)
    expected = [i for i in ids if int(i[2:]) % 2 == 0 and int(i[2:]) % 3 != 0]
    assert [c.workflow_id for c in approver.items] == expected
    # Now is minute 23: waiting longer than 10 minutes are those armed at minutes 0 to 12.
    assert engine.inbox(waiting_longer_than=timedelta(minutes=10)).total == 13


def test_a_name_cannot_fake_its_way_into_the_filter(store: Store) -> None:
    engine = expense_engine(store)
    engine.new_workflow(Expense(amount=1, approvers=['x,"ann', "a%", "b_b"]), "e-1")
    assert engine.inbox(actor="ann").total == 0
    assert engine.inbox(actor="a").total == 0 and engine.inbox(actor="bxb").total == 0
    assert engine.inbox(actor="a%").total == 1 and engine.inbox(actor='X,"ANN').total == 1


def test_bad_inbox_queries_and_assignees_are_refused_clearly() -> None:
    engine = Engine(MemoryStore(), [Expense])
    for bad in ({"limit": 0}, {"limit": 1001}, {"after": ("x",)}, {"event": "a\x00b"}):
        with pytest.raises(InvalidOperation):
            engine.inbox(**bad)  # type: ignore[arg-type]
    for assignees in ([""], ["  "], [None], 5):
        with pytest.raises(DefinitionError, match="assignees"):
            WaitForUserAction(approve=print, deny=print, assignees=assignees)  # type: ignore[arg-type]
    assert WaitForUserAction(approve=print, deny=print, assignees="bo").assignees == ("bo",)


def test_a_wait_armed_before_decision_data_gets_it_at_the_next_checkpoint(store: Store) -> None:
    """Waits stored before migration 0004 have no context or assignees: open to anyone in the
    inbox's eyes (the engine checks the live definition anyway) until the workflow is written
    again."""
    clock = ManualClock()
    engine = expense_engine(store, clock)
    wid = engine.new_workflow(Expense(amount=4, requester="ann", approvers=["bo"]), "e-1")
    held = store.acquire(wid, "old", now=clock.now(), until=clock.now() + timedelta(minutes=1))
    waits = store.load_waits(wid)
    for w in waits:
        w.data = {k: v for k, v in w.data.items()
                  if k not in ("context", "assignees", "excluded")}  # fmt: skip
    store.checkpoint(held, owner="old", waits=waits, history=[], release=True)
    (card,) = engine.inbox().items
    assert card.context == {} and card.assignees is None
    assert engine.inbox(actor="bo").total == 0
    with pytest.raises(NotPermitted):  # enforced from the code, whatever the row says
        engine.on_callback(wid, "slackApproval", APPROVE, actor="zoe")
    state = engine.get(wid).state.model_dump()
    engine.update_state(wid, {**state, "amount": 5}, "ops", "any write refreshes it")
    (card,) = engine.inbox().items
    assert card.context == {"amount": 5, "requester": "ann"} and card.assignees == ("bo",)
    assert engine.inbox(actor="bo").total == 1
    timer = next(e for e in card.events if e.event == "timeout")
    assert timer.assignees is None and timer.context == {}


class Awkward(Workflow):
    """A summary that cannot be stored, then one that raises, and a NUL in an exclusion."""

    mode: str = "nan"
    who: str = "eve"

    def definition(self) -> Section:
        return S(Wait("check", On("go", Event(Parcel))))

    def summary(self) -> dict[str, Any]:
        if self.mode == "nan":
            return {"ratio": float("nan"), "text": "a\x00b"}
        if self.mode == "big":
            return {"blob": "x" * 20_000}
        raise RuntimeError("no summary today")

    def excluded_actors(self) -> list[str]:
        return [self.who, "bad\x00name"]


@pytest.mark.parametrize("mode", ["nan", "big", "raises"])
def test_a_summary_that_cannot_be_kept_never_fails_the_workflow(store: Store, mode: str) -> None:
    engine = Engine(store, [Awkward], clock=ManualClock())
    wid = engine.new_workflow(Awkward(mode=mode), "a-1")
    (card,) = engine.inbox().items
    assert card.context == {"mode": mode, "who": "eve"}  # the plain fields instead
    assert card.excluded == ("eve",)  # the name no store holds is left out of the copy
    with pytest.raises(NotPermitted):
        engine.on_callback(wid, "go", {"carrier": "x"}, actor="eve")
    engine.on_callback(wid, "go", {"carrier": "x"}, actor="zoe")
    assert engine.get(wid).status is WorkflowStatus.FINISHED


def test_an_assignee_no_store_can_hold_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match="assignees"):
        WaitForUserAction(approve=print, deny=print, assignees=["a\x00b"])
