"""The workflows list: errors that show, what each waits on, time ranges, keyset paging and
coloured statuses; through the service and through AppTest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from streamlit.testing.v1 import AppTest

from engine import Engine
from engine.examples import Expense
from gorch_ui import services, ui

Open = Callable[..., AppTest]


def test_rows_show_the_failed_threads_error_and_what_waits_on_what(engine: Engine) -> None:
    rows = {r["id"]: r for r in services.list_workflows(engine).rows}
    failed = rows["demo-import-failed"]
    assert failed["status"] == "failed"
    assert failed["error"] == "ConnectionError: page 0: service unavailable"
    waiting = rows["demo-expense-waiting"]
    assert waiting["waiting on"] == "waiting for approval: slackApproval, timeout"
    assert rows["demo-expense-approved"]["waiting on"] == ""


def test_keyset_pages_walk_forward_back_and_to_the_end(engine: Engine) -> None:
    for i in range(12):
        engine.new_workflow(Expense(amount=i), f"bulk-{i:02d}")
    kw = {"type": "Expense", "page_size": 5}
    first = services.list_workflows(engine, cursor=services.Cursor(), **kw)
    assert (first.has_previous, first.has_next, first.total) == (False, True, 16)
    second = services.list_workflows(
        engine, cursor=services.Cursor("after", first.last_key), page=1, **kw
    )
    third = services.list_workflows(
        engine, cursor=services.Cursor("after", second.last_key), page=2, **kw
    )
    last = services.list_workflows(engine, cursor=services.Cursor("last"), page=3, **kw)
    seen = [r["id"] for p in (first, second, third) for r in p.rows]
    assert len(seen) == len(set(seen)) == 15
    assert (last.has_next, last.has_previous, len(last.rows)) == (False, True, 5)
    assert last.rows[-1]["id"] == (seen + [r["id"] for r in last.rows])[-1]
    back = services.list_workflows(
        engine, cursor=services.Cursor("before", second.first_key), page=0, **kw
    )
    assert [r["id"] for r in back.rows] == [r["id"] for r in first.rows]
    assert (back.has_previous, back.has_next) == (False, True)


def test_time_ranges_filter_created_and_updated(engine: Engine) -> None:
    now = datetime.now(UTC)
    future = (now + timedelta(days=1), now + timedelta(days=2))
    assert services.list_workflows(engine, created=future).rows == []
    assert services.list_workflows(engine, created=future).total is None
    today = (now - timedelta(hours=1), now + timedelta(hours=1))
    assert len(services.list_workflows(engine, updated=today).rows) == 9
    by_update = services.list_workflows(engine, sort="updated_at", page_size=100).rows
    assert by_update == sorted(by_update, key=lambda r: (r["updated"], r["id"]), reverse=True)


def test_statuses_are_coloured_with_a_dot() -> None:
    styled = ui.status_table(
        [{"status": "failed", "error": "boom"}, {"status": "waiting", "error": ""}]
    )
    html = styled.to_html()
    assert "● failed" in html and "#d2222d" in html and "#c26a00" in html


def test_the_list_filters_by_created_day_in_the_page(open_page: Open, engine: Engine) -> None:
    at = open_page("workflows")
    assert len(at.dataframe[-1].value) == 9
    today = datetime.now(UTC).date()
    at.date_input(key="wf_created").set_value(
        (today - timedelta(days=3), today - timedelta(days=1))
    )
    at.run()
    assert len(at.dataframe[-1].value) == 0
    at.date_input(key="wf_created").set_value((today, today)).run()
    table = at.dataframe[-1].value
    assert len(table) == 9
    assert "● failed" in set(table["status"])
    errors = dict(zip(table["id"], table["error"], strict=True))
    assert "ConnectionError" in errors["demo-import-failed"]
