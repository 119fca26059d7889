"""The operator UI under attack: the sign-in gate, roles enforced by the services, the audit
trail, parameterised SQL and validated state edits. (Hostile text in the pages:
``test_hostile_text.py``.)

A hostile client is not a browser: it can send a click on a disabled button or any query
parameter. ``forge_click`` sends such a click through AppTest (Streamlit drops clicks on
disabled widgets), and ``_Forgetful`` plays a page that forgot to disable a button: the
services refuse the viewer all the same.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from engine import (
    Engine,
    InvalidOperation,
    ManualClock,
    MemoryStore,
    SQLModelStore,
    StateError,
    WaitInfo,
    WorkflowNotFound,
    WorkflowStatus,
)
from engine.examples import WORKFLOWS, Expense
from engine.examples.demo import seed_demo
from gorch_ui import APP_FILE, services, ui
from gorch_ui.access import Operator, PermissionDenied, Role
from tests.conftest import take_snapshot
from tests.engine.store.conftest import pg_server, pg_url  # noqa: F401  (fixtures)
from tests.ui.helpers import keys, messages

ROOT = Path(__file__).resolve().parents[2]
ANA = Operator("ana")
VIEWER = Operator("vic", Role.VIEWER, "password")
NAMELESS = Operator("  ")


def store_snapshot(engine: Engine) -> dict[str, Any]:
    """Everything stored: each workflow as ``take_snapshot`` sees it, and every open wait."""
    ids = sorted(r.id for r in engine.store.list_workflows(limit=10_000))
    waits = sorted((w.id, w.workflow_id, w.pc) for w in engine.store.list_waits(limit=10_000))
    return {"workflows": {i: take_snapshot(engine, i) for i in ids}, "waits": waits}


def wait_of(engine: Engine, workflow_id: str, type_: str) -> WaitInfo:
    return next(w for w in engine.pending_waits(workflow_id) if w.type == type_)


# -- every action the services offer --------------------------------------------------------

Action = Callable[[Engine, Operator], Any]
ACTIONS: dict[str, tuple[str, Action]] = {
    # name: (the service it calls, the call)
    "step": ("step", lambda e, op: services.step(e, op, "demo-import-retrying", "r-step")),
    "execute": (
        "execute", lambda e, op: services.execute(e, op, "demo-expense-waiting", "r-execute")
    ),
    # it fails again (the demo's import always does): recorded, and reported as FailedAgain
    "retry": ("retry", lambda e, op: _failing_again(services.retry, e, op, "demo-import-failed",
                                                     "r-retry")),
    "cancel": ("cancel", lambda e, op: services.cancel(e, op, "demo-order-waiting", "r-cancel")),
    "goto": ("goto", lambda e, op: services.goto(
        e, op, "demo-expense-waiting", "g1", "parallel thread", "r-goto"
    )),
    "update_state": ("update_state", lambda e, op: services.update_state(
        e, op, "demo-expense-waiting",
        services.state_json(e.get("demo-expense-waiting")).replace("120", "130"),
        "r-update_state",
    )),
    "approve": ("approve", lambda e, op: services.approve(
        e, op, wait_of(e, "demo-expense-waiting", "user_action"), "r-approve"
    )),
    "deny": ("deny", lambda e, op: services.deny(
        e, op, wait_of(e, "demo-expense-waiting", "user_action"), "r-deny"
    )),
    "send": ("resolve", lambda e, op: services.resolve(
        e, op, wait_of(e, "demo-order-waiting", "event"), {"carrier": "dhl", "tracking": "1"}
    )),
    "fire": ("resolve", lambda e, op: services.resolve(
        e, op, wait_of(e, "demo-expense-waiting", "timeout"), None
    )),
    "start": ("start", lambda e, op: services.start(e, op, "Expense", {"amount": 5}, "new-one")),
    "move": ("move", lambda e, op: services.move(
        e, op, "Expense", "waiting for approval", "first action", "r-move"
    )),
    "run_due": ("run_due", lambda e, op: services.run_due(e, op)),
    "bulk": ("run_bulk", lambda e, op: services.run_bulk(
        e, op, e.preview_bulk("cancel", ["demo-import-failed"]), "r-bulk"
    )),
}  # fmt: skip


def _failing_again(fn: Callable[..., str], *args: Any) -> None:
    with pytest.raises(services.FailedAgain):
        fn(*args)


def acting_services() -> set[str]:
    """Every service that takes the acting operator: the ones that change something."""
    return {
        name
        for name, fn in vars(services).items()
        if inspect.isfunction(fn)
        and fn.__module__ == services.__name__
        and "op" in inspect.signature(fn).parameters
    }


@pytest.fixture
def demo() -> Engine:
    """The demo workflows on a memory store, an hour on: the expense's timer is due."""
    engine = Engine(MemoryStore(), WORKFLOWS, clock=ManualClock())
    seed_demo(engine)
    engine.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    return engine


