"""Durable benchmarks: per-step cost on SQLite and PostgreSQL (row 3), and 1 vs 2 workers (row 4).

Each per-step row is set against a floor measured in the same run: one transaction per step
that updates a row of the same size as our workflow row (state and threads as JSON) and
commits, through SQLAlchemy Core and through the raw driver (sqlite3, psycopg). The workers
row drains the same number of workflows with one ``gorch worker`` process, then with two.

Run: ``.venv/bin/python bench/bench_durable.py [--quick] [--part steps|workers|all]`` (or
``bench/run.py --only durable workers``). PostgreSQL is ``GORCH_BENCH_PG_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); if it is unreachable its rows are
skipped with the reason (an error with ``CI=true``).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    update,
)

sys.path.insert(0, str(Path(__file__).parent))
from common import (
    Row,
    Target,
    best_of,
    peak_memory,
    pg_schema,
    pg_unreachable,
    print_table,
    skipped,
    stop_process,
)

from engine import (
    Engine,
    PollingResumer,
    S,
    Section,
    SQLModelStore,
    Step,
    Workflow,
    WorkflowStatus,
)

STEPS = 10

ROWS = {
    "durable.sqlite.core": (3, "durable per step, SQLite"),
    "durable.sqlite.raw": (3, "durable per step, SQLite (raw driver floor)"),
    "durable.pg.core": (3, "durable per step, PostgreSQL (Core floor)"),
    "durable.pg.psycopg": (3, "durable per step, PostgreSQL"),
    "workers.pg": (4, "2 workers vs 1 on PostgreSQL, steps/s"),
}


class TenSteps(Workflow):
    """Ten sequential trivial steps."""

    n: int = 0
    payload: str = "x" * 200

    def definition(self) -> Section:
        return S(*(Step(f"step {i}", self.bump) for i in range(STEPS)))

    def bump(self) -> None:
        self.n += 1


def row_payload() -> dict[str, Any]:
    """A JSON document the size of a TenSteps workflow row (state + threads)."""
    return {"state": TenSteps().model_dump(mode="json"),
            "threads": [{"id": "main", "go": None, "position": "step 3", "phase": "done",
                         "status": "running", "event": None, "attempts": 0,
                         "retry_at": None, "error": None}]}  # fmt: skip


def core_floor(url: str, runs: int) -> float:
    """Seconds per SQLAlchemy Core UPDATE + commit of an equal-sized JSON row."""
    engine = create_engine(url)
    if url.startswith("sqlite"):
        # The same settings as our store (WAL, synchronous=NORMAL), or the floor is an fsync.
        @event.listens_for(engine, "connect")
        def pragmas(dbapi_connection: Any, _: Any) -> None:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    md = MetaData()
    t = Table("floor_rows", md, Column("id", String, primary_key=True), Column("doc", JSON),
              Column("pc", Integer))  # fmt: skip
    md.create_all(engine)
    doc = row_payload()
    with engine.begin() as conn:
        conn.execute(t.insert().values(id="w", doc=doc, pc=0))
    stmt = update(t).where(t.c.id == "w")
    counter = iter(range(10**9))

    def one() -> None:
        with engine.begin() as conn:
            conn.execute(stmt, {"doc": doc, "pc": next(counter)})

    try:
        return best_of(one, runs)
    finally:
        engine.dispose()


def sqlite_raw_floor(path: str, runs: int) -> float:
    """Seconds per raw sqlite3 UPDATE + commit (WAL, synchronous=NORMAL, as our store)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE raw_rows (id TEXT PRIMARY KEY, doc TEXT, pc INTEGER)")
    doc = json.dumps(row_payload())
    con.execute("INSERT INTO raw_rows VALUES ('w', ?, 0)", (doc,))
    counter = iter(range(10**9))

    def one() -> None:
        con.execute("BEGIN IMMEDIATE")
        con.execute("UPDATE raw_rows SET doc = ?, pc = ? WHERE id = 'w'", (doc, next(counter)))
        con.execute("COMMIT")

    try:
        return best_of(one, runs)
    finally:
        con.close()


def psycopg_raw_floor(url: str, runs: int) -> float:
    """Seconds per raw psycopg UPDATE + commit."""
    import psycopg
    from psycopg.conninfo import make_conninfo
    from sqlalchemy.engine import make_url

    u = make_url(url)
    options = u.query.get("options")
    conninfo = make_conninfo(host=u.host, port=u.port or 5432, user=u.username,
                             dbname=u.database, password=u.password,
                             options=options if isinstance(options, str) else None)  # fmt: skip
    with psycopg.connect(conninfo) as con:
        con.execute("CREATE TABLE raw_rows (id TEXT PRIMARY KEY, doc JSONB, pc INTEGER)")
        doc = json.dumps(row_payload())
        con.execute("INSERT INTO raw_rows VALUES ('w', %s, 0)", (doc,))
        con.commit()
        counter = iter(range(10**9))

        def one() -> None:
            con.execute(
                "UPDATE raw_rows SET doc = %s, pc = %s WHERE id = 'w'", (doc, next(counter))
            )
            con.commit()

        return best_of(one, runs)


