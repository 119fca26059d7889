"""Retention: ``Engine.prune`` over 100,000 ended workflows, on SQLite and PostgreSQL.

Each database holds ``--workflows`` ended workflows (finished and cancelled, 100,000; 2,000
with ``--quick``) that ended a day before the cut-off, each with 5 history rows and every
tenth with a wait whose tear-down is still outstanding, plus a tenth as many live (waiting)
workflows with their history, which must stay. They are written by bulk INSERTs (the rows
``Store.create`` and ``checkpoint`` would write), then ``ANALYZE``d.

Ours: ``Engine.prune(cut_off)`` with its default batch (1,000 workflows per transaction,
each re-checking status, age and lease in its DELETE), in workflows removed per second.
Floor: the same rows removed from an identical database by three raw ``DELETE`` statements
(history, waits, workflows, selected by status and age) in one transaction on the driver:
the least the database can do. The ratio is ours / floor (1 would be as fast as the floor).

Run: ``.venv/bin/python bench/bench_prune.py [--quick] [--workflows N]`` (or ``bench/run.py
--only prune``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, pg_schema, pg_unreachable, print_table, skipped

from engine import Engine, PollingResumer, SQLModelStore, WaitStatus, WorkflowStatus
from engine._records import HistoryEntry, ThreadState, WaitInfo, WorkflowRecord
from engine.store.rows import history_values, wait_values, workflow_values
from engine.store.tables import history, waits, workflows

ROWS = {
    "prune.sqlite": (None, "prune ended workflows, SQLite"),
    "prune.pg": (None, "prune ended workflows, PostgreSQL"),
}

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CUT = T0 + timedelta(days=1)
HISTORY = 5  # rows per workflow
CHUNK = 5_000  # rows per bulk INSERT


def records(n: int) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]]:
    """Rows of ``n`` ended workflows and ``n // 10`` live ones: (workflow, history, waits)."""
    for i in range(n + n // 10):
        live = i >= n
        at = T0 + timedelta(seconds=i % 3600) + (CUT - T0 if live else timedelta(0))
        status = (
            WorkflowStatus.WAITING
            if live
            else (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED)[i % 2]
        )
        wid = f"wf-{i:07d}"
        rec = WorkflowRecord(id=wid, type=("Expense", "Order")[i % 2], status=status,
                             state={"amount": i, "note": "x" * 40},
                             threads=[ThreadState("main", position="waiting for approval")],
                             created_at=at, updated_at=at, pc=HISTORY)  # fmt: skip
        row = {"id": wid, "version": HISTORY, "lease_owner": None, "lease_until": None}
        row.update(workflow_values(rec))
        entries = [
            history_values(HistoryEntry(wid, at, "step", "main", f"step {k}", None, k, {"n": 1}))
            for k in range(HISTORY)
        ]
        wait = []
        if i % 10 == 0:
            w = WaitInfo(f"{wid}-w", wid, "main", "waiting for approval", "approve",
                         "user_action", HISTORY, at,
                         WaitStatus.SET_UP if live else WaitStatus.TEARDOWN_ERROR)  # fmt: skip
            wait.append(wait_values(w))
        yield row, entries, wait


def seed(url: str, n: int) -> SQLModelStore:
    """A migrated database holding ``records(n)``, analysed."""
    store = SQLModelStore(url)
    batch: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    with store.engine.begin() as conn:
        for row, entries, wait in records(n):
            batch[0].append(row)
            batch[1].extend(entries)
            batch[2].extend(wait)
            if len(batch[0]) >= CHUNK:
                for table, rows in zip((workflows, history, waits), batch, strict=True):
                    if rows:
                        conn.execute(insert(table), rows)
                    rows.clear()
        for table, rows in zip((workflows, history, waits), batch, strict=True):
            if rows:
                conn.execute(insert(table), rows)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    return store


def floor(store: SQLModelStore) -> tuple[float, int]:
    """Seconds for the three raw DELETEs in one transaction on the driver, and workflows gone."""
    sqlite = store.engine.dialect.name == "sqlite"
    p = "?" if sqlite else "%s"
    cut: Any = CUT.replace(tzinfo=None) if sqlite else CUT
    select_ = (
        f"SELECT id FROM workflows WHERE status IN ('finished', 'cancelled') AND updated_at < {p}"
    )
    statements = [
        f"DELETE FROM history WHERE workflow_id IN ({select_})",
        f"DELETE FROM waits WHERE workflow_id IN ({select_})",
        f"DELETE FROM workflows WHERE status IN ('finished', 'cancelled') AND updated_at < {p}",
    ]
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        t0 = time.perf_counter()
        if sqlite:
            cur.execute("BEGIN IMMEDIATE")
        for sql in statements:
            cur.execute(sql, (cut,))
        gone = cur.rowcount
        raw.commit()
        return time.perf_counter() - t0, gone
    finally:
        raw.close()


def ours(store: SQLModelStore) -> tuple[float, int]:
    """Seconds for ``Engine.prune(CUT)``, and workflows gone."""
    engine = Engine(store, resumer=PollingResumer())
    t0 = time.perf_counter()
    result = engine.prune(CUT)
    return time.perf_counter() - t0, result.workflows


def row(key: str, fresh: Any, n: int) -> Row:
    with fresh() as url:
        store = seed(url, n)
        try:
            ours_s, ours_n = ours(store)
            left = store.count_workflows()
        finally:
            store.close()
    with fresh() as url:
        store = seed(url, n)
        try:
            floor_s, floor_n = floor(store)
        finally:
            store.close()
    if ours_n != n or floor_n != n or left[WorkflowStatus.WAITING] != n // 10:
        raise RuntimeError(f"{key}: removed {ours_n} (floor {floor_n}) of {n}; left {left}")
    return Row(key, f"{ROWS[key][1]} ({n:,})", n / ours_s, unit="wf/s", floor=n / floor_s,
               floor_what="3 raw DELETEs, 1 transaction")  # fmt: skip


def sqlite_file() -> Any:
    from contextlib import contextmanager

    @contextmanager
    def fresh() -> Iterator[str]:
        with tempfile.TemporaryDirectory() as d:
            yield f"sqlite:///{d}/prune.db"

    return fresh


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 workflows: a smoke test")
    parser.add_argument("--workflows", type=int, default=None, help="ended workflows to prune")
    args = parser.parse_args(argv)
    n = args.workflows or (2_000 if args.quick else 100_000)
    rows = [row("prune.sqlite", sqlite_file(), n)]
    reason = pg_unreachable()
    if reason is not None:
        return rows + skipped(ROWS, reason, "prune.pg")
    rows.append(row("prune.pg", pg_schema, n))
    return rows


if __name__ == "__main__":
    print_table(main(sys.argv[1:]))