def test_the_actions_below_cover_every_acting_service() -> None:
    assert {service for service, _ in ACTIONS.values()} == acting_services()


@pytest.mark.parametrize("name", list(ACTIONS))
@pytest.mark.parametrize("who", [VIEWER, NAMELESS], ids=["viewer", "nameless"])
def test_a_viewer_or_a_nameless_operator_changes_nothing(
    demo: Engine, name: str, who: Operator
) -> None:
    before = store_snapshot(demo)
    with pytest.raises(PermissionDenied, match="viewer" if who is VIEWER else "name"):
        ACTIONS[name][1](demo, who)
    assert store_snapshot(demo) == before


@pytest.mark.parametrize("name", list(ACTIONS))
def test_every_action_writes_one_history_line_with_the_actor_and_reason(
    demo: Engine, name: str
) -> None:
    before = {i: s.history_len for i, s in store_snapshot(demo)["workflows"].items()}
    ACTIONS[name][1](demo, ANA)
    after = {r.id: demo.history(r.id) for r in demo.store.list_workflows(limit=10_000)}
    mine = [h for i, hs in after.items() for h in hs[before.get(i, 0) :] if h.actor == "ana"]
    if name == "run_due":
        # It runs only what is due, as `gorch worker` would; what ran is recorded as the
        # worker's. The operator's click decides nothing for any workflow: no line of theirs.
        assert mine == []
        return
    assert len(mine) == 1, [(h.kind, h.workflow_id) for h in mine]
    (line,) = mine
    expected = {
        "step": "step_requested", "execute": "execute_requested", "retry": "retried",
        "cancel": "cancelled", "goto": "goto", "update_state": "state_updated",
        "approve": "callback", "deny": "callback", "send": "callback", "fire": "callback",
        "start": "created", "move": "goto", "bulk": "cancelled",
    }  # fmt: skip
    assert line.kind == expected[name]
    if name in ("approve", "deny"):  # the reason travels in the input the handler gets
        assert line.detail["input"]["reason"] == f"r-{name}"
    elif name not in ("send", "fire", "start"):  # these take no reason
        assert line.detail["reason"] == f"r-{name}"
    if name in ("move", "bulk"):
        assert line.detail.get("operation")  # one id shared by everything acted on at once


# -- the sign-in gate ------------------------------------------------------------------------

PAGES = [
    (None, {}),
    ("workflows", {}),
    ("workflow", {"id": "demo-expense-waiting", "goto": "first action"}),
    ("inbox", {"workflow": "demo-expense-waiting", "wait": "waiting for approval"}),
    ("start", {"type": "Expense"}),
    ("definitions", {"type": "Expense"}),
    ("incidents", {}),
]
SHOWN = ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error",
         "success", "code", "json", "text", "text_area", "page_link", "metric", "dataframe",
         "table", "selectbox", "tabs", "expander", "graphviz_chart")  # fmt: skip


def shown_text(at: AppTest) -> str:
    """Every value and label the page shows."""
    out: list[str] = []
    for kind in SHOWN:
        for el in at.get(kind):
            for attr in ("value", "label", "body"):
                # AppTest raises for values some elements do not have
                with contextlib.suppress(Exception):
                    out.append(str(getattr(el, attr, "")))
            out.append(str(getattr(el, "proto", "")))
    return "\n".join(out)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch, ui_env: str) -> Iterator[list[str]]:
    """The database URLs the app opened: none may be opened before the gate lets one in."""
    calls: list[str] = []
    real = services.open_engine

    def spy(url: str | None = None, app: str | None = None, **kw: Any) -> Engine:
        calls.append(str(url))
        return real(url, app, **kw)

    monkeypatch.setattr(services, "open_engine", spy)
    yield calls


