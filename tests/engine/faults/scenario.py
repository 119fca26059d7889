"""One seeded fault run: many ``FaultFlow`` workflows driven through store and manager faults.

``run_scenario`` starts the workflows, then repeats rounds of what a deployment does (a
poller's ``run_due``, callbacks from people and systems, time passing) while ``FaultyStore``
fails writes and ``FlakyManager`` fails set-ups and tear-downs. Callers only ever catch
``GorchError``: anything else escaping the engine fails the run. The rounds go on until
every workflow has ended and every wait is torn down; if ``max_rounds`` pass first, the
faults stop and recovery rounds run until then. Then ``check`` compares the store, the
ledger of executions and the manager's calls, and fills the ``Tally``.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, Final

from engine import (
    CallbackRejected,
    Engine,
    GorchError,
    ManualClock,
    PollingResumer,
    RetryPolicy,
    SQLModelStore,
    ThreadStatus,
    WorkflowStatus,
)
from engine._session import runner
from tests.apps.fault_app import (
    APPROVE,
    CANCEL,
    DENY,
    LEDGER,
    PATHS,
    TIMEOUT,
    FaultFlow,
    expected_keys,
)
from tests.engine.faults.harness import FaultPlan, FaultyStore, FlakyManager, Point

MANAGED = ("user_action", "event", "timeout")
LEASE_CLOCK: Final = "caller"
"""Leases go by the engine's ``ManualClock`` on PostgreSQL too: a lease a failed release left
behind expires as the run moves time, as it would on the database's clock in real time."""


@dataclass
class Tally:
    """What one run injected, ran and found."""

    backend: str
    seed: int
    workflows: int = 0
    faults: Counter[tuple[str, Point]] = field(default_factory=Counter)
    dropped: int = 0  # faults that also closed the connection (PostgreSQL only)
    manager_failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # what the engine's callers saw
    steps: int = 0  # executions of steps and handlers whose checkpoint committed
    reruns: int = 0  # executions whose checkpoint failed, so they ran again (allowed)
    failed_attempts: int = 0  # the flaky step's first attempts, failing on purpose
    callbacks: int = 0  # callbacks applied (approvals, events, timers)
    cancelled: int = 0  # workflows an operator cancelled
    redeliveries: int = 0  # repeated deliveries of an applied callback, all rejected
    manager_repeats: int = 0  # set-ups or tear-downs that succeeded more than once
    setup_data_kept: int = 0  # tear-downs handed the set-up data of their wait
    duplicates: int = 0  # a checkpointed step or callback that ran again
    lost: int = 0  # unfinished workflows, missing steps or callbacks, waits never torn down
    rounds: int = 0
    recovery_rounds: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def injected(self) -> int:
        """Store faults plus manager failures."""
        return sum(self.faults.values()) + self.manager_failures

    def line(self) -> str:
        """The one-line summary the suite prints and the docs quote."""
        by_point = Counter[str]()
        for (op, point), n in self.faults.items():
            by_point["checkpoint " + point.value if op == "checkpoint" else "other writes"] += n
        points = ", ".join(f"{k}: {v}" for k, v in sorted(by_point.items()))
        return (
            f"{self.backend} seed={self.seed}: workflows={self.workflows} "
            f"faults={self.injected} (store {sum(self.faults.values())} [{points}], "
            f"manager {self.manager_failures}, connections dropped {self.dropped}) "
            f"steps={self.steps} reruns={self.reruns} "
            f"callbacks={self.callbacks} cancelled={self.cancelled} "
            f"redeliveries_rejected={self.redeliveries} "
            f"duplicates={self.duplicates} lost={self.lost} "
            f"rounds={self.rounds}+{self.recovery_rounds}"
        )


def build_engine(store: FaultyStore, manager: FlakyManager) -> Engine:
    """An engine as a poller runs it, on a manual clock, with ``manager`` for every wait."""
    return Engine(
        store,  # type: ignore[arg-type]
        [FaultFlow],
        managers=dict.fromkeys(MANAGED, manager),
        clock=ManualClock(),
        resumer=PollingResumer(),
        retry=RetryPolicy(max_interval=timedelta(seconds=20)),  # set-up/tear-down back-off
        lease=timedelta(seconds=30),
        busy_timeout=timedelta(0),  # a callback to a leased workflow fails at once
    )


