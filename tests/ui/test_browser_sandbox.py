"""The "try it" sandbox and the timeline slider in a real browser (Chromium via Playwright).

What AppTest cannot see: the slider moved by the keyboard redrawing the SVG graph of the past,
and a click on the sandbox's Approve that changes the sandbox and leaves the database as it was.
Same requirements and skips as tests/ui/test_browser.py, whose fixtures it uses.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from engine import Engine, PollingResumer, SQLModelStore, WorkflowStatus
from engine.examples import WORKFLOWS
from tests.ui.test_browser import (  # noqa: F401 (fixtures)
    WID,
    browser_page,
    playwright_api,
    server,
)

pytestmark = pytest.mark.browser


def _shot(element: object, tmp_path: Path, name: str) -> None:
    """A screenshot of one part of the page (``GORCH_SANDBOX_SHOTS=dir`` keeps a copy)."""
    path = tmp_path / name
    element.screenshot(path=str(path))  # type: ignore[attr-defined]
    if out := os.environ.get("GORCH_SANDBOX_SHOTS"):
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(out) / name)


def _stored(db: str) -> tuple[WorkflowStatus, int, int]:
    store = SQLModelStore(db)
    try:
        engine = Engine(store, WORKFLOWS, resumer=PollingResumer())
        info = engine.get(WID)
        return info.status, info.version, len(engine.history(WID))
    finally:
        store.close()


def test_timeline_slider_and_try_it_panel(
    playwright_api: object,  # noqa: F811
    server: tuple[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    url, db = server
    api: object = playwright_api
    with browser_page(api, 1400, 1600) as (_browser, page):
        page.goto(f"{url}/workflow?id={WID}")
        page.locator("svg g.node").filter(has_text="waiting for approval").first.wait_for()
        before = _stored(db)
        assert before[0] == WorkflowStatus.WAITING

        # The timeline: Home moves the slider to the creation, ArrowRight one line on.
        page.get_by_text("Timeline: replay the history").click()
        slider = page.locator("[data-testid='stSlider'] input[type='range']")
        slider.wait_for(state="attached")
        slider.focus()
        page.keyboard.press("Home")
        page.get_by_text("line 0 of").wait_for()
        page.keyboard.press("ArrowRight")
        page.get_by_text("line 1 of").wait_for()
        past = page.locator("svg").filter(has_text="after line 1: running")
        past.wait_for()
        first = past.locator("g.node").filter(has_text="first action")
        # main stands after "first action": outlined in its colour, dashed
        assert first.locator("polygon, path").first.get_attribute("stroke") == "#1f77b4"
        assert past.locator("g.node").filter(has_text="● g1").count() == 0  # not started
        _shot(page.locator("[data-testid='stExpander']").first, tmp_path, "timeline.png")

        # The sandbox: fork, approve there; the database does not change.
        page.get_by_text("Try it in a sandbox").click()
        page.get_by_text("Nothing here is real.").wait_for()
        page.get_by_role("button", name="Fork into a sandbox").click()
        page.get_by_text("No step ran real code in the sandbox.").wait_for()
        sandbox_graph = page.locator("svg").filter(has_text="SANDBOX Expense")
        sandbox_graph.first.wait_for()
        page.get_by_label("Reason / input (JSON for Send)").fill("try it")
        page.get_by_role("button", name="Approve").click()
        page.get_by_text("the sandbox is now finished").first.wait_for()
        page.locator("svg").filter(
            has_text="SANDBOX Expense demo-expense-waiting — finished"
        ).first.wait_for()
        page.wait_for_timeout(1000)
        _shot(page.locator("[data-testid='stExpander']").nth(1), tmp_path, "sandbox.png")
        assert _stored(db) == before

        page.get_by_role("button", name="Discard sandbox").click()
        page.get_by_role("button", name="Fork into a sandbox").wait_for()
    assert _stored(db) == before
