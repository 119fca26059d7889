"""Alembic environment of gorch's schema.

``engine.store.database.upgrade(url)`` runs it with an open connection in
``config.attributes["connection"]`` (no ``alembic.ini``). Given only ``sqlalchemy.url``
(``engine.store.database.alembic_config(url)``), it opens its own; offline it prints the SQL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from engine.store.database import create_store_engine
from engine.store.tables import VERSION_TABLE, metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # SQLite needs table copies for most ALTERs
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(
            url=url,
            target_metadata=metadata,
            version_table=VERSION_TABLE,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection in config.attributes")
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()
