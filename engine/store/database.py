"""Reaching the database: URLs, the SQLite settings, and the schema migrations.

SQLite runs in WAL mode so readers never block the writer. ``synchronous=NORMAL`` is the
default durability setting: in WAL mode a commit survives any crash of the *process* (a
worker killed mid-step), but the last transactions before a power loss or an OS crash may
be rolled back (never corrupted). That is the usual trade for a workflow engine whose steps
are at-least-once anyway, and it spares an fsync per commit. ``sqlite_synchronous="FULL"``
fsyncs every commit instead. Write transactions start with ``BEGIN IMMEDIATE``, so
concurrent writers queue on the write lock (up to the busy timeout) instead of failing with
"database is locked" halfway through.

Migrations are Alembic revisions shipped in ``engine/store/migrations``; ``upgrade(url)``
runs them in code, without an ``alembic.ini``.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from pydantic_core import to_json
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from engine.errors import StoreError

MIGRATIONS = Path(__file__).with_name("migrations")
"""The Alembic script directory shipped with the package."""

WRITE = "gorch_write"  # execution option: this connection's transaction will write
_LOCK_KEY = 0x67_6F_72_63_68  # pg_advisory_xact_lock key of schema upgrades ("gorch")
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def database_url(url: str | URL) -> URL:
    """``url`` as SQLAlchemy will use it: ``postgresql://`` becomes ``postgresql+psycopg://``."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def _json_text(value: Any) -> str:
    return to_json(value).decode()


def create_store_engine(
    url: str | URL,
    *,
    engine_kwargs: dict[str, Any] | None = None,
    sqlite_synchronous: str = "NORMAL",
    sqlite_busy_timeout: float = 10.0,
) -> Engine:
    """A SQLAlchemy ``Engine`` for ``url``, set up as ``SQLModelStore`` needs it.

    On SQLite: WAL, the given ``synchronous`` level, a busy timeout, foreign keys, and
    ``BEGIN IMMEDIATE`` for write transactions.
    """
    u = database_url(url)
    kwargs = dict(engine_kwargs or {})
    # pydantic-core writes JSON several times faster than the json module (every checkpoint
    # writes the state and the threads as JSON); the values are JSON data already.
    kwargs.setdefault("json_serializer", _json_text)
    if u.get_backend_name() != "sqlite":
        return create_engine(u, **kwargs)
    level = sqlite_synchronous.upper()
    if level not in _SYNCHRONOUS:
        raise StoreError(f"sqlite_synchronous must be one of {', '.join(_SYNCHRONOUS)}")
    kwargs["connect_args"] = {"check_same_thread": False, **kwargs.get("connect_args", {})}
    if u.database in (None, "", ":memory:"):
        kwargs.setdefault("poolclass", StaticPool)  # one shared in-memory database
    engine = create_engine(u, **kwargs)
    busy_ms = int(sqlite_busy_timeout * 1000)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module: it would BEGIN lazily (DEFERRED)
        # and upgrade to a write lock mid-transaction, which fails when another writer is in.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")  # safe-sql: an int
            _enable_wal(cursor, sqlite_busy_timeout)
            cursor.execute(f"PRAGMA synchronous = {level}")  # safe-sql: one of _SYNCHRONOUS
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        sql = "BEGIN IMMEDIATE" if write else "BEGIN"
        # Straight to the driver: this runs once per transaction, on the hot path.
        driver: Any = conn.connection.driver_connection
        try:
            driver.execute(sql)
        except sqlite3.Error as e:  # e.g. "database is locked" after the busy timeout
            raise DBAPIError.instance(sql, None, e, sqlite3.Error) from e

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine


def _enable_wal(cursor: Any, timeout: float) -> None:
    """Switch the database file to WAL (a persistent setting), unless it is there already.

    The switch needs an exclusive lock and SQLite does not wait for it (no busy handler), so
    connections racing to open a fresh file retry here until one of them has switched it.
    """
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() in ("wal", "memory"):
            return
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def alembic_config(url: str | URL) -> Config:
    """An Alembic ``Config`` for gorch's migrations at ``url``; no ``alembic.ini`` needed.

    Use it with ``alembic.command`` (e.g. ``command.revision(cfg, autogenerate=True)``).
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    rendered = database_url(url).render_as_string(hide_password=False)
    cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


def upgrade(url: str | URL | Engine, revision: str = "head") -> None:
    """Run gorch's schema migrations at ``url`` up to ``revision`` (``alembic upgrade``).

    Idempotent, and safe when several processes start at once: the upgrade runs in one
    transaction under the SQLite write lock, or a PostgreSQL advisory lock.

    Raises:
        StoreError: the database could not be reached or migrated.
    """
    engine = url if isinstance(url, Engine) else create_store_engine(url)
    try:
        cfg = alembic_config(engine.url)
        with engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
    except SQLAlchemyError as e:
        raise StoreError(f"could not migrate the gorch schema at {engine.url!r}: {e}") from e
    finally:
        if engine is not url:
            engine.dispose()


__all__ = [
    "MIGRATIONS",
    "WRITE",
    "alembic_config",
    "create_store_engine",
    "database_url",
    "upgrade",
]