def goto_page(at: AppTest, page: str | None, query: dict[str, str]) -> AppTest:
    if page is not None:
        at.switch_page(f"views/{page}.py")
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def assert_gated(at: AppTest, opened: list[str], login_keys: set[str]) -> None:
    assert not at.exception, at.exception
    assert keys(at) == login_keys
    assert [t.value for t in at.title] == ["gorch"]
    text = shown_text(at)
    assert "demo-" not in text and "Expense" not in text and "waiting" not in text
    assert opened == []  # no page ran: not even the database was opened


PASSWORD_FORM = {"login_name", "login_password", "FormSubmitter:login-Sign in"}


@pytest.mark.parametrize(("page", "query"), PAGES)
def test_the_password_gate_shows_no_page_and_no_data(
    monkeypatch: pytest.MonkeyPatch, opened: list[str], page: str | None, query: dict[str, str]
) -> None:
    monkeypatch.setenv("GORCH_UI_PASSWORD", "s3cret")
    at = goto_page(AppTest.from_file(str(APP_FILE), default_timeout=60).run(), page, query)
    assert_gated(at, opened, PASSWORD_FORM)
    at.text_input(key="login_name").set_value("mallory")
    for left, wrong in zip("4321", ("", "S3CRET", "s3cret ", "' OR 1=1 --"), strict=True):
        at.text_input(key="login_password").set_value(wrong)
        at.button[0].click().run()
        assert [e.value for e in at.error] == [
            f"Wrong password. {left} more attempt{'s' if left != '1' else ''} before this "
            f"name is locked for 15 minutes. ({5 - int(left)} refused in this tab.)"
        ]
        assert_gated(at, opened, PASSWORD_FORM)


@pytest.mark.parametrize(("page", "query"), PAGES)
def test_the_oidc_gate_shows_no_page_and_no_data(
    opened: list[str], page: str | None, query: dict[str, str]
) -> None:
    at = AppTest.from_file(str(APP_FILE), default_timeout=60)
    at.secrets = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback"}}
    at = goto_page(at.run(), page, query)
    assert_gated(at, opened, {"login_oidc"})


def test_signing_out_closes_the_gate_again(monkeypatch: pytest.MonkeyPatch, ui_env: str) -> None:
    monkeypatch.setenv("GORCH_UI_PASSWORD", "s3cret")
    at = sign_in(AppTest.from_file(str(APP_FILE), default_timeout=60).run(), "ana", "s3cret")
    assert [t.value for t in at.title] == ["Workflows"]
    at.button(key="logout").click().run()
    at.switch_page("views/workflow.py")
    at.query_params["id"] = "demo-expense-waiting"
    at.run()
    assert keys(at) == PASSWORD_FORM and [t.value for t in at.title] == ["gorch"]
    assert "demo-" not in shown_text(at)


# -- roles in the pages: forged clicks, and pages that forget to disable -------------------


def sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="login_name").set_value(name)
    at.text_input(key="login_password").set_value(password)
    at.button[0].click().run()
    return at


def forge_click(at: AppTest, key: str) -> AppTest:
    """Click a button as a hostile client can, disabled or not. AppTest, like a browser,
    refuses to click a disabled one; this sends the click all the same."""
    button = at.button(key=key)
    button._value = True  # what a forged websocket message says
    return at.run()


class _Forgetful:
    """``streamlit`` for ``gorch_ui.ui``, except that its buttons are never disabled: a page
    that forgot the courtesy, so the click reaches the service."""

    def __getattr__(self, name: str) -> Any:
        return getattr(streamlit, name)

    @staticmethod
    def button(*args: Any, **kw: Any) -> Any:
        return streamlit.button(*args, **{**kw, "disabled": False})

    @staticmethod
    def form_submit_button(*args: Any, **kw: Any) -> Any:
        return streamlit.form_submit_button(*args, **{**kw, "disabled": False})


