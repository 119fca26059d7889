"""Shared fixtures: a manual clock, engines on a memory store, snapshots and a recording manager."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine import (
    Engine,
    ManualClock,
    MemoryStore,
    PollingResumer,
    WaitInfo,
    Workflow,
)


@pytest.fixture
def clock() -> ManualClock:
    """Time that moves only when a test says so (starts at 2026-01-01T00:00Z)."""
    return ManualClock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def engine(store: MemoryStore, clock: ManualClock) -> Engine:
    """An engine on a memory store with the manual clock; runs work inline (the default)."""
    return Engine(store, clock=clock)


@pytest.fixture
def polling_engine(store: MemoryStore, clock: ManualClock) -> Engine:
    """An engine that runs nothing by itself: tests drive it with execute/step/run_due."""
    return Engine(store, clock=clock, resumer=PollingResumer())


@pytest.fixture
def make_engine(store: MemoryStore, clock: ManualClock) -> Callable[..., Engine]:
    """Build more engines on the *same* store and clock (a deploy of new code, say)."""

    def make(*workflows: type[Workflow], **kw: Any) -> Engine:
        kw.setdefault("clock", clock)
        return Engine(store, workflows, **kw)

    return make


@dataclass(frozen=True)
class Snapshot:
    """Everything about a stored workflow that an action could change."""

    status: str
    pc: int
    version: int
    state: dict[str, Any]
    threads: tuple[tuple[Any, ...], ...]
    result: Any
    error: str | None
    history_len: int
    waits: tuple[tuple[Any, ...], ...]


def take_snapshot(engine: Engine, workflow_id: str) -> Snapshot:
    info = engine.get(workflow_id)
    waits = sorted(
        (w.id, w.thread_id, w.wait, w.event, w.status.value, w.pc, w.attempts, w.error)
        for w in engine.store.load_waits(workflow_id)
    )
    return Snapshot(
        status=info.status.value,
        pc=info.pc,
        version=info.version,
        state=info.state.model_dump(mode="json"),
        threads=tuple(
            (t.id, t.status.value, t.position, t.phase.value, t.event, t.attempts, t.error)
            for t in info.threads
        ),
        result=info.result,
        error=info.error,
        history_len=len(engine.history(workflow_id)),
        waits=tuple(waits),
    )


@pytest.fixture
def snapshot() -> Callable[[Engine, str], Snapshot]:
    """``snapshot(engine, id)``: a comparable picture of the stored workflow."""
    return take_snapshot


@dataclass
class RecordingManager:
    """A ``CallbackManager`` that records every call and can be told to fail.

    Attributes:
        calls: ``("setup", event, None)`` or ``("teardown", event, handled)`` in call order.
        fail_setup: how many more setup calls raise.
        fail_teardown: how many more teardown calls raise.
    """

    calls: list[tuple[str, str, bool | None]] = field(default_factory=list)
    waits: list[WaitInfo] = field(default_factory=list)
    fail_setup: int = 0
    fail_teardown: int = 0

    def setup(self, wait: WaitInfo) -> None:
        self.calls.append(("setup", wait.event, None))
        self.waits.append(wait)
        if self.fail_setup > 0:
            self.fail_setup -= 1
            raise ConnectionError(f"slack is down (setup of {wait.event})")

    def teardown(self, wait: WaitInfo, handled: bool) -> None:
        self.calls.append(("teardown", wait.event, handled))
        if self.fail_teardown > 0:
            self.fail_teardown -= 1
            raise ConnectionError(f"slack is down (teardown of {wait.event})")

    def of(self, kind: str) -> list[tuple[str, str, bool | None]]:
        return [c for c in self.calls if c[0] == kind]


@pytest.fixture
def manager() -> RecordingManager:
    return RecordingManager()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put back the log levels a ``-v`` run in this process changes."""
    loggers = [logging.getLogger(), logging.getLogger("alembic")]
    levels = [lg.level for lg in loggers]
    yield
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)
