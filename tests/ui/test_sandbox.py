"""The workflow page's "try it" sandbox and timeline slider, through AppTest and the
plain-Python services behind them (``gorch_ui.sandbox``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from engine import Engine, InvalidOperation
from gorch_ui import sandbox
from gorch_ui.sandbox_panel import TRIALS
from tests.ui.helpers import messages as escaped

Open = Callable[..., AppTest]
WID = "demo-expense-waiting"


def stored(engine: Engine, wid: str = WID) -> Any:
    info = engine.get(wid)
    waits = sorted((w.id, w.status.value, w.setup_data) for w in engine.store.load_waits(wid))
    return info.status, info.pc, info.version, info.threads, len(engine.history(wid)), waits


def messages(at: AppTest) -> list[str]:
    """The page's messages as text (their Markdown escapes removed)."""
    return [m.replace("\\", "") for m in escaped(at)]


def markdown(at: AppTest) -> str:
    return "\n".join(str(m.value) for m in at.markdown).replace("\\", "")


def test_fork_approve_and_discard_in_the_panel(open_page: Open, engine: Engine) -> None:
    before = stored(engine)
    at = open_page("workflow", id=WID)
    assert "Nothing here is real" in " ".join(messages(at))
    assert at.checkbox(key="sandbox_skip").value is True
    at.button(key="sandbox_fork").click().run()
    assert not at.exception, at.exception
    assert WID in at.session_state[TRIALS]
    assert "No step ran real code in the sandbox." in messages(at)
    dots = [c.proto.spec for c in at.get("graphviz_chart")]
    assert any("SANDBOX Expense demo-expense-waiting — waiting" in d for d in dots)

    at.text_input(key="sandbox_reason").set_value("looks fine")
    at.button(key="sandbox_approve").click().run()
    assert not at.exception, at.exception
    assert any("approved 'slackApproval': the sandbox is now finished" in m
               for m in messages(at)), messages(at)  # fmt: skip
    assert 'result: {"approved": 120}' in " ".join(messages(at))
    assert "Sandbox: **:green[● finished]**" in markdown(at)
    assert "result: {'approved': 120}" in messages(at)
    assert stored(engine) == before  # the real workflow did not move

    at.button(key="sandbox_discard").click().run()
    assert WID not in at.session_state[TRIALS]
    assert at.button(key="sandbox_fork")  # back to the start of the panel
    assert stored(engine) == before


def test_goto_and_the_clock_in_the_sandbox_run_no_real_code_when_skipped(
    open_page: Open, engine: Engine
) -> None:
    before = stored(engine)
    at = open_page("workflow", id=WID)
    at.button(key="sandbox_fork").click().run()
    at.selectbox(key="sandbox_thread").set_value("main")
    at.selectbox(key="sandbox_statement").set_value("first action")
    at.button(key="sandbox_goto").click().run()
    assert not at.exception, at.exception
    assert any("moved thread 'main' to 'first action'" in m for m in messages(at)), messages(at)
    assert "Steps recorded as skipped" in " ".join(str(c.value) for c in at.caption)
    at.number_input(key="sandbox_minutes").set_value(11)
    at.button(key="sandbox_advance").click().run()
    assert any("advanced the clock 11 min: the sandbox is now finished" in m
               for m in messages(at)), messages(at)  # fmt: skip
    assert "No step ran real code in the sandbox." in messages(at)
    assert stored(engine) == before


def test_a_step_that_ran_real_code_is_named(open_page: Open, engine: Engine) -> None:
    at = open_page("workflow", id=WID)
    at.checkbox(key="sandbox_skip").uncheck().run()
    at.button(key="sandbox_fork").click().run()
    at.number_input(key="sandbox_minutes").set_value(15)
    at.button(key="sandbox_advance").click().run()
    ran = [m for m in messages(at) if "Steps that ran real code" in m]
    assert ran and "abort workflow" in ran[0]


