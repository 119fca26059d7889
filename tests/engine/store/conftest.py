"""Store fixtures: every storage test runs on memory, SQLite and PostgreSQL.

PostgreSQL tests each get a fresh schema (through ``search_path``) that is dropped after the
test. If the server cannot be reached they skip, except with ``CI=true``, where they fail:
CI must run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from engine import MemoryStore, SQLModelStore, Store

PG_URL = os.environ.get("GORCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
"""The PostgreSQL server of the test suite (trust auth on the local machine)."""


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL URL, once it is known to answer; skips (fails in CI) if it does not."""
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        why = f"PostgreSQL is unreachable at {PG_URL}: {str(e).splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (CI=true: PostgreSQL tests must run)")
        pytest.skip(f"{why}; start it or set GORCH_TEST_PG_URL")
    finally:
        engine.dispose()
    return PG_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL whose connections see only a fresh, empty schema of their own."""
    schema = f"gorch_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(pg_server).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gorch.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def open_store() -> Iterator[Callable[[str], SQLModelStore]]:
    """``open_store(url)``: a ``SQLModelStore`` that is closed after the test."""
    opened: list[SQLModelStore] = []

    def open_(url: str, **kw: object) -> SQLModelStore:
        s = SQLModelStore(url, **kw)  # type: ignore[arg-type]
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    open_store: Callable[..., SQLModelStore],
) -> Store:
    """An empty store of each backend. On PostgreSQL its leases go by the database's clock,
    unless the test module sets ``LEASE_CLOCK = "caller"`` (its tests decide leases by the
    times they pass)."""
    if request.param == "memory":
        return MemoryStore()
    if request.param == "sqlite":
        return open_store(sqlite_url(tmp_path))
    lease_clock = getattr(request.module, "LEASE_CLOCK", None)
    return open_store(request.getfixturevalue("pg_url"), lease_clock=lease_clock)


@pytest.fixture
def backend(store: Store) -> str:
    """Which backend ``store`` is: ``memory``, ``sqlite`` or ``postgresql``."""
    if isinstance(store, SQLModelStore):
        return store.engine.dialect.name
    return "memory"
