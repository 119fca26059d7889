"""Helpers for race tests, run in separate processes (multiprocessing, spawn)."""

from __future__ import annotations

from typing import Any

from engine import (
    CallbackRejected,
    Engine,
    GorchError,
    On,
    PollingResumer,
    S,
    Section,
    SQLModelStore,
    Wait,
    WaitForUserAction,
    Workflow,
)


class Approval(Workflow):
    """Waits for one approval; counts how many times the handler ran."""

    approvals: int = 0
    by: str = ""

    def definition(self) -> Section:
        return S(Wait("approval", On("approve", WaitForUserAction(
            approve=self.approve, deny=lambda reason: None))))  # fmt: skip

    def approve(self) -> None:
        self.approvals += 1


def deliver_rounds(url: str, ids: list[str], barrier: Any, results: Any, name: str) -> None:
    """For each id: wait at the barrier with the other processes, then deliver the callback."""
    engine = Engine(SQLModelStore(url, migrate=False), [Approval], resumer=PollingResumer())
    for wid in ids:
        barrier.wait()
        try:
            engine.on_callback(wid, "approve", {"approved": True}, actor=name)
            results.put((wid, name, "won"))
        except CallbackRejected as e:
            results.put((wid, name, f"rejected:{e.reason}"))
        except GorchError as e:
            results.put((wid, name, f"error:{type(e).__name__}"))
