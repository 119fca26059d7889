"""Stores: where workflows, waits and history live.

``Store`` is the protocol every store implements (``ClaimingStore``: one that also hands a
poller due workflows in batches, as every store of gorch does); ``MemoryStore`` keeps
everything in the process; ``SQLModelStore`` (SQLite, PostgreSQL) is imported on first use of
the name, so that ``engine.store`` loads no SQL library until a SQL store is wanted.
"""

from typing import TYPE_CHECKING, Any

from engine.store.base import ClaimingStore, Store
from engine.store.memory import MemoryStore

if TYPE_CHECKING:
    from engine.store.sql import SQLModelStore

__all__ = ["ClaimingStore", "MemoryStore", "SQLModelStore", "Store"]


def __getattr__(name: str) -> Any:
    """Import ``SQLModelStore`` (and SQLAlchemy, Alembic, psycopg) on first use of the name."""
    if name == "SQLModelStore":
        from engine.store.sql import SQLModelStore

        globals()[name] = SQLModelStore
        return SQLModelStore
    raise AttributeError(f"module 'engine.store' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, the lazy ones included (they are not in the namespace until used)."""
    return sorted({*globals(), *__all__})
