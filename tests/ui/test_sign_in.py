"""The sign-in page and the session cookie through AppTest: a reload (a new Streamlit session
that sends the cookie back) keeps the sign-in; forged, expired and ended sessions show the
form again; without authentication the typed name comes back; the lock-out in the page.

AppTest has no browser, so ``auth._cookie`` (what ``st.context.cookies`` holds) is what the
test says the browser sent, and the script that sets the cookie is read from the page.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from streamlit.testing.v1 import AppTest

from engine import Engine, ManualClock, WorkflowStatus
from gorch_ui import APP_FILE, auth
from tests.ui.helpers import keys, messages, user_wait
from tests.ui.test_security import (  # noqa: F401  (clicks is a fixture)
    PASSWORD_FORM,
    click_as_viewer,
    clicks,
    sign_in,
)
from tests.ui.test_sign_in_sessions import with_payload

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    clock = ManualClock(T0)
    monkeypatch.setattr(auth, "CLOCK", clock)
    return clock


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch, ui_env: str, clock: ManualClock) -> None:
    monkeypatch.setenv("GORCH_UI_PASSWORD", "s3cret")
    monkeypatch.setenv("GORCH_UI_VIEWER_PASSWORD", "peek")


class Browser:
    """What a browser keeps between page loads: the cookie the page's script set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cookie: str | None = None
        monkeypatch.setattr(auth, "_cookie", lambda: self.cookie)

    def load(self, page: str | None = None, **query: str) -> AppTest:
        """A full page load: a new Streamlit session, sent the cookie."""
        at = AppTest.from_file(str(APP_FILE), default_timeout=60)
        if page is not None:
            at.run()
            at.switch_page(f"views/{page}.py")
        for k, v in query.items():
            at.query_params[k] = v
        at.run()
        assert not at.exception, at.exception
        return at

    def keep(self, at: AppTest) -> None:
        """Run the page's cookie script, as the browser does."""
        for el in at.get("html"):
            body = str(el.proto.body)
            if "document.cookie" in body:
                value = body.split("gorch_session=", 1)[1].split(";", 1)[0]
                self.cookie = value or None if "Max-Age=0" not in body else None
                assert "SameSite=Strict" in body


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Browser:
    return Browser(monkeypatch)


def shown(text: object) -> str:
    """A message as the person reads it (``md`` escapes Markdown with backslashes)."""
    return str(text).replace("\\", "")


def title(at: AppTest) -> str:
    return " ".join(str(t.value) for t in at.title)


def test_a_reload_and_a_graph_link_keep_the_sign_in(
    password: None, browser: Browser, engine: Engine
) -> None:
    at = sign_in(browser.load("workflows"), "ana", "s3cret")
    assert title(at) == "Workflows"
    browser.keep(at)
    assert browser.cookie and browser.cookie == at.session_state["gorch_token"]
    again = browser.load("workflows")  # a reload, or a new tab
    assert title(again) == "Workflows" and not keys(again) & PASSWORD_FORM
    wait = user_wait(engine)
    link = browser.load("inbox", workflow=wait.workflow_id, wait=wait.wait)  # a graph node
    assert title(link) == "Inbox"
    assert any("ana** (operator, password)" in str(c.value) for c in link.caption)
    link.button(key=f"approve_{wait.id}").click().run()
    assert engine.get(wait.workflow_id).status is WorkflowStatus.FINISHED
    assert any(h.actor == "ana" for h in engine.history(wait.workflow_id))


def test_signing_out_ends_the_session_for_good(password: None, browser: Browser) -> None:
    at = sign_in(browser.load(), "ana", "s3cret")
    browser.keep(at)
    stolen = browser.cookie
    at.button(key="logout").click().run()
    assert keys(at) == PASSWORD_FORM
    browser.keep(at)
    assert browser.cookie is None  # the page deleted it
    assert keys(browser.load()) == PASSWORD_FORM
    browser.cookie = stolen  # a copy taken before signing out
    at = browser.load("workflow", id="demo-expense-waiting")
    assert keys(at) == PASSWORD_FORM and "demo-" not in " ".join(messages(at))


def test_a_tab_whose_session_ended_elsewhere_cannot_act(
    password: None, browser: Browser, engine: Engine
) -> None:
    wait = user_wait(engine)
    tab = sign_in(browser.load("workflows"), "ana", "s3cret")
    browser.keep(tab)
    tab.switch_page("views/inbox.py").run()
    other = browser.load()  # another tab of the same browser: the same session
    other.button(key="logout").click().run()
    tab.button(key=f"approve_{wait.id}").click().run()  # drawn before the sign-out
    assert engine.get(wait.workflow_id).status is WorkflowStatus.WAITING
    tab.switch_page("views/inbox.py").run()
    assert keys(tab) == PASSWORD_FORM


