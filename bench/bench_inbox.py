"""The inbox at 10,000 open waits on SQLite (issue 16): the page's server time and its query.

The database holds the demo workflows plus ``--waits`` expense claims (10,000; 2,000 with
``--quick``) each waiting for approval and its timeout (two events, one card), with the
decision's context and assignees kept with the wait, as the engine arms them. Built once,
kept in ``bench/.cache/`` (keyed by its size and the schema).

Rows:

- ``inbox.page``: one rerun of the real inbox page (``AppTest``, as the UI tests drive it):
  the count, 25 cards with their context and forms; target under 1 s. Floor: a trivial
  page's rerun.
- ``inbox.query``: ``services.inbox_page``, the page's query (total count, first page of
  cards, their events), against the raw floor of the same: one ``SELECT`` of a page of open
  wait rows and one ``count(*)``, on the same pool.
- ``inbox.query.mine``: the same with "assigned to me" (a role), against the same floor.
- ``inbox.query.deep``: the page halfway down (after the 5,001st card of 10,003), keyset,
  against the same floor.

Run: ``.venv/bin/python bench/bench_inbox.py [--quick] [--waits N]`` (or ``bench/run.py
--only inbox``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))
from bench_ui import app_env, cached_db
from common import Row, Target, best_of, peak_memory, print_table, skipped

from engine import Engine, PollingResumer, SQLModelStore
from engine.examples import WORKFLOWS, Expense

ROWS = {
    "inbox.page": (None, "UI inbox page, first page of cards (+ count)"),
    "inbox.query": (None, "inbox query: count + first page of cards"),
    "inbox.query.mine": (None, "inbox query: assigned to me (a role)"),
    "inbox.query.deep": (None, "inbox query: a page halfway down (keyset)"),
}

SEED_VERSION = 1  # bump when ``load`` changes what it writes
PAGE_TARGET = Target(1000, on="ours")
OPEN = "('pending_setup', 'set_up', 'setup_error')"


def load(engine: Engine, n: int) -> None:
    """``n`` expense claims waiting for approval, copied from one the engine ran (its record
    and waits, with new ids and times), through the store's API: a few seconds per 1,000."""
    store = engine.store
    template = engine.new_workflow(Expense(amount=1, requester="raj"), "bench-template")
    engine.execute(template)
    rec, waits = store.load(template), store.load_waits(template)
    for i in range(n):
        wid = f"claim-{i:06d}"
        at = rec.created_at + timedelta(seconds=i)
        approvers = ["role:approver"] if i % 2 else ["bo"]
        state = {**rec.state, "amount": i, "requester": f"r{i % 50}", "approvers": approvers}
        new = replace(rec.copy(), id=wid, state=state, created_at=at, updated_at=at, version=0,
                      lease_owner=None, lease_until=None)  # fmt: skip
        store.create(new, [])
        held = store.acquire(wid, "seed", now=at, until=at + timedelta(minutes=1))
        mine = []
        for w in waits:
            c = w.copy()
            c.id, c.workflow_id, c.created_at = f"{wid}-{w.event}", wid, at
            if c.assignees is not None:
                c.data = {**c.data, "context": {"amount": i, "requester": state["requester"]},
                          "assignees": approvers, "excluded": [state["requester"]]}  # fmt: skip
            mine.append(c)
        store.checkpoint(held, owner="seed", waits=mine, history=[], release=True)


def seeded_db(n: int) -> Path:
    """A SQLite file with the demo workflows and ``n`` waiting claims, built once."""
    return cached_db("inbox", n, "open waits", SEED_VERSION, lambda engine: load(engine, n))


def query_rows(store: SQLModelStore, engine: Engine, runs: int) -> list[Row]:
    from gorch_ui import services
    from gorch_ui.access import Operator

    def floor() -> Any:
        with store.engine.connect() as conn:
            total = conn.execute(text(f"SELECT count(*) FROM waits WHERE status IN {OPEN}"))
            total.scalar_one()
            return conn.execute(text(f"SELECT * FROM waits WHERE status IN {OPEN} "
                                     "ORDER BY created_at, id LIMIT 50")).all()  # fmt: skip

    ann = Operator("ann")
    deep, seen = None, 0  # the key of the card halfway down (the 5,000th of 10,000)
    want = engine.inbox().total // 2
    while seen < want:
        page = services.inbox_page(engine, ann, after=deep, page_size=min(1000, want - seen))
        deep, seen = page.items[-1].key, seen + len(page.items)
    os.environ["GORCH_UI_ROLES"] = "ann=approver"
    try:
        queries: list[tuple[str, Callable[[], Any]]] = [
            ("inbox.query", lambda: services.inbox_page(engine, ann)),
            ("inbox.query.mine", lambda: services.inbox_page(engine, ann, mine=True)),
            ("inbox.query.deep", lambda: services.inbox_page(engine, ann, after=deep)),
        ]
        if not services.inbox_page(engine, ann, mine=True).items:
            raise RuntimeError("'assigned to me' found nothing")
        raw = best_of(floor, runs) * 1e3
        return [
            Row(
                key,
                ROWS[key][1],
                best_of(ours, runs) * 1e3,
                unit="ms",
                floor=raw,
                floor_what="raw SELECT page + count(*)",
                peak=peak_memory(ours),
            )
            for key, ours in queries
        ]
    finally:
        os.environ.pop("GORCH_UI_ROLES", None)


def page_row(runs: int, total: int) -> Row:
    from streamlit.testing.v1 import AppTest

    from gorch_ui import APP_FILE

    def checked(at: AppTest) -> AppTest:
        if at.exception:
            raise RuntimeError(f"the page raised: {at.exception}")
        shown = " ".join(str(m.value) for m in at.markdown)
        if f"**{total:,}** waits to decide" not in shown:
            raise RuntimeError(f"the inbox does not count {total:,} waits: {shown[:200]!r}")
        return at

    trivial = AppTest.from_string("import streamlit as st\nst.title('Inbox')").run()
    floor = best_of(trivial.run, runs)
    at = AppTest.from_file(str(APP_FILE), default_timeout=300).run()
    at.text_input(key="operator_name").set_value("bench").run()
    at.switch_page("views/inbox.py")
    checked(at.run())
    return Row("inbox.page", ROWS["inbox.page"][1], best_of(lambda: checked(at.run()), runs) * 1e3,
               unit="ms", floor=floor * 1e3, floor_what="a trivial page's rerun",
               target=PAGE_TARGET, peak=peak_memory(at.run))  # fmt: skip


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 open waits, fewer runs")
    parser.add_argument("--waits", type=int, help="how many (default 10,000)")
    args = parser.parse_args(argv)
    n = args.waits or (2_000 if args.quick else 10_000)
    runs = 2 if args.quick else 5
    try:
        import streamlit  # noqa: F401

        from gorch_ui import services  # noqa: F401
    except ImportError as e:
        return skipped(ROWS, f"the ui extra is not installed ({e})")
    path = seeded_db(n)
    url = f"sqlite:///{path}"
    store = SQLModelStore(url)
    try:
        engine = Engine(store, WORKFLOWS, resumer=PollingResumer())
        total = engine.inbox().total
        rows = query_rows(store, engine, runs)
    finally:
        store.close()
    with app_env(url):
        rows = [page_row(runs, total), *rows]
    for r in rows:
        r.bench += f", {total:,} open waits"
    return rows


if __name__ == "__main__":
    print_table(main())