@pytest.fixture(params=["forged", "forgetful"])
def clicks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``forged``: a click on the disabled button (Streamlit drops it: its widgets enforce
    ``disabled`` on the server). ``forgetful``: the button is not disabled (the service
    refuses the viewer and says so)."""
    if request.param == "forgetful":
        monkeypatch.setattr(ui, "st", _Forgetful())
    return str(request.param)


def click_as_viewer(at: AppTest, key: str, mode: str) -> AppTest:
    if mode == "forged":
        assert at.button(key=key).disabled  # the courtesy
        at = forge_click(at, key)
        if f"{key}_confirm" in keys(at):  # a button that asks first: answer it too
            at = forge_click(at, f"{key}_confirm")
        return at
    at.button(key=key).click().run()
    if f"{key}_confirm" in keys(at):  # a button that asks first: the answer reaches the service
        at.button(key=f"{key}_confirm").click().run()
    assert any("is a viewer and cannot act" in m for m in messages(at)), messages(at)
    return at


@pytest.fixture
def viewer(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> Callable[..., AppTest]:
    """``viewer(page, **query)``: the page as a viewer signed in with the viewer password."""
    monkeypatch.setenv("GORCH_UI_PASSWORD", "s3cret")
    monkeypatch.setenv("GORCH_UI_VIEWER_PASSWORD", "peek")

    def open_(page: str, **query: str) -> AppTest:
        at = sign_in(AppTest.from_file(str(APP_FILE), default_timeout=60).run(), "vic", "peek")
        return goto_page(at, page, query)

    return open_


def _inbox_key(engine: Engine, prefix: str, wid: str, type_: str) -> str:
    return f"{prefix}_{wait_of(engine, wid, type_).id}"


FORGED: list[tuple[str, dict[str, str], Callable[[Engine], str]]] = [
    ("workflow", {"id": "demo-import-retrying"}, lambda e: "act_step"),
    ("workflow", {"id": "demo-expense-waiting"}, lambda e: "act_execute"),
    ("workflow", {"id": "demo-import-failed"}, lambda e: "act_retry"),
    ("workflow", {"id": "demo-order-waiting"}, lambda e: "act_cancel"),
    # a crafted link preselects a goto: the viewer still cannot make it
    ("workflow", {"id": "demo-expense-waiting", "goto": "first action"}, lambda e: "act_goto"),
    ("inbox", {}, lambda e: _inbox_key(e, "approve", "demo-expense-waiting", "user_action")),
    ("inbox", {}, lambda e: _inbox_key(e, "deny", "demo-expense-waiting", "user_action")),
    ("inbox", {}, lambda e: _inbox_key(e, "send", "demo-order-waiting", "event")),
    ("inbox", {}, lambda e: _inbox_key(e, "fire", "demo-expense-waiting", "timeout")),
    ("start", {"type": "Expense"}, lambda e: "start_button"),
    ("definitions", {"type": "Expense"}, lambda e: "move_Expense"),
    ("workflows", {}, lambda e: "wf_run_due"),
]


@pytest.mark.parametrize(("page", "query", "key"), FORGED, ids=[
    "step", "execute", "retry", "cancel", "goto", "approve", "deny", "send", "fire", "start",
    "move", "run_due",
])  # fmt: skip
def test_a_viewers_click_changes_nothing(
    viewer: Callable[..., AppTest], engine: Engine, clicks: str, page: str,
    query: dict[str, str], key: Callable[[Engine], str],
) -> None:  # fmt: skip
    at = viewer(page, **query)
    if page == "inbox":  # typed in, so that only the role stands in the way
        for t in at.text_input:
            if t.key and t.key.startswith(("reason_", "ev_")):
                t.set_value("dhl" if t.key.startswith("ev_") else "a reason")
    before = store_snapshot(engine)
    click_as_viewer(at, key(engine), clicks)
    assert not at.success, messages(at)
    assert store_snapshot(engine) == before


def test_a_viewer_cannot_save_a_state_even_after_a_valid_preview(
    viewer: Callable[..., AppTest], engine: Engine, clicks: str
) -> None:
    at = viewer("workflow", id="demo-expense-waiting")
    state = json.loads(at.text_area(key="state_editor").value)
    at.text_area(key="state_editor").set_value(json.dumps({**state, "amount": 1}))
    at.button(key="state_preview_button").click().run()  # looking is allowed
    before = store_snapshot(engine)
    click_as_viewer(at, "state_save", clicks)
    assert store_snapshot(engine) == before


def test_a_read_only_session_is_refused_like_a_viewer(
    open_page: Callable[..., AppTest], engine: Engine, clicks: str
) -> None:
    at = open_page("workflow", id="demo-order-waiting")
    at.toggle(key="read_only").set_value(True).run()
    before = store_snapshot(engine)
    click_as_viewer(at, "act_cancel", clicks)
    assert store_snapshot(engine) == before


def test_a_nameless_operator_is_refused(open_page: Callable[..., AppTest], engine: Engine):
    at = open_page("workflow", id="demo-order-waiting", name=None)
    before = store_snapshot(engine)
    at.button(key="act_cancel").click().run()
    at.button(key="act_cancel_confirm").click().run()  # it asks first
    assert any("enter your name first" in m for m in messages(at))
    assert store_snapshot(engine) == before


# -- the state editor validates through the model -------------------------------------------


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        ("{", "not valid JSON"),
        ('"a string"', "JSON object"),
        ('{"amount": "a lot"}', "amount"),
        ('{"amount": 5, "approved": "perhaps"}', "approved"),
        ('{"amount": 5, "requester": ["not", "text"]}', "requester"),
    ],
)
def test_a_state_that_fails_the_model_is_refused(
    open_page: Callable[..., AppTest], engine: Engine, edit: str, why: str
) -> None:
    wid = "demo-expense-waiting"
    before = store_snapshot(engine)
    with pytest.raises(StateError, match=why):
        services.preview_state(engine, wid, edit)
    with pytest.raises(StateError, match=why):
        services.update_state(engine, ANA, wid, edit, "r")
    at = open_page("workflow", id=wid)
    at.text_area(key="state_editor").set_value(edit)
    at.button(key="state_preview_button").click().run()
    assert any("Invalid state" in m for m in messages(at))
    assert "state_save" not in keys(at)
    assert store_snapshot(engine) == before


def test_an_edit_made_invalid_after_its_preview_is_refused_on_save(
    open_page: Callable[..., AppTest], engine: Engine
) -> None:
    wid = "demo-expense-waiting"
    at = open_page("workflow", id=wid)
    state = json.loads(at.text_area(key="state_editor").value)
    at.text_area(key="state_editor").set_value(json.dumps({**state, "amount": 7}))
    at.button(key="state_preview_button").click().run()
    before = store_snapshot(engine)
    at.text_area(key="state_editor").set_value(json.dumps({**state, "amount": "seven"}))
    at.button(key="state_save").click().run()  # the save validates what it saves, again
    assert any("Save state failed" in m and "amount" in m for m in messages(at))
    assert store_snapshot(engine) == before


def test_the_engine_validates_a_state_given_directly(demo: Engine) -> None:
    before = store_snapshot(demo)
    with pytest.raises(StateError):
        demo.update_state("demo-expense-waiting", {"amount": "lots"}, "ana", "r")
    assert store_snapshot(demo) == before


# -- SQL stays parameterised -----------------------------------------------------------------

IDS = ["plain", "100%", "a_b", "' OR 1=1 --", "x'); DROP TABLE workflows; --", "back\\slash",
       "\"quoted\"", "semi;colon"]  # fmt: skip
SEARCHES = {
    "%": ["100%"],
    "_": ["a_b"],
    "' OR 1=1 --": ["' OR 1=1 --"],
    "'": ["' OR 1=1 --", "x'); DROP TABLE workflows; --"],
    "--": ["' OR 1=1 --", "x'); DROP TABLE workflows; --"],
    "\\": ["back\\slash"],
    '"': ['"quoted"'],
    "%' OR '1'='1": [],
    "DROP TABLE": ["x'); DROP TABLE workflows; --"],
}


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine over each store with a workflow for each hostile id."""
    if request.param == "memory":
        store: Any = MemoryStore()
    elif request.param == "sqlite":
        store = SQLModelStore(f"sqlite:///{tmp_path / 'g.db'}")
    else:
        store = SQLModelStore(request.getfixturevalue("pg_url"))
    engine = Engine(store, [Expense], clock=ManualClock())
    for i in IDS:
        engine.new_workflow(Expense(amount=1, requester=i), i)
    yield engine
    if isinstance(store, SQLModelStore):
        store.close()