def test_a_viewer_may_use_the_sandbox(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> None:
    from gorch_ui import APP_FILE
    from tests.ui.test_security import goto_page, sign_in

    monkeypatch.setenv("GORCH_UI_PASSWORD", "s3cret")
    monkeypatch.setenv("GORCH_UI_VIEWER_PASSWORD", "peek")
    before = stored(engine)
    at = sign_in(AppTest.from_file(str(APP_FILE), default_timeout=60).run(), "vic", "peek")
    at = goto_page(at, "workflow", {"id": WID})
    assert at.button(key="act_execute").disabled  # the real actions stay closed to viewers
    at.button(key="sandbox_fork").click().run()
    at.text_input(key="sandbox_reason").set_value("no")
    at.button(key="sandbox_deny").click().run()
    assert any("denied 'slackApproval': the sandbox is now finished" in m
               for m in messages(at)), messages(at)  # fmt: skip
    trial = at.session_state[TRIALS][WID]
    assert [h.actor for h in trial.engine.history(WID)][-4:].count("sandbox:vic") == 1
    assert stored(engine) == before


def test_the_timeline_slider_redraws_the_past(open_page: Open, engine: Engine) -> None:
    at = open_page("workflow", id=WID)
    n = len(engine.history(WID))
    slider = at.slider(key="timeline_at")
    assert slider.value == n - 1
    slider.set_value(1).run()
    assert not at.exception, at.exception
    captions = " ".join(str(c.value) for c in at.caption)
    assert "line 1 of" in captions and "first action" in captions
    dots = [c.proto.spec for c in at.get("graphviz_chart")]
    assert any("after line 1: running" in d for d in dots)


def test_services_refuse_bad_input_and_change_nothing(engine: Engine) -> None:
    before = stored(engine)
    trial = sandbox.start(engine, WID)
    with pytest.raises(InvalidOperation, match="no open wait"):
        sandbox.approve(trial, "nope")
    key = next(sandbox.wait_key(w) for w in trial.engine.pending_waits(WID) if w.type == "timeout")
    with pytest.raises(InvalidOperation, match="not JSON"):
        sandbox.send(trial, key, "{oops")
    with pytest.raises(InvalidOperation, match="positive"):
        sandbox.advance(trial, 0)
    with pytest.raises(InvalidOperation, match="not in the history"):
        sandbox.timeline(engine, WID, 999)
    assert sandbox.send(trial, key, "").startswith("sent 'timeout'")
    assert stored(engine) == before


def test_hostile_names_stay_text_in_the_sandbox_and_the_timeline(
    open_page: Open, engine: Engine
) -> None:
    from tests.apps import hostile_app
    from tests.engine.dot_parse import parse
    from tests.ui.test_hostile_text import assert_inert, hostile_bodies

    wid = hostile_app.seed(engine)
    before = stored(engine, wid)
    at = open_page("workflow", id=wid)
    at.slider(key="timeline_at").set_value(2).run()
    at.button(key="sandbox_fork").click().run()
    assert not at.exception, at.exception
    key = next(k for k in at.selectbox(key="sandbox_wait").options if "user_action" in k)
    at.selectbox(key="sandbox_wait").set_value(key)
    at.text_input(key="sandbox_reason").set_value(hostile_app.PAYLOAD)
    at.button(key="sandbox_deny").click().run()
    assert not at.exception, at.exception
    assert_inert(hostile_bodies(at), at_least=3)  # the title, the sandbox's messages
    charts = at.get("graphviz_chart")
    assert len(charts) == 4  # live, the past point, real and sandbox side by side
    for chart in charts:
        labels = [v.text for a in parse(chart.proto.spec).nodes.values() for v in a.values()
                  if v.kind == "html"]  # fmt: skip
        assert not any("<img" in label or "<b>" in label for label in labels)
    assert stored(engine, wid) == before


def test_another_workflow_starts_its_panels_afresh(open_page: Open, engine: Engine) -> None:
    at = open_page("workflow", id=WID)
    at.slider(key="timeline_at").set_value(4).run()
    at.button(key="sandbox_fork").click().run()
    at.selectbox(key="sandbox_thread").set_value("main").run()
    at.query_params["id"] = "demo-import-failed"
    at.run()
    assert not at.exception, at.exception
    n = len(engine.history("demo-import-failed"))
    assert at.slider(key="timeline_at").value == n - 1  # its own last line, not line 4
    assert at.button(key="sandbox_fork")  # no sandbox of this one yet
    at.query_params["id"] = WID
    at.run()
    assert not at.exception, at.exception
    assert WID in at.session_state[TRIALS]  # the first one's sandbox is still there
