"""Deciding from the inbox card (AppTest, memory and SQLite): the context on the card, who may
decide (enforced by the engine), one card per wait, counted and paged, the decision form
beside the graph, start forms without internal fields, comments in the history's "why"."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from engine import Engine, HistoryKind, StateError, WorkflowStatus
from engine.examples import Expense
from gorch_ui import services
from gorch_ui.access import Operator, roles_of
from tests.ui.helpers import keys, messages, user_wait

Open = Callable[..., AppTest]


def markdown(at: AppTest) -> str:
    """The page's Markdown and captions, escapes dropped (``role\\:approver`` as shown)."""
    text = "\n".join([*(str(m.value) for m in at.markdown), *(str(c.value) for c in at.caption)])
    return re.sub(r"\\(.)", r"\1", text)


def cards(at: AppTest) -> list[str]:
    """The "waiting since" caption of each card on the page."""
    return [str(c.value) for c in at.caption if str(c.value).startswith("waiting since")]


def total_shown(at: AppTest) -> int:
    found = re.search(r"\*\*([\d,]+)\*\* waits? to decide", markdown(at))
    assert found, markdown(at)
    return int(found.group(1).replace(",", ""))


def test_the_card_shows_the_context_and_who_may_decide(open_page: Open, engine: Engine) -> None:
    at = open_page("inbox", workflow="demo-expense-waiting")
    text = markdown(at)
    assert "**amount**: 120" in text and "**requester**: raj" in text
    assert "may decide: anyone; not raj" in text


def test_one_card_per_wait_with_its_events_as_actions(open_page: Open, engine: Engine) -> None:
    wait = user_wait(engine)
    timer = next(w for w in engine.pending_waits(wait.workflow_id) if w.type == "timeout")
    at = open_page("inbox", workflow=wait.workflow_id)
    assert total_shown(at) == 1  # two events, one card
    assert {f"approve_{wait.id}", f"deny_{wait.id}", f"fire_{timer.id}"} <= keys(at)
    assert re.search(r"timeout: times out at \d{4}-\d\d-\d\d \d\d:\d\d", markdown(at))
    whole = open_page("inbox")
    assert (
        total_shown(whole)
        == engine.inbox().total
        == len({(w.workflow_id, w.thread_id, w.pc) for w in engine.pending_waits()})
    )


