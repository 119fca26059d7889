"""The operator UI's queries over 100,000 stored workflows (SQLite), against raw SQL floors.

Run: ``.venv/bin/python bench/bench_ui.py [--quick]``. Each row times a ``gorch_ui.services``
query (what one page render asks the database) and the same rows fetched by one raw
``SELECT`` on the same connection pool: the ratio is the cost of records, filters and counts.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import best_of
from sqlalchemy import text

from engine import Engine, PollingResumer, SQLModelStore, WorkflowStatus
from engine.examples import WORKFLOWS
from engine.runtime import ThreadState, WorkflowRecord
from engine.store.sql import _workflow_values  # bulk loading only: the engine writes one by one
from engine.store.tables import workflows
from gorch_ui import services


def load(store: SQLModelStore, n: int) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    statuses, types = list(WorkflowStatus), ["Expense", "Order", "Import"]
    rows = []
    for i in range(n):
        r = WorkflowRecord(
            id=f"wf-{i:06d}",
            type=types[i % 3],
            status=statuses[i % 5],
            state={"amount": i},
            threads=[ThreadState("main", position="waiting for approval")],
            created_at=t0 + timedelta(seconds=i),
            updated_at=t0 + timedelta(seconds=i),
        )
        rows.append({"id": r.id, "version": 0, **_workflow_values(r)})
    with store.engine.begin() as conn:
        conn.execute(workflows.insert(), rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="20,000 workflows, fewer runs")
    n = 20_000 if parser.parse_args().quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLModelStore(f"sqlite:///{Path(tmp) / 'ui.db'}")
        load(store, n)
        engine = Engine(store, WORKFLOWS, resumer=PollingResumer())
        last = n // 50 - 1

        def raw(sql: str) -> object:
            def run() -> object:
                with store.engine.connect() as conn:
                    return conn.execute(text(sql)).all()

            return run

        order = "ORDER BY created_at DESC, id DESC LIMIT 51"
        rows = [
            ("counts (by status, per type)", lambda: services.counts(engine),
             raw("SELECT status, count(*) FROM workflows GROUP BY status")),
            ("first page (+ total count)", lambda: services.list_workflows(engine),
             raw(f"SELECT * FROM workflows {order}")),
            ("first page, status + type (+ total)", lambda: services.list_workflows(
                engine, status="waiting", type="Order"),
             raw(f"SELECT * FROM workflows WHERE status='waiting' AND type='Order' {order}")),
            (f"last page ({last + 1})", lambda: services.list_workflows(engine, page=last),
             raw(f"SELECT * FROM workflows {order} OFFSET {last * 50}")),
            ("search by id", lambda: services.list_workflows(engine, search="0999"),
             raw(f"SELECT * FROM workflows WHERE id LIKE '%0999%' {order}")),
        ]  # fmt: skip
        print(f"{n:,} workflows in SQLite")
        print(f"{'query':38} {'ours ms':>9} {'floor ms':>9} {'ratio':>6}")
        for label, ours, floor in rows:
            a, b = best_of(ours, 5), best_of(floor, 5)
            print(f"{label:38} {a * 1000:9.2f} {b * 1000:9.2f} {a / b:6.1f}")
        store.close()


if __name__ == "__main__":
    main()
