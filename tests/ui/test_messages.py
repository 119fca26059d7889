"""Messages that stay: the result or error of an action is drawn right after the control that
caused it and stays there through refreshes until dismissed (✕) or the next action; a failure
is an error. Where the control is gone (an approved wait's card), the message stands where
the page's ``show_flash`` is. (AppTest reruns the whole page, as a refresh does.)
"""

from __future__ import annotations

from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from engine import Engine, WorkflowStatus
from tests.ui.helpers import user_wait

Open = Callable[..., AppTest]


def dismissers(at: AppTest) -> list[str]:
    """Where the page draws a message: the ✕ of each, keyed ``dismiss_<n>_<control>``."""
    return [str(b.key) for b in at.button if str(b.key).startswith("dismiss_")]


def shown(at: AppTest) -> dict[str, list[str]]:
    return {
        kind: [str(m.value).replace("\\", "") for m in at.get(kind)]
        for kind in ("success", "error", "warning")
    }


def test_a_result_stays_beside_its_button_until_the_next_action(
    open_page: Open, engine: Engine
) -> None:
    at = open_page("workflow", id="demo-import-retrying")
    at.text_input(key="act_reason").set_value("nudge")
    at.button(key="act_step").click().run()
    assert dismissers(at) == ["dismiss_1_act_step"]  # right after the Step once button
    stepped = shown(at)["success"]
    assert any(m.startswith("stepped") for m in stepped)
    for _ in range(2):  # refreshes
        at.run()
        assert dismissers(at) == ["dismiss_1_act_step"] and shown(at)["success"] == stepped
    at.button(key="act_cancel").click().run()  # asks first (a cancel is for good)
    assert dismissers(at) == ["dismiss_1_act_step"]
    at.button(key="act_cancel_confirm").click().run()  # the next action replaces it
    # a cancelled workflow offers no Cancel (or Step) any more: its message goes to the top
    assert dismissers(at) == ["dismiss_2_top"]
    assert any(m.startswith("cancelled") for m in shown(at)["success"])
    assert engine.get("demo-import-retrying").status is WorkflowStatus.CANCELLED
    at.button(key="dismiss_2_top").click().run()
    assert dismissers(at) == [] and not shown(at)["success"]
    at.run()
    assert dismissers(at) == []


def test_a_failure_is_an_error_beside_its_button(open_page: Open, engine: Engine) -> None:
    wait = user_wait(engine)
    at = open_page("inbox")
    at.button(key=f"deny_{wait.id}").click().run()  # no reason
    assert shown(at)["error"] == ["Deny failed: give a reason to deny"]
    assert not shown(at)["success"]
    assert dismissers(at) == [f"dismiss_1_deny_{wait.id}"]  # in the card's form
    at.run()
    assert shown(at)["error"] == ["Deny failed: give a reason to deny"]
    at.button(key=f"dismiss_1_deny_{wait.id}").click().run()  # a submit button of the form
    assert dismissers(at) == [] and not shown(at)["error"]
    assert engine.get(wait.workflow_id).status is WorkflowStatus.WAITING


def test_a_message_whose_control_is_gone_stays_at_the_top(open_page: Open, engine: Engine):
    wait = user_wait(engine)
    at = open_page("inbox")
    at.button(key=f"approve_{wait.id}").click().run()
    assert f"approve_{wait.id}" not in {str(b.key) for b in at.button}  # the card went
    assert dismissers(at) == ["dismiss_1_top"]
    assert shown(at)["success"][0].startswith(f"slackApproval delivered to {wait.workflow_id}")
    for _ in range(2):
        at.run()
        assert dismissers(at) == ["dismiss_1_top"]


def test_already_resolved_is_an_error_that_stays(open_page: Open, engine: Engine) -> None:
    wait = user_wait(engine)
    at = open_page("inbox")
    engine.on_callback(wait.workflow_id, wait.event, {"approved": True}, actor="bo")
    at.button(key=f"approve_{wait.id}").click().run()
    errors = shown(at)["error"]
    assert len(errors) == 1 and "already resolved" in errors[0] and "by bo" in errors[0]
    assert "Nothing was changed" in errors[0] and not shown(at)["success"]
    at.run()
    at.run()
    assert shown(at)["error"] == errors


def test_a_message_stays_on_its_page(open_page: Open, engine: Engine) -> None:
    at = open_page("workflow", id="demo-import-retrying")
    at.button(key="act_step").click().run()
    assert dismissers(at) == ["dismiss_1_act_step"]
    at.switch_page("views/inbox.py").run()
    assert dismissers(at) == []
    at.switch_page("views/workflow.py")
    at.query_params["id"] = "demo-import-retrying"
    at.run()
    assert dismissers(at) == ["dismiss_1_act_step"]


def test_an_invalid_state_preview_is_an_error_beside_its_button(open_page: Open) -> None:
    at = open_page("workflow", id="demo-expense-waiting")
    at.text_area(key="state_editor").set_value("{not json")
    at.button(key="state_preview_button").click().run()
    assert dismissers(at) == ["dismiss_1_state_preview_button"]
    assert shown(at)["error"][0].startswith("Invalid state:")
