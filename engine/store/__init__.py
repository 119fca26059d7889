"""Stores: where workflows, waits and history live."""

from engine.store.base import Store
from engine.store.memory import MemoryStore

__all__ = ["MemoryStore", "Store"]
