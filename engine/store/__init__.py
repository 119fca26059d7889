"""Stores: where workflows, waits and history live."""

from engine.store.base import Store
from engine.store.memory import MemoryStore
from engine.store.sql import SQLModelStore

__all__ = ["MemoryStore", "SQLModelStore", "Store"]
