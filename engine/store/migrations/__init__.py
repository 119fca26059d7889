"""Alembic migrations of gorch's schema, run by ``engine.store.database.upgrade``."""