class Rig:
    """One engine on a ``FaultyStore`` without random faults: tests force them one by one."""

    def __init__(self, url: str) -> None:
        LEDGER.clear()
        self.inner = SQLModelStore(url, lease_clock=LEASE_CLOCK)
        self.plan = FaultPlan(random.Random(0), rate=0.0)
        self.store = FaultyStore(self.inner, self.plan)
        self.manager = FlakyManager(random.Random(0))
        self.engine = build_engine(self.store, self.manager)
        self.clock: ManualClock = self.engine.clock  # type: ignore[assignment]

    def durable(self, point: Point, *, changes_waits: bool) -> bool:
        """Whether a checkpoint that fails at ``point`` was durable all the same. On PostgreSQL
        a checkpoint that changes no wait is one statement in autocommit (see the harness)."""
        alone = self.inner.engine.dialect.name == "postgresql" and not changes_waits
        return point.commits or (alone and point is Point.AFTER_WRITE)

    def runs(self, wid: str, key: str) -> list[bool]:
        """``uncommitted`` of each execution of ``key`` in workflow ``wid``, in order."""
        return [r.uncommitted for r in LEDGER.runs if (r.workflow, r.key) == (wid, key)]

    def at_approval(self, path: str = APPROVE, wid: str = "w") -> str:
        """A new workflow, run until it waits for its approval (past the flaky step's retry)."""
        self.engine.new_workflow(FaultFlow(key=wid, path=path), wid)
        self.engine.execute(wid)
        self.clock.advance(timedelta(seconds=2))
        self.engine.execute(wid)
        assert self.engine.get(wid).threads[0].position == "approval"
        return wid


def run_scenario(
    url: str,
    *,
    seed: int,
    workflows: int,
    rate: float = 0.12,
    drop_rate: float = 0.25,
    manager_rate: float = 0.15,
    max_rounds: int = 150,
) -> Tally:
    """Drive ``workflows`` workflows through faults on the database at ``url``."""
    LEDGER.clear()
    random.seed(seed)  # the poller shuffles due workflows with the global generator
    rng = random.Random(seed)
    inner = SQLModelStore(url, lease_clock=LEASE_CLOCK)
    # A dropped connection is a server's failure: a SQLite file has no server to lose (and a
    # closed sqlite3 connection with a statement still open keeps its lock until collected).
    postgres = inner.engine.dialect.name == "postgresql"
    plan = FaultPlan(random.Random(seed + 1), rate, drop_rate if postgres else 0.0)
    for point in Point:  # every point of a checkpoint is hit at least once
        plan.force("checkpoint", point)
    store = FaultyStore(inner, plan)
    manager = FlakyManager(random.Random(seed + 2), manager_rate)
    engine = build_engine(store, manager)
    tally = Tally(inner.engine.dialect.name, seed, workflows)
    paths = {f"f{i:03d}": PATHS[i % len(PATHS)] for i in range(workflows)}
    driver = Driver(engine, store, paths, rng, tally)
    ids = random.Random(seed + 3)
    real_os = runner.os
    # Wait ids are random, and they order waits served together: seeded, a run repeats.
    runner.os = SimpleNamespace(urandom=ids.randbytes)  # type: ignore[assignment]
    try:
        while tally.rounds < max_rounds and not driver.all_done():
            tally.rounds += 1
            driver.round()
        plan.rate, manager.rate = 0.0, 0.0
        while tally.recovery_rounds < 200 and not driver.all_done():
            tally.recovery_rounds += 1
            driver.round()
        tally.faults = store.counts()
        tally.dropped = sum(f.drop for f in store.faults)
        tally.manager_failures = manager.failures
        unreported = store.unreported()
        if unreported:
            tally.problems.append(f"faults not surfaced as StoreError: {unreported[:3]}")
        check(engine, inner, paths, manager, driver, tally)
    finally:
        runner.os = real_os
        inner.close()
    return tally


