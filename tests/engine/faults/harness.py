"""The fault-injection harness: a store whose writes fail where a seeded plan says.

``FaultyStore`` wraps a real ``SQLModelStore`` and makes one write fail at one of four points,
through the database driver itself (so the failure travels the path a real one takes: the
driver's ``OperationalError``, wrapped by SQLAlchemy, turned into ``StoreError`` by the store):

- ``before_write``: the write's first statement fails before it runs; nothing was written.
- ``after_write``: the first statement ran inside the transaction, then the next step of
  the connection fails; the transaction rolls back.
- ``on_commit``: every statement ran, then ``COMMIT`` fails; the transaction rolls back.
- ``after_commit``: ``COMMIT`` succeeded but the client hears a failure (a lost
  acknowledgement); the write is durable although the caller sees an error.

A write that is one statement runs in autocommit on PostgreSQL (``acquire``, ``release``,
``create``, a checkpoint that changes no wait): its statement is its commit, so
``before_write`` and ``on_commit`` fail the statement (nothing written), and ``after_write``
and ``after_commit`` strike after it committed (durable, the caller hears an error).

A fault may also ``drop`` the connection (close it before raising), as when a database
server goes away; the scenario does that on PostgreSQL only.

Which writes can fail: every write the engine makes (``create``, ``acquire``,
``checkpoint``, ``release``, ``update_wait``, ``delete_wait``, ``append_history``).
``FlakyManager`` is a ``CallbackManager`` whose set-ups and tear-downs fail at random or
while it is ``down``; its set-ups return set-up data, and ``FaultyStore.setup_data`` notes
what a committed write stored of it.

For each checkpoint that carries a step or a handler, the store tells ``fault_app.LEDGER``
whether it committed: the latest execution of that workflow is then either kept or marked
``uncommitted``, the only kind of execution allowed to run again.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import event

from engine import HistoryEntry, SQLModelStore, StoreError, WaitInfo, WaitStatus
from engine._records import WorkflowRecord
from tests.apps.fault_app import LEDGER


class Point(StrEnum):
    """Where in a write the fault strikes."""

    BEFORE_WRITE = "before_write"
    AFTER_WRITE = "after_write"
    ON_COMMIT = "on_commit"
    AFTER_COMMIT = "after_commit"

    @property
    def commits(self) -> bool:
        """True if the write is durable despite the error."""
        return self is Point.AFTER_COMMIT


WRITES = (
    "create",
    "acquire",
    "claim_due",
    "checkpoint",
    "release",
    "update_wait",
    "delete_wait",
    "append_history",
)
"""Every ``Store`` method that writes, each a transaction of its own."""


@dataclass
class Fault:
    """One injected fault: the write it hit, where, and what the store raised for it."""

    op: str
    point: Point
    workflow_id: str | None
    drop: bool = False  # the connection is closed too, as when the server goes away
    fired: bool = False
    raised: type[BaseException] | None = None
    autocommitted: bool = False  # the statement it followed committed by itself

    @property
    def durable(self) -> bool:
        """Whether the write it hit is durable although the caller heard an error."""
        return self.fired and (self.point.commits or self.autocommitted)


@dataclass
class FaultPlan:
    """Decides, write by write, whether to inject a fault and where (seeded: reproducible).

    Args:
        rng: the source of every decision.
        rate: the chance that a write fails.
        drop_rate: the chance that a fault also closes the connection.
        ops: the writes that may fail (default: all of them).
        checkpoint_weight: how much likelier a checkpoint fails than another write.
        forced: (write, point) faults to inject first, whatever the rate (``force``).
    """

    rng: random.Random
    rate: float
    drop_rate: float = 0.0
    ops: Sequence[str] = WRITES
    checkpoint_weight: float = 2.0
    forced: list[tuple[str, Point]] = field(default_factory=list)

    def pick(self, op: str, workflow_id: str | None) -> Fault | None:
        """The fault this call of ``op`` meets, or None."""
        for i, (want, point) in enumerate(self.forced):
            if want == op:
                del self.forced[i]
                return Fault(op, point, workflow_id)
        if op not in self.ops or self.rate <= 0:
            return None
        rate = min(1.0, self.rate * (self.checkpoint_weight if op == "checkpoint" else 1.0))
        if self.rng.random() >= rate:
            return None
        point = self.rng.choice(list(Point))
        return Fault(op, point, workflow_id, drop=self.rng.random() < self.drop_rate)

    def force(self, op: str, point: Point) -> None:
        """Make the next call of ``op`` fail at ``point``, whatever the rate."""
        self.forced.append((op, point))


class FaultyStore:
    """A ``SQLModelStore`` whose writes fail as ``plan`` decides; reads pass straight through.

    Attributes:
        inner: the real store.
        faults: every fault injected so far, in order.
        setup_data: per wait id, the set-up data an ``update_wait`` stored (committed, even
            if its caller heard an error): what every later tear-down must be handed.
    """

    def __init__(self, inner: SQLModelStore, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan
        self.faults: list[Fault] = []
        self.setup_data: dict[str, Any] = {}  # wait id -> the set-up data a commit stored
        self._armed: Fault | None = None
        self._statements = 0
        sa_engine = inner.engine
        self._error: type[Exception] = sa_engine.dialect.loaded_dbapi.OperationalError
        # The store's second (autocommit) pool on PostgreSQL: a write that is one statement
        # runs there, committed as soon as it ran.
        for pool in {sa_engine, inner._reader}:
            event.listen(pool, "before_cursor_execute", self._before_statement)
            event.listen(pool, "after_cursor_execute", self._after_statement)
        dialect = sa_engine.dialect
        real_commit: Callable[[Any], None] = dialect.do_commit

        def do_commit(dbapi_connection: Any) -> None:
            fault = self._armed
            if fault is not None and not fault.fired and fault.point is Point.ON_COMMIT:
                self._fire(fault, dbapi_connection.driver_connection)
            real_commit(dbapi_connection)
            if fault is not None and not fault.fired and fault.point is Point.AFTER_COMMIT:
                self._fire(fault, dbapi_connection.driver_connection)

        dialect.do_commit = do_commit  # type: ignore[method-assign]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def close(self) -> None:
        self.inner.close()

    # -- injection ----------------------------------------------------------------------------

    def _fire(self, fault: Fault, driver_connection: Any) -> None:
        fault.fired = True
        if fault.drop:
            driver_connection.close()
        raise self._error(f"injected fault: {fault.op} {fault.point.value}")

    def _before_statement(self, conn: Any, *args: Any) -> None:
        fault = self._armed
        self._statements += 1
        if fault is None or fault.fired or self._statements != 1:
            return
        driver = conn.connection.driver_connection
        # In autocommit the statement is its own COMMIT: failing "at commit" fails it.
        points = (
            (Point.BEFORE_WRITE, Point.ON_COMMIT) if _autocommit(driver) else (Point.BEFORE_WRITE,)
        )
        if fault.point in points:
            self._fire(fault, driver)

    def _after_statement(self, conn: Any, *args: Any) -> None:
        fault = self._armed
        if fault is None or fault.fired or self._statements != 1:
            return
        driver = conn.connection.driver_connection
        if _autocommit(driver):  # committed already: a failure now is a lost acknowledgement
            if fault.point in (Point.AFTER_WRITE, Point.AFTER_COMMIT):
                fault.autocommitted = True
                self._fire(fault, driver)
        elif fault.point is Point.AFTER_WRITE:
            self._fire(fault, driver)

    @contextmanager
    def _write(self, op: str, workflow_id: str | None) -> Iterator[Fault | None]:
        fault = self.plan.pick(op, workflow_id)
        self._armed, self._statements = fault, 0
        try:
            yield fault
        except BaseException as e:
            if fault is not None and fault.fired:
                fault.raised = type(e)
            raise
        finally:
            self._armed = None
            if fault is not None and fault.fired:
                self.faults.append(fault)

    def _settle(self, workflow_id: str, history: Sequence[HistoryEntry], committed: bool) -> None:
        """Tell the ledger whether the execution this checkpoint carries was kept."""
        if not any(h.kind in ("step", "callback") for h in history):
            return
        run = LEDGER.last(workflow_id)
        if run is not None and run.pending:
            run.pending = False
            run.uncommitted = not committed

    # -- the writes ---------------------------------------------------------------------------

    def checkpoint(self, record: WorkflowRecord, **kw: Any) -> None:
        history: Sequence[HistoryEntry] = kw.get("history", ())
        with self._write("checkpoint", record.id) as fault:
            try:
                self.inner.checkpoint(record, **kw)
            except BaseException:
                durable = fault is not None and fault.durable
                self._settle(record.id, history, committed=durable)
                raise
            self._settle(record.id, history, committed=True)

    def create(self, record: WorkflowRecord, history: Sequence[HistoryEntry]) -> bool:
        with self._write("create", record.id):
            return self.inner.create(record, history)

    def acquire(self, workflow_id: str, owner: str, **kw: Any) -> WorkflowRecord:
        with self._write("acquire", workflow_id):
            return self.inner.acquire(workflow_id, owner, **kw)

    def claim_due(self, now: Any, owner: str, *, until: Any, limit: int) -> list[WorkflowRecord]:
        # A poller's batch lease: a lost acknowledgement leaves the batch leased until the
        # leases run out (taken over then), never run twice.
        with self._write("claim_due", None):
            return self.inner.claim_due(now, owner, until=until, limit=limit)

    def release(self, workflow_id: str, owner: str) -> None:
        with self._write("release", workflow_id):
            self.inner.release(workflow_id, owner)

    def update_wait(self, wait: WaitInfo, *, owner: str) -> None:
        with self._write("update_wait", wait.workflow_id) as fault:
            try:
                self.inner.update_wait(wait, owner=owner)
            except BaseException:
                if fault is not None and fault.durable:
                    self._set_up(wait)
                raise
            self._set_up(wait)

    def _set_up(self, wait: WaitInfo) -> None:
        """Note the set-up data a committed write stored (from then on it must be kept)."""
        if wait.status is WaitStatus.SET_UP and wait.setup_data is not None:
            self.setup_data[wait.id] = wait.setup_data

    def delete_wait(self, wait_id: str, *, workflow_id: str, owner: str) -> None:
        with self._write("delete_wait", workflow_id):
            self.inner.delete_wait(wait_id, workflow_id=workflow_id, owner=owner)

    def append_history(self, entries: Sequence[HistoryEntry], *, owner: str) -> None:
        with self._write("append_history", entries[0].workflow_id if entries else None):
            self.inner.append_history(entries, owner=owner)

    # -- counts -------------------------------------------------------------------------------

    def counts(self) -> Counter[tuple[str, Point]]:
        """How many faults hit each (write, point)."""
        return Counter((f.op, f.point) for f in self.faults)

    def unreported(self) -> list[Fault]:
        """Faults that did not reach the store's caller as a ``StoreError``."""
        return [f for f in self.faults if f.raised is None or not issubclass(f.raised, StoreError)]