def test_an_unassigned_operator_is_refused_and_the_refusal_recorded(
    open_page: Open, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wid = engine.new_workflow(Expense(amount=900, requester="raj", approvers=["role:approver"]))
    wait = user_wait(engine, wid)
    at = open_page("inbox", workflow=wid)
    assert "may decide: role:approver; not raj" in markdown(at)
    at.button(key=f"approve_{wait.id}").click().run()
    assert any("ana is not assigned to this wait" in m for m in messages(at)), messages(at)
    assert engine.get(wid).status is WorkflowStatus.WAITING
    refused = [h for h in engine.history(wid) if h.kind == HistoryKind.CALLBACK_REFUSED]
    assert [(h.actor, h.detail["refused"]) for h in refused] == [("ana", "not_assigned")]
    # Given the role, the same person decides.
    monkeypatch.setenv("GORCH_UI_ROLES", "bo=auditor; ana=approver")
    at.button(key=f"approve_{wait.id}").click().run()
    assert engine.get(wid).status is WorkflowStatus.FINISHED


def test_the_requester_cannot_approve_their_own_expense(open_page: Open, engine: Engine) -> None:
    wid = engine.new_workflow(Expense(amount=50, requester="Ana"))
    wait = user_wait(engine, wid)
    at = open_page("inbox", workflow=wid)
    at.text_input(key=f"reason_{wait.id}").set_value("mine, honest")
    at.button(key=f"approve_{wait.id}").click().run()
    assert any("separation of duties" in m for m in messages(at)), messages(at)
    assert engine.get(wid).status is WorkflowStatus.WAITING


def test_assigned_to_me_keeps_what_i_may_decide(
    open_page: Open, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GORCH_UI_ROLES", "ana=approver")
    mine = engine.new_workflow(Expense(amount=1, requester="raj", approvers=["role:approver"]))
    engine.new_workflow(Expense(amount=2, requester="raj", approvers=["bo"]))
    engine.new_workflow(Expense(amount=3, requester="ana"))  # her own: never hers to decide
    at = open_page("inbox", workflow_type="Expense")
    at.selectbox(key="inbox_workflow_type").set_value("Expense").run()
    everything = total_shown(at)
    at.checkbox(key="inbox_mine").check().run()
    # The demo expense (anyone but raj) and the one for approvers; not bo's, not her own.
    assert total_shown(at) == 2 < everything
    assert f"approve_{user_wait(engine, mine).id}" in keys(at)


def test_the_inbox_counts_every_wait_and_pages_through_them(
    open_page: Open, engine: Engine
) -> None:
    for i in range(230):
        engine.new_workflow(Expense(amount=i, requester="raj"), f"bulk-{i:03d}")
    total = engine.inbox().total
    assert total > 230
    at = open_page("inbox")
    assert total_shown(at) == total  # no silent cap at 200
    first = {k for k in keys(at) if k.startswith("deny_")}
    assert len(cards(at)) == 25 and "showing 1 to 25" in markdown(at)
    at.button(key="inbox_next").click().run()
    second = {k for k in keys(at) if k.startswith("deny_")}
    assert len(cards(at)) == 25 and second and not first & second
    assert "showing 26 to 50" in markdown(at) and total_shown(at) == total
    at.button(key="inbox_prev").click().run()
    assert {k for k in keys(at) if k.startswith("deny_")} == first


def test_clicking_a_waiting_node_opens_its_decision_beside_the_graph(
    open_page: Open, engine: Engine
) -> None:
    wait = user_wait(engine)
    at = open_page("workflow", id=wait.workflow_id, decide=wait.wait)
    assert f"approve_g_{wait.id}" in keys(at)
    assert "**amount**: 120" in markdown(at)
    at.text_input(key=f"reason_g_{wait.id}").set_value("looks right")
    at.button(key=f"approve_g_{wait.id}").click().run()
    assert engine.get(wait.workflow_id).status is WorkflowStatus.FINISHED
    # The comment is the decision's "why" in the history.
    rows = services.history_rows(engine.history(wait.workflow_id))
    assert any(r["what"] == "callback" and r["why"] == "looks right" for r in rows)


def test_clicking_a_statement_opens_goto_beside_the_graph(open_page: Open, engine: Engine):
    at = open_page("workflow", id="demo-expense-waiting", goto="first action")
    assert {"click_goto", "click_goto_thread"} <= keys(at)
    at.text_input(key="click_goto_reason").set_value("again")
    at.button(key="click_goto").click().run()
    goto = [h for h in engine.history("demo-expense-waiting") if h.kind == "goto"]
    assert [(h.statement, h.actor, h.detail["reason"]) for h in goto] == [
        ("first action", "ana", "again")
    ]


def test_the_start_form_asks_only_for_input(open_page: Open, engine: Engine) -> None:
    at = open_page("start", type="Expense")
    widgets = [w for kind in ("number_input", "text_input", "checkbox") for w in at.get(kind)]
    fields = {str(w.key).removeprefix("start_Expense_") for w in widgets
              if str(w.key).startswith("start_Expense_")}  # fmt: skip
    assert {"amount", "requester", "approvers"} <= fields
    assert not fields & {"approved", "notified", "error"}
    assert Expense.input_fields() == ["amount", "requester", "approvers"]
    with pytest.raises(StateError, match="does not take approved"):
        services.start(engine, Operator("ana"), "Expense", {"amount": 1, "approved": True})


def test_roles_come_from_the_environment() -> None:
    env = {"GORCH_UI_ROLES": " Ana = approver, finance ; bo=approver;;x"}
    assert roles_of("ana", env) == ("approver", "finance")
    assert roles_of("BO", env) == ("approver",)
    assert roles_of("eve", env) == () and roles_of("", env) == ()


def test_the_event_and_age_filters(open_page: Open, engine: Engine) -> None:
    at = open_page("inbox")
    everything = total_shown(at)
    at.text_input(key="inbox_event").set_value("shipped").run()
    assert total_shown(at) == engine.inbox(event="shipped").total == 1
    assert all(k.startswith("send_") for k in keys(at) if k.split("_")[0] in ("approve", "send"))
    at.text_input(key="inbox_event").set_value("").run()
    at.selectbox(key="inbox_older").set_value("1 day").run()  # the demo is minutes old
    assert "Nothing is waiting." in messages(at) and everything > 0
