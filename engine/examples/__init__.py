"""Bundled example workflows: what the UI and ``gorch demo`` show on a first run.

``WORKFLOWS`` lists them, as a ``GORCH_APP`` module of your own would.
"""

from engine import Workflow
from engine.examples.expense import ApprovalMessages, Chat, Expense
from engine.examples.importer import Import
from engine.examples.order import Order

WORKFLOWS: list[type[Workflow]] = [Expense, Order, Import]

__all__ = ["WORKFLOWS", "ApprovalMessages", "Chat", "Expense", "Import", "Order"]
