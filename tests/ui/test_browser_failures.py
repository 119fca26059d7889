"""Failures in a real browser (Playwright and Chromium, as tests/ui/test_browser.py): the error
in the list and the header, coloured statuses, the time filter, confirmations, and the
incidents page retrying a group after its preview while skipping one that changed meanwhile.

``GORCH_SCREENSHOTS=<dir>`` also keeps the screenshots there.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from engine import Engine, PollingResumer, SQLModelStore, WorkflowStatus
from engine.examples import WORKFLOWS, Import
from tests.ui.test_browser import (  # noqa: F401 (fixtures)
    _screenshot,
    browser_page,
    playwright_api,
    server,
)

pytestmark = pytest.mark.browser

FAILED_RED = (0xD2, 0x22, 0x2D)  # ui.STATUS_HEX[failed]
WAITING_ORANGE = (0xC2, 0x6A, 0x00)


def _has_colour(png: bytes, rgb: tuple[int, int, int], tolerance: int = 40) -> bool:
    """Whether the picture holds pixels close to ``rgb`` (the canvas-drawn table's text)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return any(
        all(abs(c - t) <= tolerance for c, t in zip(pixel, rgb, strict=True))
        for _, pixel in image.getcolors(maxcolors=1 << 20) or []
    )


def _sign_in(page: Any, name: str = "ana") -> None:
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Your name").press("Enter")
    page.wait_for_timeout(500)


def _cells(page: Any) -> list[str]:
    """The text of the workflows table's cells (the grid keeps them in the page for a11y)."""
    page.wait_for_timeout(1500)  # the page's rerun, then the grid redrawn
    table = page.locator("[data-testid='stDataFrame']").last
    return [str(t) for t in table.locator("[role='gridcell']").all_inner_texts()]