@pytest.mark.parametrize("search", list(SEARCHES))
def test_hostile_searches_match_only_what_they_spell(sql_engine: Engine, search: str) -> None:
    page = services.list_workflows(sql_engine, search=search, page_size=100)
    assert sorted(r["id"] for r in page.rows) == sorted(SEARCHES[search])
    found = sql_engine.store.list_workflows(search=search, limit=100)
    assert sorted(r.id for r in found) == sorted(SEARCHES[search])


def test_hostile_filters_match_nothing_and_raise_nothing(sql_engine: Engine) -> None:
    hostile = "' OR 1=1 --"
    assert services.list_workflows(sql_engine, type=hostile).rows == []
    assert services.list_workflows(sql_engine, type="%").rows == []
    assert services.inbox(sql_engine, type="%") == []
    assert services.inbox(sql_engine, workflow_id="%' OR '1'='1") == []
    assert len(services.inbox(sql_engine, workflow_id=hostile)) == 2  # its own two waits
    assert sql_engine.store.count_workflows(type=hostile) == dict.fromkeys(WorkflowStatus, 0)
    with pytest.raises(InvalidOperation, match="unknown status"):
        services.list_workflows(sql_engine, status=hostile)
    with pytest.raises(WorkflowNotFound):
        services.workflow_view(sql_engine, "%' OR '1'='1")
    assert services.workflow_view(sql_engine, hostile).info.state.requester == hostile
    assert sorted(r.id for r in sql_engine.store.list_workflows(limit=100)) == sorted(IDS)


