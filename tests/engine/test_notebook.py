"""``engine.notebook``: Jupyter display of definitions and workflows, and the one-liners."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

import engine.graph
from engine import (
    CallbackRejected,
    Engine,
    InvalidOperation,
    ManualClock,
    MemoryStore,
    NotPermitted,
    On,
    PollingResumer,
    RetryPolicy,
    S,
    Section,
    Step,
    SystemClock,
    Wait,
    WaitForUserAction,
    Workflow,
    WorkflowStatus,
)
from engine.examples import Expense
from engine.notebook import NO_GRAPHVIZ, Notebook, Table, WorkflowView


@pytest.fixture
def nb() -> Notebook:
    return Notebook(Engine(MemoryStore(), clock=ManualClock(), resumer=PollingResumer()))


@pytest.fixture
def no_dot(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the Graphviz binary were not installed."""
    monkeypatch.setattr(engine.graph, "svg", lambda dot: None)


# Without the Graphviz binary the SVG tests skip, except in CI, where they run (and fail).
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None and os.environ.get("CI", "").lower() != "true",
    reason="the Graphviz `dot` binary is not installed",
)


@needs_dot
def test_a_definition_displays_as_svg() -> None:
    bundle = Expense().definition()._repr_mimebundle_()
    assert bundle["image/svg+xml"].lstrip().startswith("<?xml")
    assert "waiting for approval" in bundle["image/svg+xml"]
    assert bundle["text/plain"].splitlines()[0] == "Step('first action')"


def test_without_graphviz_a_definition_is_a_text_outline_with_a_note(no_dot: None) -> None:
    bundle = Expense().definition()._repr_mimebundle_()
    assert set(bundle) == {"text/plain"}
    text = bundle["text/plain"]
    assert text.splitlines()[:3] == [
        "Step('first action')",
        "Go('notification goroutine')",
        "  Step('parallel thread')",
    ]
    assert text.endswith(NO_GRAPHVIZ)
    assert "apt-get install graphviz" in text and "brew install graphviz" in text


def test_a_malformed_definition_shows_its_outline_and_the_error() -> None:
    bad = S(Step("x", print), Step("x", print))
    text = bad._repr_mimebundle_()["text/plain"]
    assert text.splitlines()[:2] == ["Step('x')", "Step('x')"]
    assert "DefinitionError: " in text and "duplicate name 'x'" in text


def test_a_workflow_info_displays_with_its_threads(nb: Notebook, no_dot: None) -> None:
    wid = nb.start(Expense(amount=3), id="e1")
    nb.run(wid)
    text = nb.engine.get(wid)._repr_mimebundle_()["text/plain"]
    assert text.splitlines()[0] == "Expense e1: waiting"
    assert "Wait('waiting for approval')   <- main:waiting" in text
    assert text.endswith(NO_GRAPHVIZ)


@needs_dot
def test_a_workflow_view_draws_waits_and_history(nb: Notebook) -> None:
    wid = nb.start(Expense(amount=3), id="e1")
    view = nb.run(wid)
    shown = "".join(ET.fromstring(view._repr_mimebundle_()["image/svg+xml"]).itertext())
    assert "waiting: slackApproval (user_action) since 2026-01-01 00:00" in shown
    assert "✓" in shown  # steps already run are ticked
    assert "waiting: slackApproval" in view.dot.source


def test_step_runs_one_step_and_shows_the_workflow(nb: Notebook) -> None:
    wid = nb.start(Expense(amount=3))
    assert nb.engine.history(wid)[-1].kind == "created"
    view = nb.step(wid)
    assert isinstance(view, WorkflowView)
    assert [h.kind for h in view.history] == ["created", "step"]
    assert view.info.thread("main").position == "first action"  # type: ignore[union-attr]
    for _ in range(4):
        view = nb.step(wid)
    assert view.info.status is WorkflowStatus.WAITING
    assert {w.event for w in view.waits} == {"slackApproval", "timeout"}


def test_approve_finds_the_open_user_action_wait(nb: Notebook) -> None:
    wid = nb.start(Expense(amount=3))
    nb.run(wid)
    view = nb.approve(wid)
    callback = view.history[-1]
    assert (callback.kind, callback.actor) == ("callback", "notebook")
    assert callback.detail["event"] == "slackApproval"
    assert callback.detail["input"] == {"approved": True}
    assert nb.run(wid).info.result == {"approved": 3}


def test_deny_gives_a_reason(nb: Notebook) -> None:
    wid = nb.start(Expense(amount=3))
    nb.run(wid)
    nb.deny(wid, "too much")
    info = nb.run(wid).info
    assert (info.status, info.error) == (
        WorkflowStatus.FINISHED,
        "workflow was not approved: too much",
    )


class TwoApprovals(Workflow):
    """Two user-action events on one wait: ``approve`` must be told which."""

    def definition(self) -> Section:
        def user() -> WaitForUserAction:
            return WaitForUserAction(approve=lambda: None, deny=lambda reason: None)

        return S(Wait("either", On("manager", user()), On("finance", user())))


