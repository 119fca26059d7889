"""Deploy tests run on SQLite and PostgreSQL, with the store tests' database fixtures."""

from tests.engine.store.conftest import db_url, pg_server, pg_url  # noqa: F401
