"""The workflows list at 1,000,000 workflows: keyset pages, filters and time ranges, on SQLite
and PostgreSQL.

Each database holds ``--workflows`` workflows (1,000,000; 5,000 with ``--quick``) of three
types in every status, created a second apart and updated in a scrambled order, written by
bulk inserts into the migrated (indexed) schema (executemany on SQLite, ``COPY`` on
PostgreSQL), then ``ANALYZE``d.

Ours: one page of 50 rows through ``Store.list_workflows`` (the query, its rows decoded into
records): the first page, a page half-way down and the last page by keyset cursor, a deep
page filtered by status and type, a page of a created-time range and of an updated-time
range sorted by update. ``page``: everything the workflows page computes on the server
for a deep page (``gorch_ui.services.counts`` and ``list_workflows``, each row's state
loaded, what its waiting threads wait on). Floor: the same page's SQL run raw on the driver
(``SELECT * ... LIMIT 51``). The target: any page under 300 ms.

Run: ``.venv/bin/python bench/bench_list.py [--quick] [--workflows N]`` (or ``bench/run.py
--only list``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, Target, best_of, pg_schema, pg_unreachable, print_table, skipped

from engine import Engine, PollingResumer, SQLModelStore, WorkflowSort, WorkflowStatus
from engine._records import ThreadState, WorkflowRecord
from engine.examples import WORKFLOWS
from engine.store.rows import workflow_values
from engine.store.tables import workflows
from gorch_ui import services

QUERIES = {
    "first": "first page",
    "middle": "page half-way down (keyset)",
    "last": "last page (keyset)",
    "filtered": "deep page, status + type",
    "created": "created-time range",
    "updated": "updated-time range, by update",
    "page": "the workflows page, deep (server)",
}
ROWS = {
    f"list.{db}.{q}": (None, f"list {what}, {label}")
    for db, label in (("sqlite", "SQLite"), ("pg", "PostgreSQL"))
    for q, what in QUERIES.items()
}

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PAGE = 50
TARGET = Target(300, on="ours", note="(any page, issue 17)")
STATUSES = (
    [WorkflowStatus.FINISHED] * 16
    + [WorkflowStatus.WAITING] * 2
    + [WorkflowStatus.RUNNING, WorkflowStatus.FAILED]
)  # 80% finished, 10% waiting, 5% running, 5% failed
TYPES = ("Expense", "Order", "Import")
CHUNK = 10_000


def created(i: int) -> datetime:
    return T0 + timedelta(seconds=i)


def updated(i: int, n: int) -> datetime:
    return T0 + timedelta(seconds=(i * 7919) % n, microseconds=1)


def rows(n: int) -> Iterator[dict[str, Any]]:
    """The columns of ``n`` workflows, oldest first."""
    main = [ThreadState("main", position="waiting for approval")]
    for i in range(n):
        status = STATUSES[i % len(STATUSES)]
        rec = WorkflowRecord(id=f"wf-{i:07d}", type=TYPES[i % 3], status=status,
                             state={"amount": i % 1000}, threads=main, created_at=created(i),
                             updated_at=updated(i, n), pc=3)  # fmt: skip
        row = {"version": 3, "lease_owner": None, "lease_until": None}
        row.update(workflow_values(rec))
        row["id"] = rec.id
        yield row


def seed(url: str, n: int) -> SQLModelStore:
    """A migrated database holding ``rows(n)``, analysed."""
    store = SQLModelStore(url)
    if store.engine.dialect.name == "postgresql":
        _copy(store, n)
    else:
        with store.engine.begin() as conn:
            batch: list[dict[str, Any]] = []
            for row in rows(n):
                batch.append(row)
                if len(batch) >= CHUNK:
                    conn.execute(insert(workflows), batch)
                    batch.clear()
            if batch:
                conn.execute(insert(workflows), batch)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # PostgreSQL: VACUUM too, as autovacuum would have: index-only scans need the
        # visibility map of rows written by COPY.
        pg = store.engine.dialect.name == "postgresql"
        conn.execute(text("VACUUM ANALYZE workflows" if pg else "ANALYZE"))
    return store


def _copy(store: SQLModelStore, n: int) -> None:
    """PostgreSQL: the rows through ``COPY ... FROM STDIN`` (JSON columns as text)."""
    columns = [c.name for c in workflows.columns]
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f"COPY workflows ({', '.join(columns)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for row in rows(n):
                copy.write_row(
                    [
                        json.dumps(row[c]) if c in ("state", "threads", "result") else row[c]
                        for c in columns
                    ]
                )
        raw.commit()
    finally:
        raw.close()


Query = tuple[Callable[[], Any], str, tuple[Any, ...]]


def queries(store: SQLModelStore, engine: Engine, n: int) -> dict[str, Query]:
    """Per query: ours, and the floor's SQL and parameters."""
    sqlite = store.engine.dialect.name == "sqlite"
    p = "?" if sqlite else "%s"

    def t(value: datetime) -> Any:  # what the driver binds: SQLite stores naive UTC text
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else value

    mid = n // 2
    key = (created(mid), f"wf-{mid:07d}")
    day = (created(n // 4), created(n // 4) + timedelta(days=1))
    start = updated(0, n) + timedelta(seconds=n // 3)
    upd = (start, start + timedelta(days=1))
    desc = f"ORDER BY created_at DESC, id DESC LIMIT {PAGE + 1}"

    cursor = services.Cursor("after", key)

    def page() -> Any:
        known = services.counts(engine)
        return services.list_workflows(engine, cursor=cursor, page=n // 2 // PAGE, known=known)

    return {
        "first": (lambda: store.list_workflows(limit=PAGE + 1),
                  f"SELECT * FROM workflows {desc}", ()),
        "middle": (lambda: store.list_workflows(limit=PAGE + 1, after=key),
                   f"SELECT * FROM workflows WHERE (created_at, id) < ({p}, {p}) {desc}",
                   (t(key[0]), key[1])),
        "last": (lambda: store.list_workflows(limit=PAGE + 1, ascending=True),
                 f"SELECT * FROM workflows ORDER BY created_at, id LIMIT {PAGE + 1}", ()),
        "filtered": (lambda: store.list_workflows(
                         limit=PAGE + 1, after=key, status=WorkflowStatus.FAILED, type="Order"),
                     f"SELECT * FROM workflows WHERE status = 'failed' AND type = 'Order' AND "
                     f"(created_at, id) < ({p}, {p}) {desc}", (t(key[0]), key[1])),
        "created": (lambda: store.list_workflows(
                        limit=PAGE + 1, created_after=day[0], created_before=day[1]),
                    f"SELECT * FROM workflows WHERE created_at >= {p} AND created_at < {p} {desc}",
                    (t(day[0]), t(day[1]))),
        "updated": (lambda: store.list_workflows(
                        limit=PAGE + 1, updated_after=upd[0], updated_before=upd[1],
                        sort=WorkflowSort.UPDATED),
                    f"SELECT * FROM workflows WHERE updated_at >= {p} AND updated_at < {p} "
                    f"ORDER BY updated_at DESC, id DESC LIMIT {PAGE + 1}", (t(upd[0]), t(upd[1]))),
        "page": (page, f"SELECT * FROM workflows WHERE (created_at, id) < ({p}, {p}) {desc}; "
                       "SELECT type, status, count(*) FROM workflows GROUP BY type, status",
                 (t(key[0]), key[1])),
    }  # fmt: skip


def measure(db: str, url: str, n: int, runs: int) -> list[Row]:
    t0 = time.perf_counter()
    store = seed(url, n)
    print(f"  [{db}] {n:,} workflows written in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    engine = Engine(store, WORKFLOWS, resumer=PollingResumer())
    raw = store.engine.raw_connection()
    out = []
    try:
        for q, (ours, sql, params) in queries(store, engine, n).items():
            got = ours()
            size = len(got.rows) if q == "page" else len(got)

            def floor(sql: str = sql, params: tuple[Any, ...] = params) -> Any:
                found = []
                for i, one in enumerate(sql.split("; ")):  # the page: the list, the counts
                    c = raw.cursor()
                    c.execute(one, () if i else params)
                    found.append(c.fetchall())
                return found[0]

            expected = len(floor())
            if size != expected - (q == "page"):  # the page shows 50 of the 51 it reads
                raise RuntimeError(f"list.{db}.{q}: {size} rows, the raw query {expected}")

            key = f"list.{db}.{q}"
            what = "raw SELECT … LIMIT 51" + (" + GROUP BY type, status" if q == "page" else "")
            out.append(Row(key, f"{ROWS[key][1]} ({n:,})", best_of(ours, runs) * 1e3,
                           unit="ms", floor=best_of(floor, runs) * 1e3,
                           floor_what=what, target=TARGET))  # fmt: skip
    finally:
        raw.close()
        store.close()
    return out


@contextmanager
def sqlite_file() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d:
        yield f"sqlite:///{d}/list.db"


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5,000 workflows: a smoke test")
    parser.add_argument("--workflows", type=int, default=None, help="how many workflows")
    parser.add_argument("--only", choices=["sqlite", "pg"], default=None)
    args = parser.parse_args(argv)
    n = args.workflows or (5_000 if args.quick else 1_000_000)
    runs = 3 if args.quick else 10
    out: list[Row] = []
    if args.only != "pg":
        with sqlite_file() as url:
            out += measure("sqlite", url, n, runs)
    if args.only == "sqlite":
        return out
    reason = pg_unreachable()
    if reason is not None:
        return out + skipped(ROWS, reason, "list.pg")
    with pg_schema() as url:
        out += measure("pg", url, n, runs)
    return out


if __name__ == "__main__":
    print_table(main(sys.argv[1:]))
