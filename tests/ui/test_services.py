"""The UI's services and forms, called directly: no Streamlit involved."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, Field

from engine import (
    MAIN,
    POSITIONABLE_KINDS,
    Break,
    Engine,
    For,
    Go,
    HistoryKind,
    If,
    InvalidInput,
    InvalidOperation,
    ManualClock,
    MemoryStore,
    On,
    Return,
    S,
    Section,
    StateError,
    Step,
    Wait,
    WaitFor,
    WaitForUserAction,
    Workflow,
    WorkflowStatus,
)
from engine._definition.compiler import POSITIONABLE, compile_definition
from engine.examples import WORKFLOWS, Expense, Import
from engine.examples.demo import seed_demo
from engine.examples.order import Shipped
from gorch_ui import services
from gorch_ui.access import (
    Operator,
    PermissionDenied,
    Role,
    actor,
    auth_config,
    oidc_operator,
    password_role,
)
from gorch_ui.schema import collect, form_fields
from tests.ui.helpers import break_state

ANA = Operator("ana")
VIEWER = Operator("vic", Role.VIEWER, "password")


@pytest.fixture
def demo() -> Engine:
    engine = Engine(MemoryStore(), WORKFLOWS, clock=ManualClock())
    seed_demo(engine)
    return engine


def user_wait(engine: Engine, wid: str = "demo-expense-waiting") -> Any:
    return next(w for w in engine.pending_waits(wid) if w.type == "user_action")


def test_services_never_import_streamlit() -> None:
    code = "import sys, gorch_ui.services, gorch_ui.schema; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- access ---------------------------------------------------------------------------------


def test_auth_mode_follows_the_configuration() -> None:
    assert auth_config({}, oidc=False).mode == "none"
    assert auth_config({"GORCH_UI_PASSWORD": "x"}, oidc=False).mode == "password"
    assert auth_config({"GORCH_UI_VIEWER_PASSWORD": "v"}, oidc=False).mode == "password"
    assert auth_config({"GORCH_UI_PASSWORD": "x"}, oidc=True).mode == "oidc"


def test_passwords_give_roles() -> None:
    cfg = auth_config({"GORCH_UI_PASSWORD": "op", "GORCH_UI_VIEWER_PASSWORD": "look"}, oidc=False)
    assert password_role(cfg, "op") is Role.OPERATOR
    assert password_role(cfg, "look") is Role.VIEWER
    assert password_role(cfg, "") is None
    assert password_role(cfg, "opx") is None


def test_oidc_operators_allow_list() -> None:
    open_ = auth_config({}, oidc=True)
    assert oidc_operator(open_, email="a@x.io", name="A").role is Role.OPERATOR
    listed = auth_config({"GORCH_UI_OPERATORS": "A@x.io, b@x.io"}, oidc=True)
    assert oidc_operator(listed, email="a@x.io", name=None) == Operator(
        "a@x.io", Role.OPERATOR, "oidc"
    )
    assert oidc_operator(listed, email="c@x.io", name=None).role is Role.VIEWER


def test_actor_refuses_viewers_and_nameless_operators() -> None:
    assert actor(ANA) == "ana"
    with pytest.raises(PermissionDenied, match="viewer"):
        actor(VIEWER)
    with pytest.raises(PermissionDenied, match="name"):
        actor(Operator("  "))


@pytest.mark.parametrize(
    "act",
    [
        lambda e: services.approve(e, VIEWER, user_wait(e)),
        lambda e: services.deny(e, VIEWER, user_wait(e), "no"),
        lambda e: services.cancel(e, VIEWER, "demo-expense-waiting"),
        lambda e: services.step(e, VIEWER, "demo-expense-waiting"),
        lambda e: services.execute(e, VIEWER, "demo-expense-waiting"),
        lambda e: services.retry(e, VIEWER, "demo-import-failed"),
        lambda e: services.goto(e, VIEWER, "demo-expense-waiting", "main", "first action"),
        lambda e: services.update_state(e, VIEWER, "demo-expense-waiting", '{"amount": 1}'),
        lambda e: services.start(e, VIEWER, "Expense", {"amount": 1}),
        lambda e: services.move(e, VIEWER, "Expense", "waiting for approval", "first action"),
        lambda e: services.run_due(e, VIEWER),
    ],
)
def test_a_viewer_cannot_act(demo: Engine, act: Any) -> None:
    before = {r.id: (r.version, r.status) for r in demo.store.list_workflows()}
    with pytest.raises(PermissionDenied):
        act(demo)
    assert {r.id: (r.version, r.status) for r in demo.store.list_workflows()} == before


# -- queries --------------------------------------------------------------------------------


def test_counts_by_status_and_type(demo: Engine) -> None:
    c = services.counts(demo)
    assert sum(c.total.values()) == 9
    assert c.by_type["Expense"][WorkflowStatus.CANCELLED] == 1
    assert set(c.by_type) == {"Expense", "Import", "Order"}


def test_list_workflows_pages_in_the_database(demo: Engine) -> None:
    for i in range(12):
        demo.new_workflow(Expense(amount=i), f"bulk-{i:02d}")
    first = services.list_workflows(demo, type="Expense", page_size=5)
    assert (first.total, first.pages, first.has_next, len(first.rows)) == (16, 4, True, 5)
    last = services.list_workflows(demo, type="Expense", page=3, page_size=5)
    assert (last.has_next, len(last.rows)) == (False, 1)
    seen = [r["id"] for p in range(4) for r in services.list_workflows(
        demo, type="Expense", page=p, page_size=5).rows]  # fmt: skip
    assert len(seen) == len(set(seen)) == 16
    waiting = services.list_workflows(demo, status="waiting", search="bulk-1")
    assert waiting.total is None  # a search has no cheap total
    assert {r["id"] for r in waiting.rows} == {"bulk-10", "bulk-11"}
    assert waiting.rows[0]["where"] == "main@waiting for approval"
    with pytest.raises(InvalidOperation):
        services.list_workflows(demo, status="sleeping")


def test_workflow_view_links_waits_to_their_form_and_statements_to_goto(demo: Engine) -> None:
    view = services.workflow_view(demo, "demo-expense-waiting")
    assert view.dot is not None and view.graph_error is None
    assert 'URL="workflow?id=demo-expense-waiting&decide=waiting%20for%20approval"' in view.dot
    assert view.dot.count("&decide=") == 1
    gotos = {"first%20action", "notification%20goroutine", "abort%20workflow", "parallel%20thread"}
    for name in gotos:
        assert f'URL="workflow?id=demo-expense-waiting&goto={name}"' in view.dot
    assert view.dot.count("URL=") == 1 + len(gotos)  # returns, branches, ends: no link
    done = services.workflow_view(demo, "demo-expense-approved")
    assert done.dot is not None and "URL=" not in done.dot  # nothing to move in a finished one
    assert view.targets["main"] == [
        "first action", "notification goroutine", "waiting for approval", "abort workflow"
    ]  # fmt: skip
    assert view.targets["g1"] == ["parallel thread"]


def test_inbox_lists_open_waits_newest_first_and_filters(demo: Engine) -> None:
    all_ = services.inbox(demo)
    assert [w.created_at for w in all_] == sorted((w.created_at for w in all_), reverse=True)
    assert {w.type for w in all_} == {"user_action", "timeout", "event"}
    assert services.wait_types(demo) == ["event", "timeout", "user_action"]
    assert [w.event for w in services.inbox(demo, type="event")] == ["shipped"]
    one = services.inbox(demo, workflow_id="demo-expense-waiting", wait="waiting for approval")
    assert {w.event for w in one} == {"slackApproval", "timeout"}


def test_definition_view_counts_live_threads(demo: Engine) -> None:
    view = services.definition_view(demo, "Expense")
    assert view.live == 1 and view.counted == 1
    assert view.threads_at == {"waiting for approval": 1}
    assert view.dot is not None and "1 here" in view.dot
    assert "abort workflow" in view.statements
    assert services.compatibility(demo, "Expense").ok


# -- actions --------------------------------------------------------------------------------


def test_approve_records_the_operator_and_moves_the_workflow_on(demo: Engine) -> None:
    msg = services.approve(demo, ANA, user_wait(demo), "within budget")
    assert "finished" in msg
    info = demo.get("demo-expense-waiting")
    assert info.status is WorkflowStatus.FINISHED and info.result == {"approved": 120}
    cb = next(h for h in demo.history(info.id) if h.kind == "callback")
    assert cb.actor == "ana"
    assert cb.detail["input"] == {"approved": True, "reason": "within budget"}


def test_deny_needs_a_reason(demo: Engine) -> None:
    with pytest.raises(InvalidOperation, match="reason"):
        services.deny(demo, ANA, user_wait(demo), " ")
    services.deny(demo, ANA, user_wait(demo), "too much")
    assert demo.get("demo-expense-waiting").error == "workflow was not approved: too much"


def test_a_stale_click_says_who_got_there_first(demo: Engine) -> None:
    seen = user_wait(demo)
    services.approve(demo, Operator("bo"), seen)
    with pytest.raises(services.StaleAction, match=r"already resolved: slackApproval by bo"):
        services.deny(demo, ANA, seen, "late")
    assert demo.get(seen.workflow_id).result == {"approved": 120}


def test_a_stale_click_after_cancel_names_the_cancel(demo: Engine) -> None:
    seen = user_wait(demo)
    services.cancel(demo, Operator("cy"), seen.workflow_id, "duplicate")
    with pytest.raises(services.StaleAction, match="cancelled by cy"):
        services.approve(demo, ANA, seen)


def test_event_input_is_validated_by_its_model(demo: Engine) -> None:
    wait = services.inbox(demo, type="event")[0]
    with pytest.raises(InvalidInput, match="tracking"):
        services.resolve(demo, ANA, wait, {"carrier": "dhl"})
    services.resolve(demo, ANA, wait, {"carrier": "dhl", "tracking": "42"})
    assert demo.get("demo-order-waiting").result == {"tracking": "dhl:42"}


def test_goto_is_validated_against_the_definition(demo: Engine) -> None:
    with pytest.raises(InvalidOperation, match="not a named step"):
        services.goto(demo, ANA, "demo-expense-waiting", "main", "no such step")
    with pytest.raises(InvalidOperation, match="belongs to goroutine"):
        services.goto(demo, ANA, "demo-expense-waiting", "main", "parallel thread")
    services.goto(demo, ANA, "demo-expense-waiting", "main", "first action", "redo")
    goto = [h for h in demo.history("demo-expense-waiting") if h.kind == "goto"]
    assert [(h.actor, h.statement, h.detail["reason"]) for h in goto] == [
        ("ana", "first action", "redo")
    ]


def test_step_and_execute_record_who_asked(demo: Engine) -> None:
    demo.clock.advance(timedelta(seconds=10))  # type: ignore[attr-defined]
    services.step(demo, ANA, "demo-import-retrying", "nudge")
    history = demo.history("demo-import-retrying")
    asked = [h for h in history if h.kind == "step_requested"]
    assert [(h.actor, h.detail) for h in asked] == [("ana", {"reason": "nudge"})]
    # Who asked is written in the same checkpoint as the step it caused.
    caused = [h for h in history if h.pc == asked[0].pc and h.kind != "step_requested"]
    assert caused and caused[0].kind in ("step", "step_error")
    demo.clock.advance(timedelta(seconds=10))  # type: ignore[attr-defined]  # the back-off
    services.execute(demo, ANA, "demo-import-retrying")
    assert demo.get("demo-import-retrying").status is WorkflowStatus.FINISHED


def test_retry_and_cancel(demo: Engine) -> None:
    with pytest.raises(services.FailedAgain, match="failed again: thread main failed at"):
        services.retry(demo, ANA, "demo-import-failed", "service is back?")  # not a success
    retried = [h for h in demo.history("demo-import-failed") if h.kind == "retried"]
    assert retried[0].actor == "ana"
    with pytest.raises(InvalidOperation):
        services.cancel(demo, ANA, "demo-expense-approved")


def test_state_preview_shows_a_diff_and_save_writes_it(demo: Engine) -> None:
    info = demo.get("demo-expense-waiting")
    edited = services.state_json(info).replace('"amount": 120', '"amount": "130"')
    diff = services.preview_state(demo, info.id, edited)
    assert diff.changed == {"amount": (120, 130)}
    assert '-  "amount": 120,' in diff.text and '+  "amount": 130,' in diff.text
    assert services.update_state(demo, ANA, info.id, edited, "typo") == (
        "state saved: amount changed"
    )
    assert demo.get(info.id).state.amount == 130
    h = demo.history(info.id)[-1]
    assert (h.kind, h.actor, h.detail["reason"]) == ("state_updated", "ana", "typo")


@pytest.mark.parametrize(
    ("text", "match"),
    [("{", "not valid JSON"), ("[1]", "JSON object"), ('{"amount": "lots"}', "amount")],
)
def test_invalid_state_is_refused_before_saving(demo: Engine, text: str, match: str) -> None:
    with pytest.raises(StateError, match=match):
        services.update_state(demo, ANA, "demo-expense-waiting", text)
    assert demo.get("demo-expense-waiting").state.amount == 120


def test_start_validates_through_the_model(demo: Engine) -> None:
    wid = services.start(demo, ANA, "Expense", {"amount": "70", "requester": "eve"}, "mine")
    info = demo.get(wid)
    assert (wid, info.state.amount, info.status) == ("mine", 70, WorkflowStatus.WAITING)
    assert demo.history(wid)[0].actor == "ana"
    with pytest.raises(StateError, match="amount"):
        services.start(demo, ANA, "Expense", {"amount": "seventy"})
    with pytest.raises(InvalidOperation, match="exists already"):
        services.start(demo, ANA, "Expense", {}, "mine")


class Aliased(Workflow):
    name: str = Field("nobody", alias="Name")

    def definition(self) -> Section:
        return S(Wait("hold", On("go", WaitForUserAction(approve=print, deny=print))))


def test_an_aliased_field_is_started_shown_and_edited_by_field_name() -> None:
    engine = Engine(MemoryStore(), [Aliased], clock=ManualClock())
    assert list(services.model_schema(engine, "Aliased")["properties"]) == ["name"]
    wid = services.start(engine, ANA, "Aliased", {"name": "ana"})
    info = engine.get(wid)
    assert info.state.name == "ana"
    text = services.state_json(info)
    assert json.loads(text) == {"name": "ana"}
    edited = text.replace("ana", "bo")
    assert services.preview_state(engine, wid, edited).changed == {"name": ("ana", "bo")}
    assert services.update_state(engine, ANA, wid, edited) == "state saved: name changed"
    assert engine.get(wid).state.name == "bo"
    with pytest.raises(StateError, match="has 'Name', which Aliased does not declare"):
        services.preview_state(engine, wid, '{"Name": "cy"}')  # not silently dropped
    assert engine.get(wid).state.name == "bo"


def test_open_engine_seeds_an_empty_examples_database_once(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    engine = services.open_engine(url, "engine.examples")
    assert sum(engine.store.count_workflows().values()) == 9
    engine.new_workflow(Expense(amount=1), "extra")
    again = services.open_engine(url, "engine.examples")
    assert sum(again.store.count_workflows().values()) == 10


def test_open_engine_does_not_seed_a_custom_app() -> None:
    engine = services.open_engine("memory://", "tests.apps.hostile_app")
    assert not any(engine.store.count_workflows().values())


# -- forms ----------------------------------------------------------------------------------


class Colour(BaseModel):
    name: str
    shade: int | None = None
    tags: list[str] = []
    kind: str = "warm"
    ratio: float = 0.5
    bright: bool = False


def test_form_fields_from_a_json_schema() -> None:
    fields = {f.name: f for f in form_fields(Colour.model_json_schema())}
    assert [(f.kind, f.required, f.nullable) for f in fields.values()] == [
        ("string", True, False),
        ("integer", False, True),
        ("json", False, False),
        ("string", False, False),
        ("number", False, False),
        ("boolean", False, False),
    ]
    assert form_fields(Shipped.model_json_schema())[0].title == "Carrier"
    assert {f.name: f.kind for f in form_fields(Import.model_json_schema())}["flaky"] == "json"


def test_collect_omits_empty_fields_so_defaults_apply() -> None:
    fields = form_fields(Colour.model_json_schema())
    raw = {"name": "teal", "shade": None, "tags": '["a"]', "kind": "", "ratio": 0.5}
    data = collect(fields, raw)
    assert data == {"name": "teal", "tags": ["a"], "ratio": 0.5, "bright": False}
    assert Colour.model_validate(data).shade is None
    with pytest.raises(ValueError, match="not valid JSON"):
        collect(fields, {"tags": "[oops"})


def test_enum_fields_offer_their_values() -> None:
    from enum import Enum

    class Size(Enum):
        S = "s"
        M = "m"

    class Shirt(BaseModel):
        size: Size = Size.M

    (field,) = form_fields(Shirt.model_json_schema())
    assert (field.kind, field.options, field.default) == ("enum", ("s", "m"), "m")


# -- a state that no longer loads -----------------------------------------------------------


def test_the_list_shows_a_row_whose_state_does_not_load_with_why(demo: Engine) -> None:
    break_state(demo, "demo-expense-waiting", amount="120 EUR")
    break_state(demo, "demo-order-shipped", tracking=("tracking_no",))
    rows = {r["id"]: r for r in services.list_workflows(demo).rows}
    assert len(rows) == 9  # every row, the broken ones among them
    assert rows["demo-expense-waiting"]["error"] == (
        "state does not fit Expense: amount: Input should be a valid integer, unable to parse "
        "string as an integer"
    )
    assert rows["demo-order-shipped"]["error"].startswith(
        "state has 'tracking_no', which Order no longer declares"
    )
    assert rows["demo-expense-waiting"]["where"] == "main@waiting for approval"
    assert rows["demo-expense-denied"]["error"] == "workflow was not approved: over budget"
    assert rows["demo-expense-approved"]["error"] == ""


def test_the_view_of_a_state_that_does_not_load_holds_the_stored_json(demo: Engine) -> None:
    raw = break_state(demo, "demo-expense-waiting", amount="120 EUR")
    view = services.workflow_view(demo, "demo-expense-waiting")
    assert view.info.state is None and "amount" in (view.info.state_error or "")
    assert view.stored_state == raw
    assert view.dot is None and "does not load" in (view.graph_error or "")
    assert view.targets == {"main": [], "g1": []}  # nothing to move until it is fixed
    assert sorted(w.event for w in view.waits) == ["slackApproval", "timeout"]  # still shown
    assert json.loads(services.editable_state(view)) == raw  # the editor starts from it
    fine = services.workflow_view(demo, "demo-expense-approved")
    assert fine.stored_state is None
    assert json.loads(services.editable_state(fine))["amount"] == 40


def test_a_state_that_does_not_load_is_repaired_from_the_editor(demo: Engine) -> None:
    wid = "demo-expense-waiting"
    raw = break_state(demo, wid, amount="120 EUR")
    fixed = json.dumps({**raw, "amount": 120})
    diff = services.preview_state(demo, wid, fixed)
    assert diff.changed == {"amount": ("120 EUR", 120)}  # against the JSON as stored
    assert '-  "amount": "120 EUR",' in diff.text and '+  "amount": 120,' in diff.text
    assert services.update_state(demo, ANA, wid, fixed, "EUR as a number") == (
        "state saved: amount changed"
    )
    info = demo.get(wid)
    assert (info.state.amount, info.state_error) == (120, None)
    h = demo.history(wid)[-1]
    assert (h.kind, h.actor, h.detail["reason"]) == ("state_updated", "ana", "EUR as a number")
    assert "amount" in h.detail["repaired"]
    services.approve(demo, ANA, user_wait(demo))  # and it goes on
    assert demo.get(wid).result == {"approved": 120}


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"amount": "lots"}, "amount"),
        ({"amount": 120, "amount_eur": 120}, "'amount_eur', which Expense does not declare"),
    ],
)
def test_a_bad_repair_is_refused_and_changes_nothing(
    demo: Engine, edit: dict[str, Any], match: str
) -> None:
    wid = "demo-expense-waiting"
    raw = break_state(demo, wid, amount=("amount_eur",))
    before, history = demo.store.load(wid), len(demo.history(wid))
    with pytest.raises(StateError, match=match):
        services.update_state(demo, ANA, wid, json.dumps({**raw, **edit}))
    with pytest.raises(StateError, match=match):  # the engine refuses it too, given directly
        demo.update_state(wid, {**raw, **edit}, "ana")
    after = demo.store.load(wid)
    assert (after.state, after.version, after.pc) == (before.state, before.version, before.pc)
    assert len(demo.history(wid)) == history
    assert demo.get(wid).state_error is not None


class EveryKind(Workflow):
    """One statement of every kind, two threads: what the goto form may offer."""

    def definition(self) -> Section:
        return S(
            Step("a", self.noop),
            Go("g", S(Step("g1", self.noop), WaitFor("g wait", False))),
            If(False, Step("i1", self.noop), name="if").Else(Step("i2", self.noop)),
            For("loop", True, Step("f1", self.noop), Break()),
            Wait("w", On("e", WaitForUserAction(approve=self.noop, deny=lambda r: None))),
            Return(),
        )  # fmt: skip

    def noop(self) -> None:
        return None


def test_goto_targets_are_what_the_engine_accepts() -> None:
    # The UI offers, per thread, the statements the engine's goto takes: one definition of
    # positionable kinds (engine.POSITIONABLE_KINDS), and MAIN for the main thread.
    engine = Engine(MemoryStore(), [EveryKind], clock=ManualClock())
    wid = engine.new_workflow(EveryKind())
    view = services.workflow_view(engine, wid)
    assert services.POSITIONABLE_KINDS is POSITIONABLE_KINDS
    assert set(view.targets) == {MAIN, "g"}
    assert view.targets[MAIN] == ["a", "g", "if", "i1", "i2", "loop", "f1", "w"]
    assert view.targets["g"] == ["g1", "g wait"]
    program = compile_definition(EveryKind().definition())
    for thread, names in view.targets.items():
        go = None if thread == MAIN else thread
        takes = [n for n, e in program.index.items() if isinstance(e.stmt, POSITIONABLE)
                 and e.thread == go]  # fmt: skip
        assert sorted(names) == sorted(takes)
    for name in view.targets[MAIN]:  # and the engine does take each one
        services.goto(engine, ANA, wid, MAIN, name, "tour")
    moves = [h.statement for h in engine.history(wid) if h.kind == HistoryKind.GOTO]
    assert moves == view.targets[MAIN]