def test_failures_show_in_the_list_and_header_and_actions_ask_first(
    playwright_api: object,  # noqa: F811
    server: tuple[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    url, db = server
    api: Any = playwright_api
    with browser_page(api, 1500, 1100) as (_browser, page):
        page.goto(url)
        table = page.locator("[data-testid='stDataFrame']").last
        table.wait_for()
        page.wait_for_timeout(1500)  # the grid draws on a canvas a little later
        # An operator's toolbar: no Deploy button.
        assert page.get_by_role("button", name="Deploy").count() == 0
        assert page.get_by_text("Deploy", exact=True).count() == 0
        # The failed workflow's error is in the list; statuses are coloured.
        cells = _cells(page)
        assert "ConnectionError: page 0: service unavailable" in cells
        assert "waiting for approval: slackApproval, timeout" in cells
        shot = table.screenshot()
        assert _has_colour(shot, FAILED_RED) and _has_colour(shot, WAITING_ORANGE)
        _screenshot(page, tmp_path, "workflows.png")

        # A count is a filter.
        page.get_by_role("button", name="failed 1").click()
        page.wait_for_timeout(1500)
        assert "demo-import-failed" in _cells(page)
        assert "demo-expense-waiting" not in _cells(page)
        page.get_by_role("button", name="failed 1").click()  # again: every status
        page.wait_for_timeout(1500)
        assert "demo-expense-waiting" in _cells(page)

        # The time filter: nothing was created in 2020.
        for end, day in (("start", "20200101"), ("end", "20200102")):
            page.get_by_role("spinbutton", name=f"year, Created between (UTC) {end} date").click()
            page.keyboard.type(day)
        page.keyboard.press("Escape")
        page.get_by_role("heading", name="Workflows").click()
        page.get_by_text("No workflow matches these filters").wait_for()
        assert "demo-import-failed" not in _cells(page)

        # The failed workflow's page says why in its header, with the traceback below.
        page.goto(f"{url}/workflow?id=demo-import-failed")
        page.get_by_text("Import demo-import-failed has failed.").wait_for()
        page.get_by_text(
            "thread main failed at 'fetch page' after 1 attempt: ConnectionError"
        ).first.wait_for()
        _screenshot(page, tmp_path, "failed_workflow.png")
        _sign_in(page)
        page.get_by_text("Traceback ·").first.click()
        page.get_by_text("Traceback (most recent call last)").first.wait_for()

        # Retry asks once, then a retry that fails again is shown as a failure.
        page.get_by_role("button", name="Retry", exact=True).click()
        page.get_by_text("Retry 1 failed thread of demo-import-failed?").wait_for()
        _screenshot(page, tmp_path, "retry_question.png")
        page.get_by_role("button", name="Retry", exact=True).click()
        page.get_by_text("Retry failed: workflow demo-import-failed failed again").wait_for()
        assert page.locator("[data-testid='stAlertContentSuccess']").count() == 0

        # Cancel asks once; leaving it changes nothing; a finished workflow offers no
        # step or execute.
        page.goto(f"{url}/workflow?id=demo-order-waiting")  # a new session: sign in again
        page.get_by_role("button", name="Cancel", exact=True).wait_for()
        _sign_in(page)
        page.get_by_role("button", name="Cancel", exact=True).click()
        page.get_by_text("for good?").wait_for()
        page.get_by_role("button", name="No, leave it").click()
        page.get_by_role("button", name="Cancel", exact=True).wait_for()
        page.get_by_role("button", name="Cancel", exact=True).click()
        page.get_by_role("button", name="Cancel for good").click()
        page.get_by_text("nothing more runs").wait_for()
        _screenshot(page, tmp_path, "cancelled.png")
        assert page.get_by_role("button", name="Step once").count() == 0
        assert page.get_by_role("button", name="Execute").count() == 0

    engine = Engine(SQLModelStore(db), WORKFLOWS, resumer=PollingResumer())
    assert engine.get("demo-order-waiting").status is WorkflowStatus.CANCELLED
    kinds = [h.kind for h in engine.history("demo-import-failed") if h.actor == "ana"]
    assert kinds == ["retried"]


def test_incidents_retry_a_group_after_its_preview_and_skip_one_that_changed(
    playwright_api: object,  # noqa: F811
    server: tuple[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    url, db = server
    api: Any = playwright_api
    with browser_page(api, 1500, 1300) as (_browser, page):
        page.goto(url)  # seeds the demo workflows
        page.locator("[data-testid='stDataFrame']").last.wait_for()
        engine = Engine(SQLModelStore(db), WORKFLOWS)
        for n in (7, 8, 9):
            engine.new_workflow(
                Import(pages=2, flaky=[0], failures=1, attempts=1), f"import-batch-{n}"
            )

        page.goto(f"{url}/incidents")
        page.get_by_text("1 cause across 4 failed workflows").wait_for()
        _sign_in(page)
        page.get_by_role("button", name="Preview what it will touch").click()
        page.get_by_text("retry 4 workflows.").wait_for()
        page.wait_for_timeout(1000)
        for wid in ("demo-import-failed", "import-batch-7", "import-batch-8"):
            assert page.get_by_text(wid, exact=True).count() >= 1  # listed
        _screenshot(page, tmp_path, "incident_preview.png")

        engine.retry("import-batch-8", "carol", "by hand")  # changes after the preview
        page.get_by_role("button", name="Retry 4 workflows").click()
        page.get_by_text("retried 3 workflows").wait_for()
        page.get_by_text("skipped import-batch-8: changed since the preview").wait_for()
        _screenshot(page, tmp_path, "incident_report.png")

    retried = {
        wid: [h.actor for h in engine.history(wid) if h.kind == "retried"]
        for wid in ("demo-import-failed", "import-batch-7", "import-batch-8", "import-batch-9")
    }
    assert retried == {
        "demo-import-failed": ["ana"],
        "import-batch-7": ["ana"],
        "import-batch-8": ["carol"],  # skipped, never acted on blindly
        "import-batch-9": ["ana"],
    }