def test_forged_and_expired_sessions_show_the_sign_in(
    password: None, browser: Browser, clock: ManualClock
) -> None:
    at = sign_in(browser.load(), "vic", "peek")  # a viewer ...
    browser.keep(at)
    token = str(browser.cookie)
    browser.cookie = with_payload(token, role="operator")  # ... promoting itself
    assert keys(browser.load()) == PASSWORD_FORM
    browser.cookie = "v1.eyJ9.AAAA"
    assert keys(browser.load()) == PASSWORD_FORM
    browser.cookie = token
    assert title(browser.load()) == "Workflows"
    clock.advance(timedelta(hours=12))
    at = browser.load()
    assert keys(at) == PASSWORD_FORM
    browser.keep(at)
    assert browser.cookie is None  # a refused cookie is deleted


def test_a_viewers_session_cannot_act(
    password: None,
    browser: Browser,
    engine: Engine,
    clicks: str,  # noqa: F811  (the fixture imported above)
) -> None:
    """A viewer's valid cookie: a forged click is dropped, and a page that forgot to
    disable the button reaches the service, which refuses."""
    browser.keep(sign_in(browser.load(), "vic", "peek"))
    wait = user_wait(engine)
    at = browser.load("inbox")
    click_as_viewer(at, f"approve_{wait.id}", clicks)
    assert engine.get(wait.workflow_id).status is WorkflowStatus.WAITING


def test_five_wrong_passwords_lock_the_name_in_the_page(
    password: None, browser: Browser, clock: ManualClock
) -> None:
    at = browser.load()
    for n in range(1, 6):
        sign_in(at, "eve", f"guess {n}")
        assert at.error[0].value.startswith("Wrong password.")
        assert f"({n} refused in this tab.)" in at.error[0].value
    assert "refused until 09:15:00 UTC" in shown(at.error[0].value)
    sign_in(at, "eve", "s3cret")
    assert keys(at) == PASSWORD_FORM
    assert shown(at.error[0].value) == (
        "Too many wrong passwords for this name: sign-in is refused until 09:15:00 UTC. "
        "(6 refused in this tab.)"
    )
    fresh = sign_in(browser.load(), "EVE", "s3cret")  # another tab, another spelling
    assert keys(fresh) == PASSWORD_FORM and "refused until" in shown(fresh.error[0].value)
    clock.advance(timedelta(minutes=15))
    assert title(sign_in(at, "eve", "s3cret")) == "Workflows"


def test_without_authentication_the_typed_name_comes_back(
    ui_env: str, clock: ManualClock, browser: Browser, engine: Engine
) -> None:
    at = browser.load()
    assert at.text_input(key="operator_name").value == ""
    at.text_input(key="operator_name").set_value("ana").run()
    browser.keep(at)
    assert browser.cookie
    wait = user_wait(engine)
    again = browser.load("inbox")
    assert again.text_input(key="operator_name").value == "ana"
    assert not again.button(key=f"approve_{wait.id}").disabled
    again.toggle(key="read_only").set_value(True).run()
    browser.keep(again)
    viewer = browser.load("inbox")
    assert viewer.text_input(key="operator_name").value == "ana"
    assert viewer.toggle(key="read_only").value is True
    assert viewer.button(key=f"approve_{wait.id}").disabled
    viewer.text_input(key="operator_name").set_value("").run()
    browser.keep(viewer)
    assert browser.cookie is None  # cleared with the name
    assert browser.load().text_input(key="operator_name").value == ""


def test_a_misconfigured_sign_in_says_so_and_opens_nothing(
    password: None, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GORCH_UI_SECRET", "too short")
    at = browser.load("inbox")
    assert keys(at) == set() and title(at) == "gorch"
    assert "GORCH_UI_SECRET must be at least 32 characters" in shown(at.error[0].value)
    monkeypatch.delenv("GORCH_UI_SECRET")
    monkeypatch.setenv("GORCH_UI_LOCKOUT_MINUTES", "forever")
    at = browser.load("inbox")
    assert keys(at) == set() and "GORCH_UI_LOCKOUT_MINUTES" in shown(at.error[0].value)
