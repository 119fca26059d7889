"""Durable benchmarks: per-step cost on SQLite and PostgreSQL, and 1 vs 2 workers.

Each per-step row is set against a floor measured in the same run: one SQLAlchemy Core
transaction per step that updates a row of the same size as our workflow row (state and
threads as JSON) and commits. The raw-driver commit (sqlite3, psycopg) is shown too.

Run: ``.venv/bin/python bench/bench_durable.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
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
from common import best_of, peak_memory, pg_schema, print_table

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
    from sqlalchemy.engine import make_url

    u = make_url(url)
    options = u.query.get("options")
    conninfo = f"host={u.host} port={u.port or 5432} user={u.username} dbname={u.database}"
    with psycopg.connect(conninfo, options=options if isinstance(options, str) else "") as con:
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


def workers_throughput(url: str, workers: int, workflows: int) -> float:
    """Steps per second with ``workers`` worker processes draining ``workflows`` workflows."""
    store = SQLModelStore(url)
    engine = Engine(store, [TenSteps], resumer=PollingResumer())
    for _ in range(workflows):
        engine.new_workflow(TenSteps())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "engine.cli", "worker", "--db", url, "--app", "bench_durable",
           "--poll", "0.01"]  # fmt: skip
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL) for _ in range(workers)]
    try:
        while store.count_workflows()[WorkflowStatus.FINISHED] < workflows:
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        store.close()
    return workflows * STEPS / elapsed


WORKFLOWS = [TenSteps]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few runs: a smoke test")
    args = parser.parse_args(argv)
    runs, wfs, drain = (20, 3, 30) if args.quick else (400, 40, 400)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        ours, peak = ours_per_step(url, wfs)
        floor = core_floor(f"sqlite:///{tmp}/floor.db", runs)
        raw = sqlite_raw_floor(f"{tmp}/raw.db", runs)
        rows.append(
            {
                "bench": "durable per step, SQLite (vs Core commit)",
                "ours": ours * 1e6,
                "floor": floor * 1e6,
                "ratio": ours / floor,
                "peak_kib": peak / 1024,
            }
        )
        rows.append(
            {
                "bench": "durable per step, SQLite (vs raw sqlite3 commit)",
                "ours": ours * 1e6,
                "floor": raw * 1e6,
                "ratio": ours / raw,
            }
        )
    with pg_schema() as pg:
        if pg is not None:
            ours, peak = ours_per_step(pg, wfs)
            floor = core_floor(pg, runs)
            raw = psycopg_raw_floor(pg, runs)
            rows.append(
                {
                    "bench": "durable per step, PostgreSQL (vs Core commit)",
                    "ours": ours * 1e6,
                    "floor": floor * 1e6,
                    "ratio": ours / floor,
                    "peak_kib": peak / 1024,
                }
            )
            rows.append(
                {
                    "bench": "durable per step, PostgreSQL (vs raw psycopg commit)",
                    "ours": ours * 1e6,
                    "floor": raw * 1e6,
                    "ratio": ours / raw,
                }
            )
    with pg_schema() as pg:
        if pg is not None:
            one = workers_throughput(pg, 1, drain)
    with pg_schema() as pg:
        if pg is not None:
            two = workers_throughput(pg, 2, drain)
            rows.append(
                {
                    "bench": "PostgreSQL steps/s: 2 workers vs 1 (floor)",
                    "ours": two,
                    "floor": one,
                    "ratio": two / one,
                    "unit": "/s",
                }
            )
    print_table("durable benchmarks", rows)
    return rows


if __name__ == "__main__":
    main()