def ours_per_step(url: str, workflows: int) -> tuple[float, int]:
    """Seconds per durable step (a workflow started and run to its end, per step)."""
    store = SQLModelStore(url)
    engine = Engine(store, [TenSteps], resumer=PollingResumer())

    def one() -> None:
        engine.execute(engine.new_workflow(TenSteps()))

    try:
        # A workflow of ten steps makes 12 checkpoints (the steps, the end, the finish).
        return best_of(one, workflows) / STEPS, peak_memory(one)
    finally:
        store.close()


def start_worker(url: str, app: str, *, poll: float = 0.01) -> subprocess.Popen[bytes]:
    """A ``gorch worker`` process on ``url`` running the workflows of module ``app`` (in bench/),
    returned once it is about to poll."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "engine.cli", "worker", "--db", url, "--app", app,
           "--poll", str(poll)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # "gorch worker <owner> on <url>": the engine is built
    if not first.startswith(b"gorch worker"):
        stop_process(proc, group=True)
        raise RuntimeError(f"gorch worker did not start: {first!r}")
    stderr = proc.stderr
    threading.Thread(target=stderr.read, daemon=True).start()  # never let its stderr fill up
    return proc


def workers_throughput(url: str, workers: int, workflows: int) -> tuple[float, int | None]:
    """Steps per second of ``workers`` worker processes draining ``workflows`` workflows, and
    their largest peak RSS.

    The workers start first; once they are all polling, the workflows are created (much faster
    than they run). The time is taken from the history: from the first step any worker ran to
    the last workflow finished, so process start-up is not counted.
    """
    store = SQLModelStore(url)
    engine = Engine(store, [TenSteps], resumer=PollingResumer())
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs = [start_worker(url, "bench_durable") for _ in range(workers)]
        ids = [engine.new_workflow(TenSteps()) for _ in range(workflows)]
        deadline = time.monotonic() + 60 + workflows
        while store.count_workflows()[WorkflowStatus.FINISHED] < workflows:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} worker(s) did not finish {workflows} workflows")
            time.sleep(0.02)
    finally:
        peaks = [stop_process(p, group=True) for p in procs]
    rss = max((p for p in peaks if p is not None), default=None)
    first: datetime | None = None
    last: datetime | None = None
    steps = 0
    for wid in ids:
        for h in engine.history(wid):
            if h.kind == "step":
                steps += 1
                first = h.at if first is None else min(first, h.at)
            last = h.at if last is None else max(last, h.at)
    store.close()
    assert first is not None and last is not None and steps == workflows * STEPS
    return steps / (last - first).total_seconds(), rss


WORKFLOWS = [TenSteps]


def durable_rows(quick: bool) -> list[Row]:
    runs, wfs = (20, 3) if quick else (400, 40)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        ours, peak = ours_per_step(f"sqlite:///{tmp}/bench.db", wfs)
        core = core_floor(f"sqlite:///{tmp}/floor.db", runs)
        raw = sqlite_raw_floor(f"{tmp}/raw.db", runs)
    rows.append(Row("durable.sqlite.core", ROWS["durable.sqlite.core"][1], ours * 1e6,
                    floor=core * 1e6, floor_what="SQLAlchemy Core UPDATE + commit",
                    target=Target(2), peak=peak, issue=3))  # fmt: skip
    rows.append(Row("durable.sqlite.raw", ROWS["durable.sqlite.raw"][1], ours * 1e6,
                    floor=raw * 1e6, floor_what="raw sqlite3 UPDATE + commit", peak=peak,
                    issue=3))  # fmt: skip
    reason = pg_unreachable()
    if reason is not None:
        return rows + skipped(ROWS, reason, "durable.pg.")
    with pg_schema() as pg:
        ours, peak = ours_per_step(pg, wfs)
        core = core_floor(pg, runs)
        raw = psycopg_raw_floor(pg, runs)
    rows.append(Row("durable.pg.psycopg", ROWS["durable.pg.psycopg"][1], ours * 1e6,
                    floor=raw * 1e6, floor_what="raw psycopg UPDATE + commit",
                    target=Target(1.15), peak=peak, issue=3))  # fmt: skip
    rows.append(Row("durable.pg.core", ROWS["durable.pg.core"][1], ours * 1e6,
                    floor=core * 1e6, floor_what="SQLAlchemy Core UPDATE + commit", peak=peak,
                    issue=3))  # fmt: skip
    return rows


def workers_rows(quick: bool) -> list[Row]:
    drain = 100 if quick else 400
    reason = pg_unreachable()
    if reason is not None:
        return skipped(ROWS, reason, "workers.")
    with pg_schema() as pg:
        one, _ = workers_throughput(pg, 1, drain)
    with pg_schema() as pg:
        two, rss = workers_throughput(pg, 2, drain)
    return [Row("workers.pg", ROWS["workers.pg"][1], two, unit="steps/s", floor=one,
                floor_what="1 worker", target=Target(1.4, at_least=True), peak=rss,
                peak_kind="rss", issue=4)]  # fmt: skip


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few runs: a smoke test")
    parser.add_argument("--part", choices=["steps", "workers", "all"], default="all")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    if args.part in ("steps", "all"):
        rows += durable_rows(args.quick)
    if args.part in ("workers", "all"):
        rows += workers_rows(args.quick)
    return rows


if __name__ == "__main__":
    print_table(main())
