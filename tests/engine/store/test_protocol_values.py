"""Enum-valued fields (history kinds, handler types, statuses) are stored as their plain string
values on every backend, exactly as before they were enums: no migration, old rows still read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from engine import (
    Engine,
    HandlerType,
    HistoryKind,
    ManualClock,
    On,
    S,
    Section,
    SQLModelStore,
    Step,
    Store,
    Timeout,
    Wait,
    WaitForUserAction,
    Workflow,
)


class Ask(Workflow):
    """A step, then a question with a deadline."""

    asked: int = 0

    def definition(self) -> Section:
        return S(
            Step("ask", self.ask),
            Wait("answer",
                On("reply", WaitForUserAction(approve=self.noop, deny=lambda r: None)),
                On("late", Timeout(after=timedelta(hours=1))),
            ),
        )  # fmt: skip

    def ask(self) -> None:
        self.asked += 1

    def noop(self) -> None:
        return None


def _raw(store: Store, sql: str) -> list[Any]:
    """The column as the database holds it (memory: the objects the store keeps)."""
    assert isinstance(store, SQLModelStore)
    with store.engine.connect() as conn:
        return [r[0] for r in conn.execute(text(sql))]


def test_kinds_and_types_are_stored_as_their_values(store: Store, clock: ManualClock) -> None:
    engine = Engine(store, [Ask], clock=clock)
    wid = engine.new_workflow(Ask(), actor="ann")
    waits = {w.event: w for w in engine.pending_waits(wid)}
    assert {e: w.type for e, w in waits.items()} == {"reply": "user_action", "late": "timeout"}
    engine.on_callback(wid, "reply", {"approved": True}, actor="bob")

    kinds = [h.kind for h in engine.history(wid)]
    assert kinds == ["created", "step", "wait", "callback", "thread_end", "finished"]
    assert all(HistoryKind(k) for k in kinds)  # every line read back is a known kind
    if isinstance(store, SQLModelStore):  # the very text in the database: no enum names
        assert _raw(store, "SELECT kind FROM history ORDER BY id") == kinds
        assert all(type(k) is str for k in _raw(store, "SELECT kind FROM history"))
        assert _raw(store, "SELECT status FROM workflows") == ["finished"]


def test_wait_types_are_stored_as_their_values(store: Store, clock: ManualClock) -> None:
    engine = Engine(store, [Ask], clock=clock)
    wid = engine.new_workflow(Ask())
    assert sorted(w.type for w in store.load_waits(wid)) == [
        HandlerType.TIMEOUT,
        HandlerType.USER_ACTION,
    ]
    assert engine.pending_waits(type=HandlerType.USER_ACTION)[0].event == "reply"
    if isinstance(store, SQLModelStore):
        assert sorted(_raw(store, "SELECT type FROM waits")) == ["timeout", "user_action"]
