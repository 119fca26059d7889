"""What only the SQL store has: SQLite settings, write locking, URLs and error wrapping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from engine import (
    HistoryEntry,
    LeaseLost,
    SQLModelStore,
    StoreError,
    WaitInfo,
    WaitStatus,
    WorkflowStatus,
)
from engine._records import ThreadState, WorkflowRecord
from engine.store.sql import database_url

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(wid: str = "wf-1") -> WorkflowRecord:
    return WorkflowRecord(wid, "Demo", WorkflowStatus.RUNNING, {}, [ThreadState("main")], T0, T0)


@pytest.fixture
def sqlite_file(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gorch.db'}"


def pragma(store: SQLModelStore, name: str) -> object:
    with store.engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_sqlite_defaults(sqlite_file: str, open_store: Callable[..., SQLModelStore]) -> None:
    store = open_store(sqlite_file)
    assert pragma(store, "journal_mode") == "wal"
    assert pragma(store, "synchronous") == 1  # NORMAL
    assert pragma(store, "busy_timeout") == 10_000
    assert pragma(store, "foreign_keys") == 1


def test_sqlite_full_durability(sqlite_file: str, open_store: Callable[..., SQLModelStore]) -> None:
    store = open_store(sqlite_file, sqlite_synchronous="full", sqlite_busy_timeout=2.5)
    assert pragma(store, "synchronous") == 2  # FULL
    assert pragma(store, "busy_timeout") == 2_500


def test_sqlite_synchronous_is_checked(sqlite_file: str) -> None:
    with pytest.raises(StoreError):
        SQLModelStore(sqlite_file, sqlite_synchronous="NORMAL; DROP TABLE workflows")


def test_writers_queue_for_the_sqlite_write_lock(
    sqlite_file: str, open_store: Callable[..., SQLModelStore]
) -> None:
    holder, waiter = open_store(sqlite_file), open_store(sqlite_file, sqlite_busy_timeout=5)
    created: list[bool] = []
    with holder.engine.connect() as conn:
        conn.execution_options(gorch_write=True)
        conn.begin()  # BEGIN IMMEDIATE: the write lock is taken now, not at the first write
        thread = threading.Thread(target=lambda: created.append(waiter.create(record(), [])))
        thread.start()
        time.sleep(0.3)
        assert created == []  # waiting for the lock, not failing
        assert waiter.list_workflows() == []  # readers are not blocked (WAL)
        conn.rollback()
    thread.join(5)
    assert created == [True]


def test_a_write_lock_held_too_long_is_a_store_error(
    sqlite_file: str, open_store: Callable[..., SQLModelStore]
) -> None:
    holder, waiter = open_store(sqlite_file), open_store(sqlite_file, sqlite_busy_timeout=0.2)
    holder.create(record(), [])
    with holder.engine.connect() as conn:
        conn.execution_options(gorch_write=True)
        conn.begin()
        with pytest.raises(StoreError) as e:
            waiter.acquire("wf-1", "w", now=T0, until=T0)
        conn.rollback()
    assert isinstance(e.value.__cause__, SQLAlchemyError)
    assert "locked" in str(e.value)
    assert e.value.workflow_id == "wf-1"
    assert waiter.load("wf-1").lease_owner is None


def test_database_errors_become_store_errors(
    db_url: str, open_store: Callable[..., SQLModelStore]
) -> None:
    store = open_store(db_url)
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE history"))
    with pytest.raises(StoreError) as e:
        store.append_history([HistoryEntry("wf-1", T0, "note")], owner="w-1")
    assert isinstance(e.value.__cause__, SQLAlchemyError)
    assert e.value.workflow_id == "wf-1"
    with pytest.raises(StoreError):
        store.create(record(), [HistoryEntry("wf-1", T0, "created")])
    assert store.list_workflows() == []  # the failed create wrote nothing
    assert store.count_workflows()[WorkflowStatus.RUNNING] == 0


def test_unreachable_server_is_a_store_error() -> None:
    with pytest.raises(StoreError) as e:
        SQLModelStore("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    assert isinstance(e.value.__cause__, SQLAlchemyError)


def test_postgres_urls_use_psycopg() -> None:
    assert database_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert database_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert database_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert database_url("sqlite:///x.db").drivername == "sqlite"


def test_plain_postgresql_url_works(pg_url: str, open_store: Callable[..., SQLModelStore]) -> None:
    store = open_store(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    assert store.engine.dialect.driver == "psycopg"
    assert store.create(record(), [])


def test_repr_hides_the_password() -> None:
    store = SQLModelStore("postgresql://bob:secret@127.0.0.1:1/db", migrate=False)
    assert "secret" not in repr(store)


def test_in_memory_sqlite_is_one_database(open_store: Callable[..., SQLModelStore]) -> None:
    store = open_store("sqlite://")
    store.create(record(), [])
    seen: list[str] = []
    thread = threading.Thread(target=lambda: seen.extend(r.id for r in store.list_workflows()))
    thread.start()
    thread.join()
    assert seen == ["wf-1"]


def open_at_once(url: str, n: int) -> list[BaseException]:
    """Construct ``n`` stores on ``url`` from ``n`` threads released together; their errors."""
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def open_and_close() -> None:
        start.wait()
        try:
            SQLModelStore(url).close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_and_close) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_processes_racing_to_open_a_fresh_sqlite_file(tmp_path: Path) -> None:
    # Switching a new file to WAL takes a lock SQLite does not wait for: each opener retries.
    for r in range(30):
        assert open_at_once(f"sqlite:///{tmp_path / f'fresh-{r}.db'}", 6) == []


def _backend_pids(store: SQLModelStore, n: int) -> set[int]:
    pids = set()
    for _ in range(n):
        store.load("wf-1")
        with store._read("probe") as conn:  # the connection the store's reads use now
            pids.add(conn.connection.driver_connection.info.backend_pid)
    return pids


def test_a_held_connection_serves_a_sessions_statements_and_a_broken_one_is_let_go(
    pg_url: str, open_store: Callable[..., SQLModelStore]
) -> None:
    store = open_store(pg_url, engine_kwargs={"pool_size": 3})
    store.create(record(), [HistoryEntry("wf-1", T0, "created")])
    busy = [store._reader.connect() for _ in range(3)]  # the pool's three are in use
    with store.held():  # none to spare: statements borrow (overflow) connections as before
        assert getattr(store._held, "conn", None) is None
        assert store.load("wf-1").id == "wf-1"
    for c in busy:
        c.close()
    with store.held():
        held = _backend_pids(store, 5)
        assert len(held) == 1  # one connection for every statement of the block
        with store._read("probe") as conn:
            conn.invalidate()  # as a dropped server connection is
        after = _backend_pids(store, 2)
        assert after.isdisjoint(held)  # the broken one is not used again
        got = store.acquire("wf-1", "me", now=T0, until=T0)
        assert got.lease_owner == "me"
    assert getattr(store._held, "conn", None) is None


def test_held_does_nothing_on_sqlite(
    sqlite_file: str, open_store: Callable[..., SQLModelStore]
) -> None:
    store = open_store(sqlite_file)
    store.create(record(), [])
    with store.held():
        assert getattr(store._held, "conn", None) is None
        assert store.load("wf-1").id == "wf-1"


@pytest.mark.parametrize("op", ["update_wait", "delete_wait", "append_history"])
def test_a_lease_taken_over_meanwhile_wins_over_a_write_outside_a_checkpoint(
    db_url: str, open_store: Callable[..., SQLModelStore], op: str
) -> None:
    """The lease check and the write are one: a write that meets another session's takeover
    in flight waits for it, and is then refused (on PostgreSQL the check holds the workflow
    row ``FOR SHARE``; on SQLite write transactions queue)."""
    store = open_store(db_url)
    store.create(record(), [])
    rec = store.acquire("wf-1", "w-1", now=T0, until=T0)
    w = WaitInfo("w1", "wf-1", "main", "approval", "approve", "user_action", 1, T0,
                 WaitStatus.PENDING_SETUP, retry_at=T0)  # fmt: skip
    store.checkpoint(rec, owner="w-1", waits=[w], history=[])
    w.status, w.retry_at, w.setup_data = WaitStatus.SET_UP, None, {"message": "m1"}
    write = {
        "update_wait": lambda: store.update_wait(w, owner="w-1"),
        "delete_wait": lambda: store.delete_wait("w1", workflow_id="wf-1", owner="w-1"),
        "append_history": lambda: store.append_history(
            [HistoryEntry("wf-1", T0, "setup_error")], owner="w-1"
        ),
    }[op]
    outcome: list[object] = []

    def late_writer() -> None:
        try:
            write()
            outcome.append("written")
        except LeaseLost as e:
            outcome.append(e.owner)

    with store.engine.connect() as conn:
        conn.execution_options(gorch_write=True)
        conn.begin()  # another session's acquire, not yet committed
        conn.execute(text("UPDATE workflows SET lease_owner = 'w-2' WHERE id = 'wf-1'"))
        thread = threading.Thread(target=late_writer)
        thread.start()
        time.sleep(0.5)
        assert outcome == []  # waiting for the takeover to commit or roll back
        conn.commit()
    thread.join(10)
    assert outcome == ["w-2"]
    [stored] = store.load_waits("wf-1")
    assert (stored.status, stored.setup_data) == (WaitStatus.PENDING_SETUP, None)
    assert [e.kind for e in store.history("wf-1")] == []


def test_the_url_chooses_the_dialect_store(
    sqlite_file: str, pg_url: str, open_store: Callable[..., SQLModelStore]
) -> None:
    from engine.store.sql import PostgresStore, SQLiteStore

    lite, pg = open_store(sqlite_file), open_store(pg_url)
    assert (type(lite), type(pg)) == (SQLiteStore, PostgresStore)
    assert isinstance(lite, SQLModelStore) and isinstance(pg, SQLModelStore)
    direct = SQLiteStore(sqlite_file)  # a subclass is made as asked
    assert (type(direct), direct.dialect) == (SQLiteStore, "sqlite")
    direct.close()


@pytest.mark.parametrize("url", ["mysql://u@h/db", "mssql+pyodbc://u@h/db", "not a url"])
def test_an_unsupported_database_is_refused(url: str) -> None:
    with pytest.raises(StoreError, match=r"SQLite and PostgreSQL|invalid database URL"):
        SQLModelStore(url)