@pytest.mark.parametrize("text", ["\x00", "a\x00b", "\ud800"], ids=["nul", "nul2", "surrogate"])
def test_unstorable_searches_match_nothing_and_raise_nothing(sql_engine: Engine, text: str):
    """No store holds NUL or a lone surrogate, and PostgreSQL refuses them even in a query."""
    assert services.list_workflows(sql_engine, search=text).rows == []
    assert services.list_workflows(sql_engine, type=text).rows == []
    assert services.inbox(sql_engine, workflow_id=text) == []
    assert services.inbox(sql_engine, type=text) == []
    with pytest.raises(WorkflowNotFound):
        services.workflow_view(sql_engine, text)


def test_the_search_box_finds_only_the_literal_text(
    open_page: Callable[..., AppTest], engine: Engine
) -> None:
    for i in IDS:
        engine.new_workflow(Expense(amount=1), i)
    at = open_page("workflows")
    for search, expected in SEARCHES.items():
        at.text_input(key="wf_search").set_value(search).run()
        assert not at.exception
        table = at.dataframe[-1].value
        assert sorted(table.get("id", [])) == sorted(expected), search


SQL_CALLS = {"execute", "executemany", "executescript", "exec_driver_sql", "literal_column"}
"""Calls that take SQL text: their SQL must never be built from values. (``text`` too, where
it is SQLAlchemy's: ``engine.graph`` has a ``text`` of its own.)"""


def _built(node: ast.expr) -> bool:
    """Whether ``node`` builds a string from parts: an f-string, ``%``, ``+`` or ``.format``."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("format", "join", "replace")
    )


def built_sql(source: str) -> list[int]:
    """The lines of SQL calls in ``source`` whose SQL is built, unless marked ``# safe-sql:``."""
    tree = ast.parse(source)
    calls = set(SQL_CALLS)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            calls |= {a.asname or a.name for a in node.names if a.name == "text"}
    lines = source.splitlines()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        f = node.func
        sql = (isinstance(f, ast.Name) and f.id in calls) or (
            isinstance(f, ast.Attribute)
            and (
                f.attr in SQL_CALLS
                or (f.attr == "text" and getattr(f.value, "id", "") in ("sqlalchemy", "sa"))
            )
        )
        if sql and _built(node.args[0]):
            span = lines[node.lineno - 1 : node.end_lineno or node.lineno]
            if not any("# safe-sql:" in line for line in span):
                found.append(node.lineno)
    return found


def test_no_sql_is_built_from_values() -> None:
    """Every query goes through SQLAlchemy expressions with bound parameters. The few SQL
    strings built in code say why they are safe in a ``# safe-sql:`` comment."""
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted([*ROOT.glob("engine/**/*.py"), *ROOT.glob("gorch_ui/**/*.py")])
        for line in built_sql(path.read_text())
    ]
    assert found == []


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ('from sqlalchemy import text\nconn.execute(text(f"SELECT {wid}"))', [2]),
        ("cursor.execute(\"SELECT * FROM w WHERE id = '%s'\" % wid)", [1]),
        ('conn.exec_driver_sql("DELETE FROM w WHERE id = " + wid)', [1]),
        ('import sqlalchemy\nsqlalchemy.text("SELECT {}".format(wid))', [2]),
        ('cursor.execute(f"PRAGMA busy_timeout = {ms}")  # safe-sql: an int', []),
        ('conn.execute(select_stmt, {"k_id": wid})', []),
        ('text(f"{wid}")  # engine.graph.text: not SQL', []),
    ],
)
def test_the_sql_check_finds_built_sql(source: str, lines: list[int]) -> None:
    assert built_sql(source) == lines