def test_approve_needs_the_event_when_it_is_ambiguous_or_missing(nb: Notebook) -> None:
    wid = nb.start(TwoApprovals())
    nb.run(wid)
    with pytest.raises(CallbackRejected) as e:
        nb.approve(wid)
    assert e.value.reason == "ambiguous"
    assert "finance, manager" in str(e.value)
    nb.approve(wid, event="finance", reason="fine")
    assert nb.engine.history(wid)[-1].detail["input"] == {"approved": True, "reason": "fine"}
    nb.run(wid)
    with pytest.raises(CallbackRejected) as e:
        nb.approve(wid)
    assert e.value.reason == "no_wait"


def test_send_delivers_an_event_with_its_input(nb: Notebook) -> None:
    wid = nb.start(Expense(amount=3))
    nb.run(wid)
    nb.send(wid, "slackApproval", {"approved": False, "reason": "no"})
    assert nb.run(wid).info.error == "workflow was not approved: no"
    with pytest.raises(CallbackRejected):
        nb.send(wid, "slackApproval", {"approved": True})


def test_advance_moves_the_clock_and_fires_due_timers(nb: Notebook) -> None:
    wid = nb.start(Expense(amount=3))
    nb.run(wid)
    assert nb.advance(minutes=9) == 0
    assert nb.engine.get(wid).status is WorkflowStatus.WAITING
    assert nb.advance(minutes=1) == 2  # the timer, then the workflow it made due
    info = nb.engine.get(wid)
    assert (info.status, info.error) == (WorkflowStatus.FINISHED, "workflow finished with timeout")
    assert nb.engine.clock.now() - ManualClock().now() == timedelta(minutes=10)


def test_advance_needs_a_manual_clock() -> None:
    nb = Notebook(Engine(MemoryStore(), clock=SystemClock()))
    with pytest.raises(InvalidOperation, match="ManualClock"):
        nb.advance(minutes=1)


def test_history_is_a_table_of_rows_with_escaped_html(nb: Notebook) -> None:
    class Hostile(Workflow):
        def definition(self) -> Section:
            return S(Step("<script>alert(1)</script>", lambda: None))

    wid = nb.start(Hostile(), id="<b>x</b>")
    nb.run(wid)
    table = nb.history(wid)
    assert [r["kind"] for r in table.rows] == ["created", "step", "thread_end", "finished"]
    assert table.rows[1]["statement"] == "<script>alert(1)</script>"
    assert set(table.rows[0]) == {"seq", "at", "kind", "thread", "statement", "actor", "detail"}
    html = table._repr_html_()
    assert "<script" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<tr>") == len(table.rows) + 1
    assert str(table).splitlines()[0] == "seq | at | kind | thread | statement | actor | detail"
    assert len(table) == 4


def test_waits_and_workflows_tables(nb: Notebook) -> None:
    wid = nb.start(Expense(amount=3), id="e1")
    nb.run(wid)
    assert sorted(r["event"] for r in nb.waits(wid).rows) == ["slackApproval", "timeout"]
    assert [r["id"] for r in nb.workflows().rows] == ["e1"]
    # What a person must see to decide, and who may: the approval has them, the timer not.
    wid = nb.start(Expense(amount=9, requester="ann", approvers=["role:approver"]), id="e2")
    nb.run(wid)
    rows = {r["event"]: r for r in nb.waits(wid).rows}
    assert rows["slackApproval"]["context"] == {"amount": 9, "requester": "ann"}
    assert rows["slackApproval"]["who"] == "role:approver; not ann"
    assert rows["timeout"]["context"] is None and rows["timeout"]["who"] is None
    assert "context | who" in str(nb.waits(wid)).splitlines()[0]
    with pytest.raises(NotPermitted):
        nb.approve(wid)  # the notebook's actor holds no approver role
    Notebook(nb.engine, actor="bo", roles=["approver"]).approve(wid)
    nb.run(wid)
    assert nb.engine.get(wid).status is WorkflowStatus.FINISHED
    assert [r["id"] for r in nb.workflows(status="finished").rows] == ["e2"]
    assert Table([]).__str__() == ""


def test_importing_engine_loads_no_graph_or_notebook_module() -> None:
    code = (
        "import sys, engine, engine._definition.statements, engine._records; "
        "print(sorted(m for m in ('engine.graph', 'engine.notebook', 'graphviz', 'networkx') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class Fails(Workflow):
    def definition(self) -> Section:
        return S(Step("charge", self.charge, retry=RetryPolicy(max_attempts=1)))

    def charge(self) -> None:
        raise ConnectionError("card <declined> & gone")


def test_show_puts_a_failed_workflows_error_above_its_graph(nb: Notebook) -> None:
    wid = nb.start(Fails())
    nb.run(wid)
    bundle = nb.show(wid)._repr_mimebundle_()
    assert (
        "thread main failed at 'charge': ConnectionError: card <declined> & gone"
        in (bundle["text/plain"])
    )
    if "image/svg+xml" in bundle:  # Graphviz installed: Jupyter shows the HTML, error first
        shown = bundle["text/html"]
        assert shown.index("ConnectionError: card &lt;declined&gt; &amp; gone") < shown.index(
            "<svg"
        )
        assert "<?xml" not in shown
