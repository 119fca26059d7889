"""Engines whose clocks are an hour off, on PostgreSQL: the database's clock decides leases, so
a fast clock steals no live lease, a slow one keeps none that has expired, and a worker's
heartbeat keeps its lease alive either way."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from engine import (
    Engine,
    LeaseLost,
    PollingResumer,
    S,
    Section,
    SQLModelStore,
    Step,
    SystemClock,
    Workflow,
    WorkflowBusy,
    WorkflowStatus,
)
from engine._scheduling.worker import renewing_leases

pytestmark = pytest.mark.postgres

HOUR = timedelta(hours=1)


class SkewedClock(SystemClock):
    """The real time, ``offset`` off: a machine whose clock is wrong."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return super().now() + self.offset


@dataclass
class Gate:
    """Holds the first run of a ``Gated`` step until the test lets it go."""

    runs: int = 0
    entered: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)


GATES: dict[str, Gate] = {}


class Gated(Workflow):
    """One step; its first run holds its session (and the lease) until the test lets go."""

    key: str = ""

    def definition(self) -> Section:
        return S(Step("work", self.work))

    def work(self) -> None:
        gate = GATES[self.key]
        gate.runs += 1
        if gate.runs == 1:
            gate.entered.set()
            gate.go.wait(30)


class Session(threading.Thread):
    """``engine.execute(wid)`` in a thread (another process, as far as leases go), under
    a worker's heartbeat with ``heartbeat``; keeps its result or error."""

    def __init__(self, engine: Engine, wid: str, *, heartbeat: bool) -> None:
        super().__init__(daemon=True)
        self.engine, self.wid, self.heartbeat = engine, wid, heartbeat
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if self.heartbeat:
                with renewing_leases(self.engine):
                    self.result = self.engine.execute(self.wid)
            else:
                self.result = self.engine.execute(self.wid)
        except BaseException as e:  # the test looks at it
            self.error = e


@pytest.fixture
def engines(pg_url: str) -> Iterator[Callable[..., Engine]]:
    """``engines(offset, lease=...)``: an engine with a clock ``offset`` off real time, on a
    store of its own (another process), that runs nothing by itself and never waits for a
    busy workflow."""
    stores: list[SQLModelStore] = []

    def make(offset: timedelta, *, lease: float = 1.5) -> Engine:
        stores.append(SQLModelStore(pg_url))
        return Engine(stores[-1], [Gated], clock=SkewedClock(offset), resumer=PollingResumer(),
                      lease=timedelta(seconds=lease), busy_timeout=timedelta(0))  # fmt: skip

    yield make
    for s in stores:
        s.close()


@pytest.fixture
def start(engines: Callable[..., Engine]) -> Iterator[Callable[..., Session]]:
    """``start(engine, wid, heartbeat=...)``: a started ``Session``. Every gate is opened
    and every session joined when the test ends, passed or failed (before ``engines``
    closes the stores and drops the schema)."""
    sessions: list[Session] = []

    def start_(engine: Engine, wid: str, *, heartbeat: bool) -> Session:
        sessions.append(Session(engine, wid, heartbeat=heartbeat))
        sessions[-1].start()
        return sessions[-1]

    yield start_
    for gate in GATES.values():
        gate.go.set()
    for session in sessions:
        session.join(30)
    GATES.clear()


def gated(engine: Engine, key: str) -> tuple[str, Gate]:
    GATES[key] = gate = Gate()
    return engine.new_workflow(Gated(key=key), key), gate


def steps(engine: Engine, wid: str) -> int:
    return sum(h.kind == "step" for h in engine.history(wid))


def test_an_engine_an_hour_ahead_cannot_take_a_workflow_a_live_worker_holds(
    engines: Callable[..., Engine], start: Callable[..., Session]
) -> None:
    holder, ahead = engines(timedelta(0)), engines(HOUR)
    wid, gate = gated(holder, "ahead")
    session = start(holder, wid, heartbeat=True)
    assert gate.entered.wait(10)
    deadline = time.monotonic() + 3.0  # twice the lease: only the heartbeat keeps it
    while time.monotonic() < deadline:
        with pytest.raises(WorkflowBusy):  # its lease ended an hour ago by this clock
            ahead.execute(wid)
        assert ahead.run_due() == 0  # nor does its poller take the workflow
        time.sleep(0.1)
    gate.go.set()
    session.join(10)
    assert session.error is None and session.result.status is WorkflowStatus.FINISHED
    assert (gate.runs, steps(holder, wid)) == (1, 1)


def test_an_engine_an_hour_behind_keeps_no_lease_past_its_length_by_the_database_clock(
    engines: Callable[..., Engine], start: Callable[..., Session]
) -> None:
    """The slow engine runs a step longer than its lease, with no heartbeat (inline): the
    lease is its own for its length by the database's clock (by the true time, it ended an
    hour ago), then another engine takes the workflow over, and the slow engine's
    checkpoint fails with ``LeaseLost``, writing nothing."""
    lease = 2.0
    slow, other = engines(-HOUR, lease=lease), engines(timedelta(0), lease=lease)
    wid, gate = gated(slow, "behind")
    started = time.monotonic()
    session = start(slow, wid, heartbeat=False)
    assert gate.entered.wait(10)
    with pytest.raises(WorkflowBusy):  # not expired yet by the database's clock
        other.execute(wid)
    while True:
        try:
            info = other.execute(wid)
            break
        except WorkflowBusy:
            assert time.monotonic() - started < lease + 10, "the expired lease was never freed"
            time.sleep(0.05)
    assert time.monotonic() - started >= lease - 0.05  # not before the lease's length
    assert info.status is WorkflowStatus.FINISHED
    gate.go.set()
    session.join(10)
    assert isinstance(session.error, LeaseLost), session.error
    assert (gate.runs, steps(other, wid)) == (2, 1)  # the slow step's result never landed
    assert other.get(wid).version == info.version


@pytest.mark.parametrize("offset", [HOUR, -HOUR], ids=["ahead", "behind"])
def test_the_heartbeat_of_a_worker_whose_clock_is_off_keeps_its_lease(
    engines: Callable[..., Engine], start: Callable[..., Session], offset: timedelta
) -> None:
    worker, other = engines(offset), engines(timedelta(0))
    wid, gate = gated(worker, f"heartbeat-{offset}")
    session = start(worker, wid, heartbeat=True)
    assert gate.entered.wait(10)
    deadline = time.monotonic() + 3.0  # twice the lease
    while time.monotonic() < deadline:
        with pytest.raises(WorkflowBusy):
            other.execute(wid)
        time.sleep(0.1)
    gate.go.set()
    session.join(10)
    assert session.error is None and session.result.status is WorkflowStatus.FINISHED
    assert (gate.runs, steps(worker, wid)) == (1, 1)
    lease = worker.store.load(wid)
    assert (lease.lease_owner, lease.lease_until) == (None, None)  # given back at the end
