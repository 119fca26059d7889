"""Alembic migrations: shipped in the package, run in code, exactly the models, safe to race."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from engine.errors import StoreError
from engine.store.sql import MIGRATIONS, alembic_config, create_store_engine, upgrade
from engine.store.tables import VERSION_TABLE, metadata

TABLES = {"workflows", "waits", "history", "sign_in_failures", "revoked_sessions"}
HEAD = "0006"


def table_names(url: str) -> set[str]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return ctx.get_current_revision()
    finally:
        engine.dispose()


def test_migrations_ship_inside_the_package() -> None:
    assert Path(__file__).parents[3] / "engine" / "store" / "migrations" == MIGRATIONS
    for name in ["env.py", "script.py.mako", "versions/0001_initial.py",
                 "versions/0002_fingerprint.py", "versions/0003_setup_data.py",
                 "versions/0004_inbox.py", "versions/0005_list_indexes.py",
                 "versions/0006_sign_in.py"]:  # fmt: skip
        assert (MIGRATIONS / name).is_file(), name
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_heads() == [HEAD]


def test_upgrade_creates_the_tables_and_is_idempotent(db_url: str) -> None:
    assert table_names(db_url) == set()
    upgrade(db_url)
    upgrade(db_url)
    assert table_names(db_url) == TABLES | {VERSION_TABLE}
    assert current_revision(db_url) == HEAD


def test_migration_matches_the_models(db_url: str) -> None:
    upgrade(db_url)
    engine = create_store_engine(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            diff = compare_metadata(ctx, metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_concurrent_upgrades_all_succeed(db_url: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run() -> None:
        try:
            start.wait()
            upgrade(db_url)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert current_revision(db_url) == HEAD
    assert table_names(db_url) >= TABLES


def test_downgrade_to_base_and_back(db_url: str) -> None:
    upgrade(db_url)
    command.downgrade(alembic_config(db_url), "base")
    assert table_names(db_url) == {VERSION_TABLE}
    assert current_revision(db_url) is None
    command.upgrade(alembic_config(db_url), "head")  # env.py opens its own connection
    assert current_revision(db_url) == HEAD


def test_offline_mode_prints_the_sql() -> None:
    out = io.StringIO()
    cfg = alembic_config("postgresql://postgres@localhost/none")
    cfg.stdout = out
    cfg.output_buffer = out
    command.upgrade(cfg, "head", sql=True)
    sql = out.getvalue()
    assert "CREATE TABLE workflows" in sql
    assert "JSONB" in sql
    assert VERSION_TABLE in sql


def test_migrate_false_leaves_the_database_alone(tmp_path: Path) -> None:
    from engine import SQLModelStore

    url = f"sqlite:///{tmp_path / 'bare.db'}"
    store = SQLModelStore(url, migrate=False)
    try:
        assert table_names(url) == set()
        with pytest.raises(StoreError) as e:
            store.load("x")
        assert e.value.__cause__ is not None
    finally:
        store.close()


def test_upgrade_of_an_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(StoreError) as e:
        upgrade("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")
    assert "migrate" in str(e.value)


def test_application_tables_are_left_alone(db_url: str) -> None:
    engine = create_store_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('app-rev')"))
        upgrade(db_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [
                ("app-rev",)
            ]
    finally:
        engine.dispose()


def test_upgrade_from_an_older_schema_keeps_the_rows(db_url: str) -> None:
    """A database made by revision 0001 (before fingerprints) upgrades in place."""
    command.upgrade(alembic_config(db_url), "0001")
    engine = create_store_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO workflows (id, type, status, state, threads, pc, version, turn, "
                "format, created_at, updated_at) VALUES ('old', 'T', 'waiting', '{}', '[]', "
                "3, 3, 0, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            ))  # fmt: skip
    finally:
        engine.dispose()
    upgrade(db_url)
    assert current_revision(db_url) == HEAD
    from engine import SQLModelStore

    store = SQLModelStore(db_url)
    try:
        old = store.load("old")
        assert (old.pc, old.fingerprint) == (3, None)
    finally:
        store.close()


def _columns(url: str, table: str) -> set[str]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns(table)}
    finally:
        engine.dispose()


def test_upgrade_from_0002_adds_setup_data_and_keeps_the_waits(db_url: str) -> None:
    """A database at 0002 (waits without set-up data) upgrades in place: its waits load with
    ``setup_data`` None, and take set-up data from then on; a downgrade drops the column."""
    command.upgrade(alembic_config(db_url), "0002")
    assert "setup_data" not in _columns(db_url, "waits")
    engine = create_store_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO workflows (id, type, status, state, threads, pc, version, turn, "
                    "format, created_at, updated_at, lease_owner) VALUES ('old', 'T', 'waiting', "
                    "'{}', '[]', 3, 3, 0, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 'me')"
                )
            )
            conn.execute(text(
                "INSERT INTO waits (id, workflow_id, thread_id, wait, event, type, pc, "
                "created_at, status, data, attempts, handled, position) VALUES ('w1', 'old', "
                "'main', 'approval', 'approve', 'user_action', 3, '2026-01-01 00:00:00', "
                "'set_up', '{}', 0, false, 0)"
            ))  # fmt: skip
    finally:
        engine.dispose()
    upgrade(db_url)
    assert current_revision(db_url) == HEAD
    from engine import SQLModelStore

    store = SQLModelStore(db_url)
    try:
        [old] = store.load_waits("old")
        assert (old.id, old.event, old.setup_data) == ("w1", "approve", None)
        old.setup_data = {"message": "C1/1700000000.1", "thread": ["x", 1]}
        store.update_wait(old, owner="me")
        assert store.load_waits("old")[0].setup_data == old.setup_data
    finally:
        store.close()
    command.downgrade(alembic_config(db_url), "0002")
    assert "setup_data" not in _columns(db_url, "waits")
    assert current_revision(db_url) == "0002"
    upgrade(db_url)
    assert "setup_data" in _columns(db_url, "waits")