def _autocommit(driver: Any) -> bool:
    """Whether a driver connection commits each statement by itself (psycopg's flag; the
    store's SQLite connections run their own BEGIN and are never in autocommit here)."""
    return isinstance(getattr(driver, "autocommit", None), bool) and bool(driver.autocommit)


@dataclass
class FlakyManager:
    """A ``CallbackManager`` for every handler type, failing at ``rate`` or while ``down``.

    Its set-ups return set-up data naming the wait and the attempt (``"<wait id>#<n>"``), as
    a chat's message id would.

    Attributes:
        setups: successful set-ups per wait id.
        posted: the set-up data each successful set-up returned, per wait id.
        teardowns: the ``handled`` flag of each successful tear-down, per wait id.
        torn_data: the ``setup_data`` each successful tear-down was handed, per wait id.
        failures: set-ups and tear-downs that raised.
    """

    rng: random.Random
    rate: float = 0.0
    down: bool = False
    setups: Counter[str] = field(default_factory=Counter)
    posted: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    teardowns: dict[str, list[bool]] = field(default_factory=dict)
    torn_data: dict[str, list[Any]] = field(default_factory=dict)
    waits: dict[str, WaitInfo] = field(default_factory=dict)
    failures: int = 0

    def _maybe_fail(self, what: str, wait: WaitInfo) -> None:
        if self.down or (self.rate > 0 and self.rng.random() < self.rate):
            self.failures += 1
            raise ConnectionError(f"manager unavailable ({what} of {wait.event!r})")

    def setup(self, wait: WaitInfo) -> dict[str, str]:
        self._maybe_fail("setup", wait)
        self.setups[wait.id] += 1
        self.waits[wait.id] = wait
        data = {"message": f"{wait.id}#{self.setups[wait.id]}"}
        self.posted.setdefault(wait.id, []).append(data)
        return data

    def teardown(self, wait: WaitInfo, handled: bool) -> None:
        self._maybe_fail("teardown", wait)
        self.teardowns.setdefault(wait.id, []).append(handled)
        self.torn_data.setdefault(wait.id, []).append(wait.setup_data)
        self.waits.setdefault(wait.id, wait)
