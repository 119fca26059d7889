"""Sign-in and messages in a real browser (Playwright + Chromium, as ``test_browser.py``).

What AppTest cannot show: the cookie the page's script sets, sent back on a reload, a new
tab and a graph-node link (each a full page load: a new Streamlit session); a message still
beside its button after the live parts refreshed twice; and signing out for good.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import Engine, PollingResumer, SQLModelStore
from engine.examples import WORKFLOWS
from tests.ui.helpers import streamlit_server
from tests.ui.test_browser import (  # noqa: F401  (playwright_api is a fixture)
    WID,
    _screenshot,
    browser_page,
    playwright_api,
)

pytestmark = pytest.mark.browser

REFRESH = 1.5  # seconds between refreshes of the live parts


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The app behind a password, on a fresh SQLite file; the session secret is generated
    next to it."""
    db = f"sqlite:///{tmp_path / 'gorch.db'}"
    env = {
        "GORCH_DB_URL": db,
        "GORCH_UI_EXECUTE": "inline",
        "GORCH_UI_PASSWORD": "s3cret",
        "GORCH_UI_REFRESH": str(REFRESH),
    }
    unset = ("GORCH_UI_VIEWER_PASSWORD", "GORCH_APP", "GORCH_UI_SECRET", "GORCH_UI_SECRET_FILE")
    with streamlit_server(tmp_path, env, unset) as url:
        yield url, db


def test_a_sign_in_survives_reloads_and_links_and_messages_stay(
    request: pytest.FixtureRequest, server: tuple[str, str], tmp_path: Path
) -> None:
    url, db = server
    api: object = request.getfixturevalue("playwright_api")  # skips without Chromium
    with browser_page(api, 1400, 1000) as (browser, page):
        context = page.context
        page.goto(f"{url}/workflow?id={WID}")
        page.get_by_label("Your name (recorded with every action)").fill("ana")
        page.get_by_role("textbox", name="Password").fill("s3cret")
        page.get_by_role("button", name="Sign in").click()
        sign_out = page.get_by_role("button", name="Sign out")
        sign_out.wait_for()
        page.wait_for_timeout(500)  # the page's script sets the cookie
        (cookie,) = [c for c in context.cookies() if c["name"] == "gorch_session"]
        assert cookie["sameSite"] == "Strict" and not cookie["httpOnly"]
        assert cookie["value"] not in page.url

        # A reload and a new tab: still signed in, no form.
        page.reload()
        sign_out.wait_for()
        assert page.get_by_role("button", name="Sign in").count() == 0
        tab = context.new_page()
        tab.goto(f"{url}/inbox")
        tab.get_by_role("button", name="Sign out").wait_for()
        tab.close()

        # A graph-node link is a full page load: signed in, straight to the wait's form.
        node = page.locator("svg g.node").filter(has_text="waiting for approval")
        node.locator("a").click()
        page.wait_for_url("**/workflow?id=demo-expense-waiting&decide=waiting*")
        page.get_by_role("button", name="Approve").wait_for()
        assert page.get_by_role("button", name="Sign in").count() == 0

        # An action's message stays beside its button through two refreshes and more.
        page.goto(f"{url}/workflow?id=demo-import-retrying")
        page.get_by_label("Reason (recorded in the history)").fill("nudge")
        step = page.get_by_role("button", name="Step once")
        step.click()
        message = page.locator(".st-key-gorch_msg_act_step")
        message.wait_for()
        page.wait_for_timeout(int(2.5 * REFRESH * 1000))
        assert message.is_visible() and "stepped" in message.inner_text()
        button, box = step.bounding_box(), message.bounding_box()
        assert button and box
        assert 0 <= box["y"] - (button["y"] + button["height"]) < 60  # right below it
        assert abs(box["x"] - button["x"]) < 20
        message.scroll_into_view_if_needed()
        _screenshot(page, tmp_path, "message.png")

        # Signing out ends it: a reload asks again, and so does the cookie copied before.
        sign_out.click()
        page.get_by_role("button", name="Sign in").wait_for()
        page.wait_for_timeout(500)
        assert not [c for c in context.cookies() if c["name"] == "gorch_session"]
        page.reload()
        page.get_by_role("button", name="Sign in").wait_for()
        thief = browser.new_context()
        thief.add_cookies([cookie])
        stolen = thief.new_page()
        stolen.goto(f"{url}/workflow?id={WID}")
        stolen.get_by_role("button", name="Sign in").wait_for()
        assert stolen.get_by_role("button", name="Sign out").count() == 0

    engine = Engine(SQLModelStore(db), WORKFLOWS, resumer=PollingResumer())
    history = engine.history("demo-import-retrying")
    assert any(h.actor == "ana" and h.detail.get("reason") == "nudge" for h in history)
