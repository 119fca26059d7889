"""Every page through Streamlit's AppTest, on a memory and a SQLite store; buttons by key."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from engine import Engine, WorkflowStatus
from engine.examples import Expense
from gorch_ui import APP_FILE
from tests.ui.helpers import break_state, keys, messages, user_wait

Open = Callable[..., AppTest]


@pytest.mark.parametrize(
    ("page", "query", "title"),
    [
        (None, {}, "Workflows"),
        ("workflows", {}, "Workflows"),
        ("workflow", {"id": "demo-expense-waiting"}, "Expense · demo-expense-waiting"),
        ("workflow", {"id": "demo-import-failed"}, "Import · demo-import-failed"),
        ("workflow", {"id": "demo-order-shipped"}, "Order · demo-order-shipped"),
        ("workflow", {}, "Workflow"),
        ("inbox", {}, "Inbox"),
        ("inbox", {"workflow": "demo-order-waiting", "wait": "waiting for shipment"}, "Inbox"),
        ("start", {}, "Start a workflow"),
        ("definitions", {}, "Definitions"),
        ("incidents", {}, "Incidents"),
    ],
)
def test_every_page_renders(open_page: Open, page: str | None, query: dict[str, str], title: str):
    at = open_page(page, **query)
    assert [t.value for t in at.title] == [title]
    assert "No authentication configured" in " ".join(messages(at))


def test_an_unknown_workflow_says_so(open_page: Open) -> None:
    at = open_page("workflow", id="nope")
    assert messages(at)[-1] == "No workflow 'nope'."


def test_workflows_page_counts_filters_and_pages(open_page: Open, engine: Engine) -> None:
    for i in range(30):
        engine.new_workflow(Expense(amount=i), f"bulk-{i:02d}")
    at = open_page("workflows")
    assert at.button(key="wf_count_waiting").label == ":orange[● waiting]  \n**32**"
    at.button(key="wf_count_waiting").click().run()  # a count is a filter
    assert at.selectbox(key="wf_status").value == "waiting"
    at.selectbox(key="wf_size").set_value(25)
    at.run()
    first = at.dataframe[-1].value
    assert len(first) == 25 and set(first["status"]) == {"● waiting"}
    at.button(key="wf_next").click().run()
    second = at.dataframe[-1].value
    assert len(second) == 7 and not set(first["id"]) & set(second["id"])
    assert at.button(key="wf_next").disabled
    at.text_input(key="wf_search").set_value("bulk-0").run()  # new filters: back to page 1
    assert sorted(at.dataframe[-1].value["id"]) == [f"bulk-0{i}" for i in range(10)]


def test_approve_in_the_inbox_finishes_the_workflow(open_page: Open, engine: Engine) -> None:
    wait = user_wait(engine)
    at = open_page("inbox")
    at.text_input(key=f"reason_{wait.id}").set_value("fine by me")
    at.button(key=f"approve_{wait.id}").click().run()
    assert any("now finished" in m for m in messages(at))
    info = engine.get(wait.workflow_id)
    assert (info.status, info.result) == (WorkflowStatus.FINISHED, {"approved": 120})
    callback = next(h for h in engine.history(wait.workflow_id) if h.kind == "callback")
    assert (callback.actor, callback.detail["input"]["reason"]) == ("ana", "fine by me")
    assert f"approve_{wait.id}" not in keys(at)  # the resolved wait is gone


def test_deny_needs_a_reason_then_denies(open_page: Open, engine: Engine) -> None:
    wait = user_wait(engine)
    at = open_page("inbox")
    at.button(key=f"deny_{wait.id}").click().run()
    assert any("give a reason to deny" in m for m in messages(at))
    assert engine.get(wait.workflow_id).status is WorkflowStatus.WAITING
    at.text_input(key=f"reason_{wait.id}").set_value("over budget")
    at.button(key=f"deny_{wait.id}").click().run()
    assert engine.get(wait.workflow_id).error == "workflow was not approved: over budget"


def test_a_stale_click_gets_a_clear_message(open_page: Open, engine: Engine) -> None:
    wait = user_wait(engine)
    at = open_page("inbox")
    engine.on_callback(wait.workflow_id, wait.event, {"approved": True}, actor="bo")
    at.text_input(key=f"reason_{wait.id}").set_value("too late")
    at.button(key=f"deny_{wait.id}").click().run()
    error = [str(w.value) for w in at.error if "already resolved" in str(w.value)]
    assert error and "by bo" in error[0] and "Nothing was changed" in error[0]  # a failure
    assert engine.get(wait.workflow_id).result == {"approved": 120}


def test_event_form_from_the_model_sends_typed_input(open_page: Open, engine: Engine) -> None:
    wait = engine.pending_waits("demo-order-waiting")[0]
    at = open_page("inbox", workflow="demo-order-waiting", wait="waiting for shipment")
    at.button(key=f"send_{wait.id}").click().run()  # empty form: the model says what is missing
    assert any("invalid input for Shipped" in m for m in messages(at))
    at.text_input(key=f"ev_{wait.id}_carrier").set_value("dhl")
    at.text_input(key=f"ev_{wait.id}_tracking").set_value("JD0001")
    at.button(key=f"send_{wait.id}").click().run()
    assert engine.get("demo-order-waiting").result == {"tracking": "dhl:JD0001"}


def test_inbox_filters_by_workflow_type(open_page: Open) -> None:
    at = open_page("inbox")
    at.selectbox(key="inbox_workflow_type").set_value("Order").run()
    found = [k for k in keys(at) if k.split("_")[0] in ("approve", "send", "fire")]
    assert found and all(k.startswith("send_") for k in found)


def test_without_a_name_actions_are_refused(open_page: Open, engine: Engine) -> None:
    wait = user_wait(engine)
    at = open_page("inbox", name=None)
    at.button(key=f"approve_{wait.id}").click().run()
    assert any("enter your name" in m for m in messages(at))
    assert engine.get(wait.workflow_id).status is WorkflowStatus.WAITING


def test_read_only_disables_every_action(open_page: Open, engine: Engine) -> None:
    wait = user_wait(engine)
    at = open_page("inbox")
    at.toggle(key="read_only").set_value(True).run()
    assert at.button(key=f"approve_{wait.id}").disabled
    assert at.button(key=f"deny_{wait.id}").disabled


def test_start_page_creates_a_workflow(open_page: Open, engine: Engine) -> None:
    at = open_page("start", type="Expense")
    at.number_input(key="start_Expense_amount").set_value(640)
    at.text_input(key="start_Expense_requester").set_value("eve")
    at.text_input(key="start_id").set_value("eve-laptop")
    at.button(key="start_button").click().run()
    info = engine.get("eve-laptop")
    assert (info.state.amount, info.state.requester) == (640, "eve")
    assert info.status is WorkflowStatus.WAITING
    assert engine.history("eve-laptop")[0].actor == "ana"
    assert any(p.proto.page.endswith("workflow") or "eve-laptop" in p.proto.label
               for p in at.get("page_link"))  # fmt: skip


def test_workflow_page_draws_the_live_graph(open_page: Open) -> None:
    at = open_page("workflow", id="demo-expense-waiting")
    (chart,) = at.get("graphviz_chart")
    dot = chart.proto.spec
    assert "waiting for approval" in dot and "first action" in dot
    assert 'URL="workflow?id=demo-expense-waiting&decide=waiting%20for%20approval"' in dot
    # Other statements link to the goto form of this page.
    assert 'URL="workflow?id=demo-expense-waiting&goto=first%20action"' in dot
    history = at.dataframe[1].value
    assert {"created", "wait", "step"} <= set(history["what"])
    # Which code last ran it: the definition's fingerprint, as stored at its last checkpoint.
    assert any("· code " in str(c.value) for c in at.caption)


def test_goto_offers_only_valid_statements_and_moves_the_thread(
    open_page: Open, engine: Engine
) -> None:
    at = open_page("workflow", id="demo-expense-waiting")
    at.selectbox(key="goto_thread").set_value("g1").run()
    assert at.selectbox(key="goto_statement").options == ["parallel thread"]
    at.selectbox(key="goto_thread").set_value("main").run()
    assert "parallel thread" not in at.selectbox(key="goto_statement").options
    at.selectbox(key="goto_statement").set_value("first action")
    at.text_input(key="act_reason").set_value("run it again")
    at.button(key="act_goto").click().run()
    goto = [h for h in engine.history("demo-expense-waiting") if h.kind == "goto"]
    assert [(h.actor, h.statement, h.detail["reason"]) for h in goto] == [
        ("ana", "first action", "run it again")
    ]


def test_clicking_a_statement_of_the_graph_preselects_the_goto(
    open_page: Open, engine: Engine
) -> None:
    # The click opens the goto form beside the graph (gorch_ui/graph_clicks.py), preset.
    at = open_page("workflow", id="demo-expense-waiting", goto="parallel thread")
    assert at.selectbox(key="click_goto_thread").value == "g1"
    assert any("**Move a thread to** 'parallel thread'" in m.value for m in at.markdown)
    at.text_input(key="click_goto_reason").set_value("notify again")
    at.button(key="click_goto").click().run()
    goto = [h for h in engine.history("demo-expense-waiting") if h.kind == "goto"]
    assert [(h.thread, h.statement, h.actor) for h in goto] == [("g1", "parallel thread", "ana")]
    bad = open_page("workflow", id="demo-expense-waiting", goto="no such step")
    assert any("No thread of this workflow can be moved to 'no such step'" in m
               for m in messages(bad))  # fmt: skip


def test_state_edit_shows_a_diff_before_saving(open_page: Open, engine: Engine) -> None:
    at = open_page("workflow", id="demo-expense-waiting")
    state = json.loads(at.text_area(key="state_editor").value)
    at.text_area(key="state_editor").set_value(json.dumps({**state, "amount": 500}))
    at.button(key="state_preview_button").click().run()
    (diff,) = [c.value for c in at.code if "@@" in c.value]
    assert '-  "amount": 120,' in diff and '+  "amount": 500,' in diff
    assert engine.get("demo-expense-waiting").state.amount == 120  # nothing saved yet
    at.button(key="state_save").click().run()
    assert engine.get("demo-expense-waiting").state.amount == 500
    last = engine.history("demo-expense-waiting")[-1]
    assert (last.kind, last.actor) == ("state_updated", "ana")
    assert "state_save" not in keys(at)  # the editor reloaded the saved state


def test_invalid_state_is_refused_with_the_models_message(open_page: Open, engine: Engine):
    at = open_page("workflow", id="demo-expense-waiting")
    at.text_area(key="state_editor").set_value('{"amount": "a lot"}')
    at.button(key="state_preview_button").click().run()
    assert any("Invalid state" in m and "amount" in m for m in messages(at))
    assert "state_save" not in keys(at)


@pytest.mark.parametrize(
    ("wid", "key", "status"),
    [
        ("demo-expense-waiting", "act_execute", WorkflowStatus.WAITING),
        ("demo-expense-waiting", "act_step", WorkflowStatus.WAITING),
    ],
)
def test_action_buttons(
    open_page: Open, engine: Engine, wid: str, key: str, status: WorkflowStatus
) -> None:
    at = open_page("workflow", id=wid)
    at.text_input(key="act_reason").set_value("because")
    at.button(key=key).click().run()
    assert not at.error, messages(at)
    assert engine.get(wid).status is status
    mine = [h for h in engine.history(wid) if h.actor == "ana"]
    assert mine and mine[-1].detail.get("reason") == "because"


def test_cancel_asks_once_saying_what_it_stops_then_offers_nothing_more(
    open_page: Open, engine: Engine
) -> None:
    wid = "demo-order-waiting"
    at = open_page("workflow", id=wid)
    at.text_input(key="act_reason").set_value("because")
    at.button(key="act_cancel").click().run()
    assert engine.get(wid).status is WorkflowStatus.WAITING  # asked, nothing done
    question = " ".join(str(m.value) for m in at.markdown)
    assert "for good?" in question and "1 open wait" in question and "cannot be undone" in question
    at.button(key="act_cancel_keep").click().run()  # leave it
    assert "act_cancel_confirm" not in keys(at)
    assert engine.get(wid).status is WorkflowStatus.WAITING
    at.button(key="act_cancel").click().run()
    at.button(key="act_cancel_confirm").click().run()
    assert not at.error, messages(at)
    assert engine.get(wid).status is WorkflowStatus.CANCELLED
    mine = [h for h in engine.history(wid) if h.actor == "ana"]
    assert [(h.kind, h.detail.get("reason")) for h in mine] == [("cancelled", "because")]
    # an ended workflow offers no step, execute, retry or cancel
    assert not {"act_step", "act_execute", "act_retry", "act_cancel"} & keys(at)
    assert any("nothing more runs" in str(c.value) for c in at.caption)


def test_a_failed_workflow_shows_its_error_and_a_retry_that_fails_again_is_a_failure(
    open_page: Open, engine: Engine
) -> None:
    wid = "demo-import-failed"
    at = open_page("workflow", id=wid)
    header = [str(e.value) for e in at.error]
    assert any("has failed" in e and "thread main failed at" in e for e in header), header
    tracebacks = [e for e in at.expander if "Traceback" in str(e.label)]
    assert tracebacks and any("Traceback (most recent call last)" in c.value for c in at.code)
    at.text_input(key="act_reason").set_value("because")
    at.button(key="act_retry").click().run()
    question = " ".join(str(m.value) for m in at.markdown)
    assert "Retry 1 failed thread" in question
    assert len([h for h in engine.history(wid) if h.kind == "retried"]) == 0
    at.button(key="act_retry_confirm").click().run()
    assert engine.get(wid).status is WorkflowStatus.FAILED  # it failed again: recorded
    assert not any("retried" in str(m.value) for m in at.success)  # never a green box
    assert any("failed again" in str(e.value) for e in at.error), messages(at)
    retried = [h for h in engine.history(wid) if h.kind == "retried"]
    assert [(h.actor, h.detail.get("reason")) for h in retried] == [("ana", "because")]


def test_definitions_page_counts_and_checks_compatibility(open_page: Open) -> None:
    at = open_page("definitions", type="Expense")
    charts = at.get("graphviz_chart")
    assert len(charts) == 3 and "1 here" in charts[0].proto.spec
    at.button(key="compat_Expense").click().run()
    assert any("0 would break" in str(s.value) for s in at.success)


def test_definitions_page_reads_well_and_a_bulk_move_asks_saying_which(
    open_page: Open, engine: Engine
) -> None:
    engine.new_workflow(Expense(amount=7), "bulk-move-1")
    at = open_page("definitions", type="Expense")
    text = " ".join(str(m.value) for m in at.markdown)
    assert "**2** live workflows" in text
    assert "**1** live workflow" in text and "**1** live workflows" not in text  # Order, Import
    links = [str(p.proto.label) for p in at.get("page_link")]
    assert "Start an Expense" in links and "Start an Order" in links
    assert not any(label.startswith("Start a E") for label in links)

    at.selectbox(key="move_from_Expense").set_value("waiting for approval")
    at.selectbox(key="move_to_Expense").set_value("first action")
    at.text_input(key="move_reason_Expense").set_value("resend")
    at.button(key="move_Expense").click().run()
    question = " ".join(str(m.value) for m in at.markdown)
    assert "Move 2 threads of 2 workflows" in question, question
    assert "bulk-move-1" in question.replace("\\", "")  # which: every one is listed
    assert "demo-expense-waiting" in question.replace("\\", "")
    assert [h.kind for h in engine.history("bulk-move-1")].count("goto") == 0  # asked only
    at.button(key="move_Expense_confirm").click().run()
    said = " ".join(messages(at)).replace("\\", "")  # messages are escaped Markdown
    assert "moved 2 threads to 'first action'" in said, said
    assert "now stand on: waiting for approval (waiting): 2" in said  # why still "2 here"
    moved = [h for h in engine.history("bulk-move-1") if h.kind == "goto"]
    assert [(h.actor, h.detail["reason"]) for h in moved] == [("ana", "resend")]


def test_password_gate_blocks_until_the_right_password(
    open_page: Open, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GORCH_UI_PASSWORD", "s3cret")
    monkeypatch.setenv("GORCH_UI_VIEWER_PASSWORD", "peek")
    at = open_page("inbox", name=None)
    assert [t.value for t in at.title] == ["gorch"]
    assert keys(at) == {"login_name", "login_password", "FormSubmitter:login-Sign in"}
    at.text_input(key="login_name").set_value("ana")
    at.text_input(key="login_password").set_value("wrong")
    at.button[0].click().run()
    assert [e.value for e in at.error] == [
        "Wrong password. 4 more attempts before this name is locked for 15 minutes. "
        "(1 refused in this tab.)"
    ]
    assert [t.value for t in at.title] == ["gorch"]
    at.text_input(key="login_password").set_value("s3cret")
    at.button[0].click().run()
    assert [t.value for t in at.title] == ["Inbox"]  # the page asked for, after signing in
    assert "No authentication configured" not in " ".join(messages(at))
    wait = user_wait(engine)
    at.button(key=f"approve_{wait.id}").click().run()
    assert engine.get(wait.workflow_id).status is WorkflowStatus.FINISHED
    assert engine.history(wait.workflow_id)[-3].actor == "ana"


def test_viewer_password_signs_in_read_only(
    open_page: Open, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GORCH_UI_PASSWORD", "s3cret")
    monkeypatch.setenv("GORCH_UI_VIEWER_PASSWORD", "peek")
    at = open_page("inbox", name=None)
    at.text_input(key="login_name").set_value("vic")
    at.text_input(key="login_password").set_value("peek")
    at.button[0].click().run()
    wait = user_wait(engine)
    assert at.button(key=f"approve_{wait.id}").disabled
    assert any("vic** (viewer, password)" in str(c.value) for c in at.caption)


def test_oidc_uses_the_logged_in_user(
    ui_env: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GORCH_UI_OPERATORS", "boss@example.com")
    at = AppTest.from_file(str(APP_FILE), default_timeout=60)
    at.secrets = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback"}}
    at.run()
    assert "login_oidc" in keys(at) and not at.metric
    at.user = {"is_logged_in": True, "email": "ana@example.com", "name": "Ana"}
    at.run()
    assert any("ana@example.com** (viewer, oidc)" in str(c.value) for c in at.caption)
    at.user = {"is_logged_in": True, "email": "boss@example.com", "name": "Boss"}
    at.switch_page("views/inbox.py").run()
    assert any("boss@example.com** (operator, oidc)" in str(c.value) for c in at.caption)
    assert not at.button(key=f"approve_{user_wait(engine).id}").disabled


# -- a state that no longer loads (a field renamed or retyped since it was stored) ----------


def plain(markdown: object) -> str:
    """A message as shown: without the escapes that keep its text from being Markdown."""
    return re.sub(r"\\(.)", r"\1", str(markdown))


def test_the_list_page_shows_a_row_whose_state_does_not_load(
    open_page: Open, engine: Engine
) -> None:
    break_state(engine, "demo-expense-waiting", amount="120 EUR")
    at = open_page("workflows")
    table = at.dataframe[-1].value
    rows = dict(zip(table["id"], table["error"], strict=True))
    assert len(rows) == 9
    assert rows["demo-expense-waiting"].startswith("state does not fit Expense: amount: ")
    assert rows["demo-expense-approved"] == ""


def test_the_page_of_a_state_that_does_not_load_shows_it_and_repairs_it(
    open_page: Open, engine: Engine
) -> None:
    wid = "demo-expense-waiting"
    raw = break_state(engine, wid, amount="120 EUR")
    at = open_page("workflow", id=wid)
    assert [t.value for t in at.title] == [f"Expense · {wid}"]
    (error,) = [plain(e.value) for e in at.error]
    assert "does not load" in error and "amount: Input should be a valid integer" in error
    (stored,) = at.json
    assert json.loads(stored.proto.body) == raw  # the JSON as stored
    assert json.loads(at.text_area(key="state_editor").value) == raw  # the editor starts from it
    assert not at.get("graphviz_chart")  # no definition to draw from a state that does not load
    for key in ("act_step", "act_execute", "act_cancel", "act_goto"):
        assert at.button(key=key).disabled, key  # nothing runs until it is fixed
    at.text_area(key="state_editor").set_value(json.dumps({**raw, "amount": 120}))
    at.text_input(key="act_reason").set_value("EUR as a number")
    at.button(key="state_preview_button").click().run()
    (diff,) = [c.value for c in at.code if "@@" in c.value]
    assert '-  "amount": "120 EUR",' in diff and '+  "amount": 120,' in diff
    assert engine.get(wid).state is None  # nothing saved yet
    at.button(key="state_save").click().run()
    assert "state saved: amount changed" in [plain(m) for m in messages(at)]
    info = engine.get(wid)
    assert (info.state.amount, info.state_error) == (120, None)
    last = engine.history(wid)[-1]
    assert (last.kind, last.actor, last.detail["reason"]) == ("state_updated", "ana",
                                                             "EUR as a number")  # fmt: skip
    assert not at.error and at.get("graphviz_chart")  # the page as usual again
    assert not at.button(key="act_execute").disabled


def test_a_bad_fix_is_refused_on_the_page(open_page: Open, engine: Engine) -> None:
    wid = "demo-expense-waiting"
    raw = break_state(engine, wid, amount="120 EUR")
    at = open_page("workflow", id=wid)
    at.text_area(key="state_editor").set_value(json.dumps({**raw, "amount": "120.5 EUR"}))
    at.button(key="state_preview_button").click().run()
    assert any("Invalid state" in m and "amount" in m for m in messages(at))
    assert "state_save" not in keys(at)
    assert engine.store.load(wid).state == raw


def test_a_finished_workflow_whose_state_does_not_load_shows_it(
    open_page: Open, engine: Engine
) -> None:
    raw = break_state(engine, "demo-order-shipped", tracking=("tracking_no",))
    at = open_page("workflow", id="demo-order-shipped")
    assert any("has 'tracking_no', which Order" in plain(e.value) for e in at.error)
    assert json.loads(at.json[0].proto.body) == raw
    assert "state_editor" not in {t.key for t in at.text_area}  # finished: nothing to edit
    assert any("has ended" in m.value for m in at.markdown)


def test_a_hostile_stored_field_name_shows_as_text(open_page: Open, engine: Engine) -> None:
    break_state(engine, "demo-expense-waiting", amount=("[sign in](https://evil)",))
    at = open_page("workflow", id="demo-expense-waiting")
    (error,) = [str(e.value) for e in at.error]
    assert "\\[sign in\\](" in error and "[sign in](" not in error  # no link comes out of it
    assert "[sign in](https://evil)" in plain(error).replace("\u2060", "")
