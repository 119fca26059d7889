"""The operator UI in a real browser: `streamlit run gorch_ui` driven by Playwright and Chromium.

What AppTest cannot see: the graph drawn as SVG in the page, the click on a pending wait's node
that leads to its resolve form, and an Approve click that changes the database.

Needs the ``playwright`` package (the dev extra) and Debian's ``chromium`` at /usr/bin/chromium
(``apt-get install chromium``; never ``playwright install``). Skips without them, except with
``CI=true``, where it fails. ``GORCH_SCREENSHOTS=docs/screenshots`` also writes the README's
screenshots there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine import Engine, PollingResumer, SQLModelStore, WorkflowStatus
from engine.examples import WORKFLOWS
from tests.ui.helpers import streamlit_server

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WID = "demo-expense-waiting"


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: the browser test must run)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def playwright_api() -> object:
    try:
        from playwright import sync_api
    except ImportError:
        _unavailable("the playwright package is missing: pip install -e '.[dev]'")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    return sync_api


@contextmanager
def browser_page(api: object, width: int, height: int) -> Iterator[tuple[Any, Any]]:
    """Debian's Chromium with one page of ``width`` x ``height`` (30 s timeouts), closed after:
    (browser, page). ``api`` is the ``playwright_api`` fixture."""
    with api.sync_playwright() as pw:  # type: ignore[attr-defined]
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()  # page.context opens more tabs sharing its cookies
            page.set_default_timeout(30_000)
            yield browser, page
        finally:
            browser.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``streamlit run gorch_ui`` from the repository root on a fresh SQLite file."""
    db = f"sqlite:///{tmp_path / 'gorch.db'}"
    env = {"GORCH_DB_URL": db, "GORCH_UI_EXECUTE": "inline"}
    unset = ("GORCH_UI_PASSWORD", "GORCH_UI_VIEWER_PASSWORD", "GORCH_APP")
    with streamlit_server(tmp_path, env, unset) as url:
        yield url, db


def _screenshot(page: object, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    if out := os.environ.get("GORCH_SCREENSHOTS"):
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(out) / name)
    return path


def test_approve_a_pending_wait_from_its_graph_node(
    playwright_api: object, server: tuple[str, str], tmp_path: Path
) -> None:
    url, db = server
    api: object = playwright_api
    with browser_page(api, 1400, 1450) as (_browser, page):
        # The workflow page draws the live graph: an SVG with the statements, the wait
        # highlighted in the pending colour and outlined in the main thread's colour.
        page.goto(f"{url}/workflow?id={WID}")
        statements = page.locator("svg g.node").filter(
            has_not=page.locator("title", has_text="legend")
        )
        wait_node = statements.filter(has_text="waiting for approval")
        wait_node.wait_for()
        for name in ("first action", "notification goroutine", "parallel thread"):
            assert statements.filter(has_text=name).count() == 1
        # The pending wait links to its decision form; the other statements to goto.
        hrefs = [a.get_attribute("href") or a.get_attribute("xlink:href") or ""
                 for a in page.locator("svg a").all()]  # fmt: skip
        assert sum("decide=" in h for h in hrefs) == 1
        assert any("goto=first%20action" in h for h in hrefs)
        shape = wait_node.locator("polygon").first
        assert shape.get_attribute("fill") == "#ffe08a"
        assert shape.get_attribute("stroke") == "#1f77b4"
        page.get_by_text("resolve in the inbox").first.wait_for()
        page.locator("[data-testid='stDataFrame']").first.wait_for()
        page.wait_for_timeout(1000)  # the tables draw on a canvas a little later
        _screenshot(page, tmp_path, "workflow.png")

        # A click on the pending wait's node opens its decision form beside the graph.
        wait_node.locator("a").click()
        page.wait_for_url("**/workflow?id=demo-expense-waiting&decide=waiting*")
        approve = page.get_by_role("button", name="Approve")
        approve.wait_for()
        page.get_by_role("button", name="Fire timeout now").wait_for()  # its other case
        assert page.get_by_role("button", name="Send").count() == 0  # no other wait shown
        page.set_viewport_size({"width": 1400, "height": 900})
        page.get_by_label("Your name").fill("ana")
        page.get_by_label("Your name").press("Enter")
        # Typed, not submitted, while the live inbox refreshes: the form keeps it.
        page.get_by_label("Comment (a reason is required to deny)").fill("looks right")
        page.wait_for_timeout(3500)
        _screenshot(page, tmp_path, "inbox.png")  # the decision beside the graph
        approve.click()
        page.get_by_text("now finished").wait_for()

    engine = Engine(SQLModelStore(db), WORKFLOWS, resumer=PollingResumer())
    info = engine.get(WID)
    assert (info.status, info.result) == (WorkflowStatus.FINISHED, {"approved": 120})
    callback = next(h for h in engine.history(WID) if h.kind == "callback")
    assert callback.actor == "ana"
    assert callback.detail["input"] == {"approved": True, "reason": "looks right"}
    assert not engine.pending_waits(WID)