class Driver:
    """Plays the world around the engine: pollers, callers and the clock."""

    def __init__(
        self,
        engine: Engine,
        store: FaultyStore,
        paths: dict[str, str],
        rng: random.Random,
        tally: Tally,
    ) -> None:
        self.engine, self.store, self.inner = engine, store, store.inner
        self.paths, self.rng, self.tally = paths, rng, tally
        self.to_create = list(paths)
        self.applied: Counter[tuple[str, str]] = Counter()  # (workflow, event) -> successes
        self.ambiguous: set[tuple[str, str]] = set()  # deliveries that raised StoreError

    def call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        """Call the engine as an application would: a ``GorchError`` is counted, not fatal."""
        try:
            return fn(*args, **kw)
        except GorchError as e:
            self.tally.errors[type(e).__name__] += 1
            return e

    def round(self) -> None:
        for wid in list(self.to_create):
            state = FaultFlow(key=wid, path=self.paths[wid])
            if not isinstance(self.call(self.engine.new_workflow, state, wid), GorchError):
                self.to_create.remove(wid)
        self.call(self.engine.run_due)
        for w in sorted(self.inner.list_waits(), key=lambda w: (w.workflow_id, w.event)):
            path = self.paths[w.workflow_id]
            if w.event == "approve" and path != TIMEOUT:
                data: Any = {"approved": path != DENY, "reason": "too dear"}
            elif w.event == "data" and path == CANCEL:
                # Once its goroutine is done, so that what it must have run is known.
                side = self.inner.load(w.workflow_id).thread("side")
                if side and side.status is ThreadStatus.FINISHED and self.rng.random() < 0.6:
                    self.call(self.engine.cancel, w.workflow_id, "ops", "no longer needed")
                continue
            elif w.event == "data":
                data = {"value": len(w.workflow_id)}
            else:
                continue  # timers fire by themselves
            if self.rng.random() < 0.4:
                continue  # later: vary the interleaving of callbacks and steps
            self.deliver(w.workflow_id, w.event, data, w.pc)
        clock: ManualClock = self.engine.clock  # type: ignore[assignment]
        clock.advance(timedelta(seconds=self.rng.uniform(1, 12)))

    def deliver(self, wid: str, event: str, data: Any, pc: int) -> None:
        key, seen = (wid, event), len(self.store.faults)
        try:
            self.engine.on_callback(wid, event, data, actor="harness", pc=pc)
        except CallbackRejected as e:
            self.tally.errors[f"CallbackRejected({e.reason})"] += 1
            if key not in self.ambiguous:
                self.tally.problems.append(f"{wid}: {event} rejected unprompted: {e}")
            return
        except GorchError as e:
            self.tally.errors[type(e).__name__] += 1
            self.ambiguous.add(key)  # it may have been applied (a lost acknowledgement)
            # Only a lost acknowledgement of the checkpoint itself may leave the caller in
            # doubt: an error after it (releasing the lease, serving the waits) must not.
            during = self.store.faults[seen:]
            lost_ack = any((f.op, f.point) == ("checkpoint", Point.AFTER_COMMIT) for f in during)
            applied = any(
                h.kind == "callback" and h.detail.get("event") == event
                for h in self.inner.history(wid)
            )
            if applied and not lost_ack:
                self.tally.problems.append(
                    f"{wid}: {event} was applied, yet the caller was told {e!r} ({during})"
                )
            return
        self.applied[key] += 1
        if self.rng.random() < 0.3:  # the same delivery again, as a retrying sender would
            again = self.call(self.engine.on_callback, wid, event, data, actor="harness", pc=pc)
            if isinstance(again, CallbackRejected):
                self.tally.redeliveries += 1
            elif not isinstance(again, GorchError):
                self.tally.problems.append(f"{wid}: {event} applied twice")

    def all_done(self) -> bool:
        if self.to_create:
            return False
        counts = self.inner.count_workflows()
        done = counts[WorkflowStatus.FINISHED] + counts[WorkflowStatus.CANCELLED]
        return done == len(self.paths) and not self.inner.due_waits(
            self.engine.clock.now() + timedelta(days=365)
        )


