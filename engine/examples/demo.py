"""Seed an engine with the bundled examples in every state, for the UI's first run."""

from __future__ import annotations

from engine._engine import Engine
from engine.examples.expense import Expense
from engine.examples.importer import Import
from engine.examples.order import Order


def seed_demo(engine: Engine, *, prefix: str = "demo") -> list[str]:
    """Start example workflows and drive them into every status; return their ids.

    Idempotent: ids are fixed, so seeding twice creates nothing new.
    """
    ids: list[str] = []

    def start(suffix: str, state: Expense | Order | Import) -> str | None:
        wid = f"{prefix}-{suffix}"
        ids.append(wid)
        fresh = not engine.store.list_workflows(search=wid, limit=1)
        engine.new_workflow(state, wid, actor="demo")
        engine.execute(wid)
        return wid if fresh else None

    start("expense-waiting", Expense(amount=120, requester="raj"))
    if wid := start("expense-approved", Expense(amount=40, requester="bo")):
        engine.on_callback(wid, "slackApproval", {"approved": True}, actor="demo")
        engine.execute(wid)
    if wid := start("expense-denied", Expense(amount=9000, requester="cy")):
        engine.on_callback(
            wid, "slackApproval", {"approved": False, "reason": "over budget"}, actor="demo"
        )
        engine.execute(wid)
    if wid := start("expense-cancelled", Expense(amount=75, requester="di")):
        engine.cancel(wid, actor="demo", reason="duplicate claim")
    start("order-waiting", Order(items=["book", "lamp", "desk"]))
    if wid := start("order-shipped", Order(items=["pen"])):
        engine.on_callback(wid, "shipped", {"carrier": "ups", "tracking": "1Z999"}, actor="demo")
        engine.execute(wid)
    start("import-finished", Import(pages=3))
    start("import-retrying", Import(pages=4, flaky=[1], failures=2))
    start("import-failed", Import(pages=2, flaky=[0], failures=99, attempts=1))
    return ids
