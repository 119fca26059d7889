"""The operator UI over 100,000 stored workflows on SQLite (row 7): page and query times.

Page rows: the real app (``gorch_ui/streamlit_app.py`` with its pages) run by Streamlit's
``AppTest`` in this process, as the UI tests drive it; a row is the server time of one rerun
of the page (what every refresh, filter change or click costs: the gate, the navigation, the
page's queries and drawing its elements), against the floor of a trivial page's rerun.

Query rows: each ``gorch_ui.services`` query a page render asks, against the same rows
fetched by one raw ``SELECT`` on the same connection pool; the ratio is the cost of records,
filters and counts.

The database holds the demo workflows plus ``--workflows`` more (100,000; 2,000
with ``--quick``); it is built once and kept in ``bench/.cache/`` (keyed by its size and the
schema), so reruns start at once. Delete the folder to rebuild it.

Run: ``.venv/bin/python bench/bench_ui.py [--quick] [--workflows N]`` (or ``bench/run.py
--only ui``).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, Target, best_of, peak_memory, print_table, skipped

from engine import Engine, PollingResumer, SQLModelStore, WorkflowStatus
from engine._records import ThreadState, WorkflowRecord
from engine.examples import WORKFLOWS

ROWS = {
    "ui.page.list": (7, "UI list page, first page"),
    "ui.page.filtered": (7, "UI list page, filtered by status and type"),
    "ui.page.last": (7, "UI list page, last page"),
    "ui.page.workflow": (7, "UI workflow page (graph, threads, history)"),
    "ui.query.counts": (7, "UI query: counts by status and type"),
    "ui.query.first": (7, "UI query: first page (+ total count)"),
    "ui.query.filtered": (7, "UI query: first page by status and type (+ total)"),
    "ui.query.last": (7, "UI query: last page"),
    "ui.query.search": (7, "UI query: search by id"),
}

CACHE = Path(__file__).parent / ".cache"
SEED_VERSION = 2  # bump when ``load`` changes what it writes
SCHEMA = Path(__file__).parent.parent / "engine" / "store"
WORKFLOW = "demo-expense-waiting"  # the workflow page's workflow: waiting, with a history
PAGE_TARGET = Target(1000, on="ours")


def load(store: SQLModelStore, n: int) -> None:
    """Store ``n`` workflows of the example types in every status (through ``Store.create``,
    the store's public API, one transaction each: about 30 s for 100,000, once)."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    statuses, types = list(WorkflowStatus), ["Expense", "Order", "Import"]
    for i in range(n):
        store.create(
            WorkflowRecord(
                id=f"wf-{i:06d}",
                type=types[i % 3],
                status=statuses[i % 5],
                state={"amount": i},
                threads=[ThreadState("main", position="waiting for approval")],
                created_at=t0 + timedelta(seconds=i),
                updated_at=t0 + timedelta(seconds=i),
            ),
            [],
        )


def schema_digest(seed_version: int) -> str:
    """A digest of what a cached database depends on: the schema and the seeding code."""
    h = hashlib.sha256(str(seed_version).encode())
    for f in sorted([SCHEMA / "tables.py", *(SCHEMA / "migrations").rglob("*.py")]):
        h.update(f.read_bytes())
    return h.hexdigest()[:10]


def cached_db(
    kind: str, n: int, what: str, seed_version: int, load: Callable[[Engine], None]
) -> Path:
    """A SQLite file with the demo workflows, then ``load(engine)``, built once per kind, size
    and schema in ``bench/.cache/`` (written to a temporary file and renamed into place)."""
    from gorch_ui import services

    path = CACHE / f"{kind}-{n}-{schema_digest(seed_version)}.db"
    if path.exists():
        return path
    CACHE.mkdir(exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.db")
    print(f"(seeding {n:,} {what} into {path}, once)", file=sys.stderr, flush=True)
    try:
        engine = services.open_engine(f"sqlite:///{tmp}")  # the demo workflows, every status
        store = engine.store
        assert isinstance(store, SQLModelStore)
        try:
            load(engine)
            with store.engine.begin() as conn:
                conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        finally:
            store.close()
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
    return path


def seeded_db(n: int) -> Path:
    """A SQLite file with the demo workflows and ``n`` more, built once per size and schema."""

    def fill(engine: Engine) -> None:
        assert isinstance(engine.store, SQLModelStore)
        load(engine.store, n)

    return cached_db("ui", n, "workflows", SEED_VERSION, fill)


@contextmanager
def app_env(url: str) -> Iterator[None]:
    """The environment the app reads: this database, no auth, inline execution; restored."""
    import streamlit as st

    names = ("GORCH_DB_URL", "GORCH_UI_EXECUTE", "GORCH_UI_PASSWORD",
             "GORCH_UI_VIEWER_PASSWORD", "GORCH_UI_OPERATORS", "GORCH_APP")  # fmt: skip
    saved = {k: os.environ.get(k) for k in names}
    for k in names:
        os.environ.pop(k, None)
    os.environ.update(GORCH_DB_URL=url, GORCH_UI_EXECUTE="inline")
    # AppTest runs the script outside a server, which Streamlit warns about: not our news.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
        lambda record: "missing ScriptRunContext" not in record.getMessage()
    )
    st.cache_resource.clear()
    try:
        yield
    finally:
        st.cache_resource.clear()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def page_rows(total: int, runs: int) -> list[Row]:
    """The page rows: the real app's reruns against a trivial page's."""
    from streamlit.testing.v1 import AppTest

    from gorch_ui import APP_FILE

    def checked(at: AppTest, title: str) -> AppTest:
        if at.exception:
            raise RuntimeError(f"the page raised: {at.exception}")
        titles = [t.value for t in at.title]
        if titles != [title]:
            raise RuntimeError(f"expected the page {title!r}, got {titles}")
        return at

    trivial = AppTest.from_string(
        "import streamlit as st\nst.title('Workflows')\nst.write('A trivial page.')"
    ).run()
    floor = best_of(trivial.run, runs)
    floor_what = "a trivial page's rerun"
    rows: list[Row] = []

    def measure(key: str, title: str) -> None:
        checked(at, title)
        rows.append(Row(key, ROWS[key][1], best_of(lambda: checked(at.run(), title), runs) * 1e3,
                        unit="ms", floor=floor * 1e3, floor_what=floor_what, target=PAGE_TARGET,
                        peak=peak_memory(at.run), issue=7))  # fmt: skip

    at = AppTest.from_file(str(APP_FILE), default_timeout=300).run()
    at.text_input(key="operator_name").set_value("bench").run()  # no auth: just a name
    measure("ui.page.list", "Workflows")

    at.selectbox(key="wf_status").set_value("waiting")
    at.selectbox(key="wf_type").set_value("Order").run()
    # the status column is drawn with a dot before each status (gorch_ui.ui.status_table)
    if {s.removeprefix("● ") for s in at.dataframe[-1].value["status"]} != {"waiting"}:
        raise RuntimeError("the status filter did not apply")
    measure("ui.page.filtered", "Workflows")

    at.selectbox(key="wf_status").set_value("")
    at.selectbox(key="wf_type").set_value("").run()  # new filters: back to the first page
    last = -(-total // 50) - 1
    at.session_state["wf_page"] = last
    at.run()
    caption = " ".join(str(c.value) for c in at.caption)
    if f"Page {last + 1} of {last + 1}" not in caption:
        raise RuntimeError(f"not on the last page ({last + 1}): {caption!r}")
    measure("ui.page.last", "Workflows")

    at.switch_page("views/workflow.py")
    at.query_params["id"] = WORKFLOW
    at.run()
    measure("ui.page.workflow", f"Expense · {WORKFLOW}")
    return rows


def query_rows(store: SQLModelStore, engine: Engine, total: int, runs: int) -> list[Row]:
    """The query rows: ``gorch_ui.services`` against raw SQL."""
    from gorch_ui import services

    last = -(-total // 50) - 1

    def raw(sql: str) -> Callable[[], Any]:
        def run() -> Any:
            with store.engine.connect() as conn:
                return conn.execute(text(sql)).all()

        return run

    order = "ORDER BY created_at DESC, id DESC LIMIT 51"
    queries = [
        ("ui.query.counts", lambda: services.counts(engine),
         raw("SELECT status, count(*) FROM workflows GROUP BY status"), "raw GROUP BY"),
        ("ui.query.first", lambda: services.list_workflows(engine),
         raw(f"SELECT * FROM workflows {order}"), "raw SELECT … LIMIT"),
        ("ui.query.filtered", lambda: services.list_workflows(
            engine, status="waiting", type="Order"),
         raw(f"SELECT * FROM workflows WHERE status='waiting' AND type='Order' {order}"),
         "raw SELECT … WHERE … LIMIT"),
        ("ui.query.last", lambda: services.list_workflows(engine, page=last),
         raw(f"SELECT * FROM workflows {order} OFFSET {last * 50}"), "raw SELECT … OFFSET"),
        ("ui.query.search", lambda: services.list_workflows(engine, search="0999"),
         raw(f"SELECT * FROM workflows WHERE id LIKE '%0999%' {order}"),
         "raw SELECT … LIKE"),
    ]  # fmt: skip
    rows = []
    for key, ours, floor, floor_what in queries:
        rows.append(Row(key, ROWS[key][1], best_of(ours, runs) * 1e3, unit="ms",
                        floor=best_of(floor, runs) * 1e3, floor_what=floor_what,
                        peak=peak_memory(ours), issue=7))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 workflows, fewer runs")
    parser.add_argument("--workflows", type=int, help="how many (default 100,000)")
    args = parser.parse_args(argv)
    n = args.workflows or (2_000 if args.quick else 100_000)
    runs = 2 if args.quick else 5
    try:
        import streamlit  # noqa: F401

        from gorch_ui import services  # noqa: F401
    except ImportError as e:
        return skipped(ROWS, f"the ui extra is not installed ({e})")
    path = seeded_db(n)
    url = f"sqlite:///{path}"
    size = f"{n:,} workflows"
    store = SQLModelStore(url)
    try:
        total = sum(store.count_workflows().values())
        engine = Engine(store, WORKFLOWS, resumer=PollingResumer())
        rows = query_rows(store, engine, total, runs)
    finally:
        store.close()
    with app_env(url):
        rows = page_rows(total, runs) + rows
    for r in rows:
        r.bench += f", {size}"
    return rows


if __name__ == "__main__":
    print_table(main())