def check(
    engine: Engine,
    inner: SQLModelStore,
    paths: dict[str, str],
    manager: FlakyManager,
    driver: Driver,
    tally: Tally,
) -> None:
    """Compare what ran with what was kept; fill ``duplicates``, ``lost`` and ``problems``."""
    runs = Counter((r.workflow, r.key) for r in LEDGER.runs if not r.uncommitted)
    tally.steps = sum(runs.values())
    tally.reruns = sum(1 for r in LEDGER.runs if r.uncommitted)
    tally.failed_attempts = LEDGER.failed_attempts
    pending = [r for r in LEDGER.runs if r.pending]
    if pending:
        tally.problems.append(f"executions whose checkpoint was never tried: {pending[:3]}")
    for wid, path in paths.items():
        info = engine.get(wid)
        status = WorkflowStatus.CANCELLED if path == CANCEL else WorkflowStatus.FINISHED
        if info.status is not status:
            tally.lost += 1
            tally.problems.append(f"{wid}: {info.status.value}, threads {info.threads}")
            continue
        want = Counter(expected_keys(path))
        kept = Counter(info.state.done)
        ran = Counter({k: n for (w, k), n in runs.items() if w == wid})
        for k in want | kept | ran:
            extra = max(kept[k], ran[k]) - want[k]
            if extra > 0:
                tally.duplicates += extra
                tally.problems.append(f"{wid}: {k} kept {kept[k]}x, ran {ran[k]}x")
            elif min(kept[k], ran[k]) < want[k]:
                tally.lost += 1
                tally.problems.append(f"{wid}: {k} kept {kept[k]}x, ran {ran[k]}x")
        history = engine.history(wid)
        cancels = sum(h.kind == "cancelled" for h in history)
        tally.cancelled += cancels
        if cancels != (path == CANCEL):
            tally.problems.append(f"{wid}: cancelled {cancels} times")
        callbacks = [h for h in history if h.kind == "callback"]
        tally.callbacks += len(callbacks)
        got = Counter(str(h.detail.get("event")) for h in callbacks)
        expect = Counter(["late" if path == TIMEOUT else "approve"])
        expect += Counter() if path == CANCEL else Counter(["data"])
        if got != expect:
            tally.duplicates += sum((got - expect).values())
            tally.lost += sum((expect - got).values())
            tally.problems.append(f"{wid}: callbacks {dict(got)}, expected {dict(expect)}")
        if inner.load_waits(wid):
            tally.lost += 1
            tally.problems.append(f"{wid}: waits left: {inner.load_waits(wid)}")
    for (wid, event), n in driver.applied.items():
        if n > 1:
            tally.duplicates += n - 1
            tally.problems.append(f"{wid}: {event} accepted {n} times")
    for wait_id, n in manager.setups.items():
        tally.manager_repeats += n - 1
        flags = manager.teardowns.get(wait_id)
        if not flags:
            tally.lost += 1
            tally.problems.append(f"wait {manager.waits[wait_id]} set up, never torn down")
        elif len(set(flags)) > 1:
            tally.problems.append(f"wait {wait_id} torn down as handled and not: {flags}")
    tally.manager_repeats += sum(len(f) - 1 for f in manager.teardowns.values())
    check_setup_data(driver.store, manager, tally)


def check_setup_data(store: FaultyStore, manager: FlakyManager, tally: Tally) -> None:
    """Set-up data once written is never lost: every tear-down of a wait is handed what a
    committed write stored for it, and never data that no set-up of that wait returned."""
    for wait_id, seen in manager.torn_data.items():
        posted = manager.posted.get(wait_id, [])
        written = store.setup_data.get(wait_id)
        tally.setup_data_kept += sum(d is not None for d in seen)
        for data in seen:
            if data is not None and data not in posted:
                tally.problems.append(f"wait {wait_id}: torn down with {data}, never posted")
            if written is not None and data != written:
                tally.lost += 1
                tally.problems.append(f"wait {wait_id}: {written} was stored, teardown got {data}")
