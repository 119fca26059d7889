"""Deciding from the inbox in a real browser (Playwright, Chromium): the decision's context on
the card, the count above 200 with paging, an unassigned operator refused by the engine, the
decision form opening beside the graph in view, and a start form without internal fields.

Same requirements as tests/ui/test_browser.py (skips without Chromium, fails with CI=true).
``GORCH_INBOX_SHOTS=/some/dir`` keeps the screenshots there.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import Engine, HistoryKind, PollingResumer, SQLModelStore, WorkflowStatus
from engine.examples import WORKFLOWS, Expense
from gorch_ui import services
from tests.ui.helpers import streamlit_server
from tests.ui.test_browser import browser_page, playwright_api  # noqa: F401

pytestmark = pytest.mark.browser

BULK = 230
GUARDED = "for-approvers"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The app on a SQLite file holding the demo, ``BULK`` waiting claims and one claim only
    someone with the approver role may decide."""
    db = f"sqlite:///{tmp_path / 'gorch.db'}"
    engine = services.open_engine(db)  # seeds the demo workflows
    for i in range(BULK):
        engine.new_workflow(Expense(amount=i, requester="raj"), f"bulk-{i:03d}")
    engine.new_workflow(Expense(amount=7, requester="raj", approvers=["role:approver"]), GUARDED)
    engine.store.close()  # type: ignore[attr-defined]
    env = {"GORCH_DB_URL": db, "GORCH_UI_EXECUTE": "inline", "GORCH_UI_ROLES": "bo=approver"}
    unset = ("GORCH_UI_PASSWORD", "GORCH_UI_VIEWER_PASSWORD", "GORCH_APP")
    with streamlit_server(tmp_path, env, unset) as url:
        yield url, db


def _shot(page: object, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path))  # type: ignore[attr-defined]
    if out := os.environ.get("GORCH_INBOX_SHOTS"):
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(out) / name)


def _sign(page: object, name: str) -> None:
    field = page.get_by_label("Your name")  # type: ignore[attr-defined]
    field.fill(name)
    field.press("Enter")


def test_decide_from_the_card_and_beside_the_graph(
    playwright_api: object,  # noqa: F811
    server: tuple[str, str],
    tmp_path: Path,
) -> None:
    url, db = server
    api: object = playwright_api
    with browser_page(api, 1400, 900) as (_browser, page):
        # The inbox counts every wait (no cap at 200), a card per wait, oldest first.
        page.goto(f"{url}/inbox")
        _sign(page, "ana")
        count = page.get_by_text(re.compile(r"[\d,]+ waits to decide"))
        count.wait_for()
        total = int(re.sub(r"\D", "", count.inner_text().split("waits")[0]))
        assert total >= BULK + 2 > 200
        page.get_by_text("showing 1 to 25").wait_for()
        page.get_by_role("button", name="Approve").nth(19).wait_for()  # drawn in turn
        # The decision's context on the card, and who may decide.
        page.get_by_text("may decide: anyone; not raj").first.wait_for()
        page.get_by_text(re.compile("requester: raj")).nth(19).wait_for()
        _shot(page, tmp_path, "inbox_first_page.png")
        page.get_by_role("button", name="Next").click()
        page.get_by_text("showing 26 to 50").wait_for()
        assert count.inner_text().startswith(f"{total:,}")
        _shot(page, tmp_path, "inbox_second_page.png")

        # One card per wait: Approve, Deny and the timeout beside them.
        page.goto(f"{url}/inbox?workflow={GUARDED}")
        _sign(page, "ana")
        page.get_by_text("1 wait to decide").wait_for()
        assert page.get_by_role("button", name="Approve").count() == 1
        page.get_by_text(re.compile(r"timeout: times out at")).wait_for()
        page.get_by_text("may decide: role:approver; not raj").wait_for()
        # ana holds no approver role: the engine refuses her, and says so by the card.
        page.get_by_label("Comment (a reason is required to deny)").fill("ok by me")
        page.get_by_role("button", name="Approve").click()
        page.get_by_text(re.compile("ana is not assigned to this wait")).wait_for()
        _shot(page, tmp_path, "inbox_refused.png")

        # The graph: a click on the waiting node opens its decision beside the graph.
        page.goto(f"{url}/workflow?id={GUARDED}")
        _sign(page, "bo")
        node = (
            page.locator("svg g.node")
            .filter(has_not=page.locator("title", has_text="legend"))
            .filter(has_text="waiting for approval")
        )
        node.wait_for()
        node.locator("a").click()
        page.wait_for_url(re.compile(r".*/workflow\?id=for-approvers&decide=waiting.*"))
        _sign(page, "bo")
        approve = page.get_by_role("button", name="Approve")
        approve.wait_for()
        box = approve.bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 900, box
        page.get_by_text("amount: 7").wait_for()
        _shot(page, tmp_path, "graph_click_decide.png")
        page.get_by_label("Comment (a reason is required to deny)").fill("receipt checked")
        approve.click()
        page.get_by_text(re.compile("is not waiting now")).wait_for()

        # A click on a statement opens goto, also in view.
        page.goto(f"{url}/workflow?id=demo-expense-waiting&goto=first%20action")
        _sign(page, "bo")
        go = page.get_by_role("button", name="Go to").first
        go.wait_for()
        box = go.bounding_box()
        assert box is not None and box["y"] + box["height"] <= 900, box
        _shot(page, tmp_path, "graph_click_goto.png")

        # The start form asks only for input.
        page.goto(f"{url}/start?type=Expense")
        page.get_by_label("Requester").wait_for()
        assert page.get_by_label("Amount").count() == 1
        for internal in ("Approved", "Notified", "Error"):
            assert page.get_by_label(internal, exact=True).count() == 0
        _shot(page, tmp_path, "start_form.png")

    engine = Engine(SQLModelStore(db), WORKFLOWS, resumer=PollingResumer())
    info = engine.get(GUARDED)
    assert info.status is WorkflowStatus.FINISHED and info.result == {"approved": 7}
    history = engine.history(GUARDED)
    refused = [h for h in history if h.kind == HistoryKind.CALLBACK_REFUSED]
    assert [(h.actor, h.detail["refused"]) for h in refused] == [("ana", "not_assigned")]
    (callback,) = [h for h in history if h.kind == HistoryKind.CALLBACK]
    assert callback.actor == "bo" and callback.detail["input"]["reason"] == "receipt checked"
    rows = services.history_rows(history)
    assert any(r["what"] == "callback" and r["why"] == "receipt checked" for r in rows)
