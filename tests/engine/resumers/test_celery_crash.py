"""Crash tests for Celery: prefork children and whole workers SIGKILLed mid-step, Redis restarted.

Two ``celery worker`` processes (two prefork children each; the first also runs the beat that
sends ``gorch.sweep`` every second) share one queue on a private ``redis-server``. The test
process starts workflows and delivers approvals through ``CeleryResumer``, as a web app would,
while it kills, at random moments:

- a prefork child, most often the one that has just started a step (so the kill lands in the
  step or in its checkpoint), and Celery's pool starts another;
- a whole worker (its main process, its children and its beat, as a lost machine would), and
  starts it again;
- the broker, without persistence (every message it held is lost), and starts it again.

Nobody repairs anything: the workflows must all finish by themselves. Each step records its
executions in a side table (``crash_app.record``); a step may run again only if the process
that ran it before was killed (it never reached its checkpoint). ``GORCH_LONG=1`` runs more.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from engine import (
    CallbackRejected,
    Engine,
    SQLModelStore,
    WorkflowBusy,
    WorkflowStatus,
)
from engine.resumers.celery import CeleryResumer, register_tasks
from tests.engine.resumers.conftest import APPS, Broker, CeleryWorker

sys.path.insert(0, str(APPS))
from celery_app import WORKFLOWS
from crash_app import Crashy, Slow

LONG = os.environ.get("GORCH_LONG") == "1"
KILLS = 100 if LONG else 24  # per backend; every sixth kills a whole worker
WORKFLOWS_N = KILLS + 6  # six at first, then one per kill
BROKER_RESTARTS = 4 if LONG else 1
LEASE_S = 3.0  # how long a killed process's workflow stays busy; renewed every second
SWEEP_S = 1.0


@dataclass
class Run:
    """What the test did, for the assertions and the figures."""

    killed: set[int] = field(default_factory=set)  # every pid the test killed
    kills: Counter[str] = field(default_factory=Counter)  # "child mid-step", "child idle", "worker"
    broker_restarts: int = 0
    delivered: set[str] = field(default_factory=set)


def pool_of(worker: CeleryWorker) -> list[int]:
    """The worker's child processes (its prefork pool and, for the first, its beat)."""
    path = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def runs_after(side_db: Path, rowid: int) -> list[tuple[int, int]]:
    """(rowid, pid) of the step executions recorded after ``rowid``."""
    if not side_db.exists():
        return []
    con = sqlite3.connect(side_db, timeout=30)
    try:
        return list(con.execute("SELECT rowid, pid FROM runs WHERE rowid > ?", (rowid,)))
    except sqlite3.OperationalError as e:  # the first step has created the file, not the table
        if "no such table" not in str(e):
            raise
        return []
    finally:
        con.close()


def all_runs(side_db: Path) -> list[tuple[str, str, int, float]]:
    con = sqlite3.connect(side_db, timeout=30)
    try:
        return list(con.execute("SELECT workflow, key, pid, at FROM runs ORDER BY rowid"))
    finally:
        con.close()


def deliver(engine: Engine, pending: set[str], run: Run) -> None:
    for w in sorted(pending - run.delivered):
        try:
            engine.on_callback(w, "approve", {"approved": True}, actor="test")
            run.delivered.add(w)
        except (CallbackRejected, WorkflowBusy):
            pass  # not waiting yet, or a (maybe dead) process holds it: try again later


@pytest.mark.timeout(1800 if LONG else 300)
def test_sigkill_celery_children_and_workers_and_restart_redis(
    db_url: str,
    celery_worker: Callable[..., CeleryWorker],
    private_broker: Broker,
    tmp_path: Path,
) -> None:
    side_db = tmp_path / "side.db"
    os.environ["GORCH_SIDE_DB"] = str(side_db)
    env = {"GORCH_LEASE_S": str(LEASE_S)}

    def start(queue: str | None) -> CeleryWorker:
        return celery_worker(
            db_url, sweep_s=SWEEP_S, broker=private_broker.url, queue=queue, concurrency=2, env=env
        )

    # Each embeds a beat: one lost worker does not stop the sweep.
    first = start(None)
    workers = {"a": first, "b": start(first.queue)}
    # The test's own sessions never wait for a lease: a dead child may hold it for seconds.
    store = SQLModelStore(db_url)
    engine = Engine(
        store, WORKFLOWS, resumer=CeleryResumer(first.sender()), busy_timeout=timedelta(0)
    )
    # Half get an approval (their timer is far off); the other half time out after 2 s.
    specs = [(f"w{i}", 120.0 if i % 2 else 2.0) for i in range(WORKFLOWS_N)]
    to_approve = {w for w, timeout in specs if timeout > 60}
    ids: list[str] = []

    def start_workflows(n: int) -> None:
        for key, timeout in specs[len(ids) : len(ids) + n]:
            ids.append(engine.new_workflow(Crashy(key=key, timeout_s=timeout), key))

    run = Run()
    rng = random.Random(14)
    restarts_at = {KILLS * (i + 1) // (BROKER_RESTARTS + 1) for i in range(BROKER_RESTARTS)}
    seen = 0  # the side table's last rowid the test has looked at
    stepped: set[int] = set()  # the processes that have run steps
    start_workflows(6)
    deadline = time.monotonic() + (1500 if LONG else 200)
    while sum(run.kills.values()) < KILLS and time.monotonic() < deadline:
        n = sum(run.kills.values())
        start_workflows(1)
        deliver(engine, to_approve & set(ids), run)
        time.sleep(rng.uniform(0.1, 0.4))
        if n in restarts_at and run.broker_restarts < BROKER_RESTARTS:
            private_broker.kill()  # every message in it is lost, eta timers included
            time.sleep(rng.uniform(0.5, 1.5))
            private_broker.start()
            run.broker_restarts += 1
        name = rng.choice(sorted(workers))
        if n % 6 == 5:  # the whole worker: main process, pool and beat, as a lost machine
            victim = workers[name]
            run.killed |= {victim.proc.pid, *pool_of(victim)}
            os.killpg(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait()
            run.kills["worker"] += 1
            workers[name] = start(first.queue)  # its supervisor's restart
            continue
        # A prefork child: the next one to start a step, a few milliseconds into it. Only
        # processes that have run steps are candidates: the beat is a child of its worker too.
        children = {p for w in workers.values() for p in pool_of(w)}
        pid, why = None, "child mid-step"
        wait_until = time.monotonic() + 2.0
        while pid is None and time.monotonic() < wait_until:
            fresh = runs_after(side_db, seen)
            if fresh:
                seen = fresh[-1][0]
                stepped |= {p for _, p in fresh}
                pid = fresh[-1][1] if fresh[-1][1] in children else None
            else:
                time.sleep(0.005)
        if pid is None:  # no step started meanwhile: a child of the pools, idle or not
            pid, why = rng.choice(sorted(children & stepped) or [0]), "child idle"
            if not pid:
                continue
        time.sleep(rng.uniform(0.0, 0.03))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue  # it exited meanwhile: pick another
        run.killed.add(pid)
        run.kills[why] += 1
    kills_done = time.monotonic()
    start_workflows(WORKFLOWS_N)  # any not started yet
    # Recovery: no more kills, nobody repairs anything; everything must finish by itself.
    while time.monotonic() < deadline:
        deliver(engine, to_approve, run)
        if all(engine.get(w).status.done for w in ids):
            break
        time.sleep(0.1)
    recovered_s = time.monotonic() - kills_done
    logs = "".join(log.read_text() for log in sorted(tmp_path.glob("celery*.log")))
    assert sum(run.kills.values()) == KILLS
    assert run.broker_restarts == BROKER_RESTARTS
    unfinished = {w: engine.get(w).status for w in ids if not engine.get(w).status.done}
    assert not unfinished, f"not finished: {unfinished}\n{logs[-4000:]}"
    # No worker died by itself (kombu < 5.7 survives the broker's restart).
    assert all(w.proc.poll() is None for w in workers.values()), logs[-4000:]

    runs = all_runs(side_db)
    per_key = Counter((w, k) for w, k, _, _ in runs)
    for w in ids:
        info = engine.get(w)
        assert info.status is WorkflowStatus.FINISHED, w
        expected = {f"work:{i}" for i in range(5)} | {"side work", "final"}
        expected |= {"note timeout"} if w not in to_approve else set()
        assert {k for (wid, k) in per_key if wid == w} == expected, w
        # Callbacks exactly once in effect: one callback line, the right one, no wait left.
        callbacks = [h for h in engine.history(w) if h.kind == "callback"]
        assert len(callbacks) == 1, (w, callbacks)
        if w in to_approve:
            assert w in run.delivered
            assert info.state.approved and callbacks[0].actor == "test", w
        else:
            assert info.state.timed_out and callbacks[0].actor == "timer", w
        assert not engine.pending_waits(w), w
    # A step ran more than once only when a killed process ran it before its checkpoint:
    # every execution of a key but the last belongs to a process the test killed.
    reruns = duplicates = 0
    interrupted: set[int] = set()
    delays: list[float] = []
    for (w, k), n in per_key.items():
        if n > 1:
            execs = [(pid, at) for wid, key, pid, at in runs if (wid, key) == (w, k)]
            duplicates += sum(pid not in run.killed for pid, _ in execs[:-1])
            interrupted |= {pid for pid, _ in execs[:-1]}
            delays += [b[1] - a[1] for a, b in itertools.pairwise(execs)]
            reruns += n - 1
    tasks_lost = logs.count("Task handler raised error: WorkerLostError")  # seen by Celery
    median = statistics.median(delays) if delays else 0.0
    # The figures docs/reliability.md quotes (see them with -rP); lost=0 is asserted above.
    print(f"celery sigkill {store.engine.dialect.name}: kills={KILLS} "
          f"(children mid-step={run.kills['child mid-step']} idle={run.kills['child idle']} "
          f"workers={run.kills['worker']}) "
          f"broker_restarts={run.broker_restarts} workflows={len(ids)} "
          f"executions={len(runs)} reruns={reruns} (by {len(interrupted)} killed processes; "
          f"again after {median:.1f}s median, {max(delays, default=0.0):.1f}s max) "
          f"duplicates={duplicates} lost=0 callbacks={len(ids)} "
          f"tasks_lost_with_a_child={tasks_lost} recovered_in={recovered_s:.1f}s")  # fmt: skip
    assert duplicates == 0, per_key
    # One step at most per killed child, two per killed worker (its pool's size).
    assert reruns <= run.kills["child mid-step"] + run.kills["child idle"] + 2 * run.kills["worker"]
    store.close()


def test_a_broker_restart_does_not_cancel_running_steps(
    db_url: str,
    celery_worker: Callable[..., CeleryWorker],
    private_broker: Broker,
    tmp_path: Path,
) -> None:
    """Even in an app that acknowledges late and cancels such tasks when the broker connection
    drops (Celery 6's default), gorch's tasks acknowledge early: a step survives the restart."""
    side_db = tmp_path / "side.db"
    os.environ["GORCH_SIDE_DB"] = str(side_db)
    worker = celery_worker(
        db_url, sweep_s=1.0, broker=private_broker.url, concurrency=2,
        env={"GORCH_ACKS_LATE": "1", "GORCH_LEASE_S": str(LEASE_S)},
    )  # fmt: skip
    store = SQLModelStore(db_url)
    engine = Engine(store, WORKFLOWS, resumer=CeleryResumer(worker.sender()))
    ids = [engine.new_workflow(Slow(key=f"s{i}", seconds=4.0), f"s{i}") for i in range(2)]
    deadline = time.monotonic() + 30
    while len(runs_after(side_db, 0)) < 2:  # both steps have started
        assert time.monotonic() < deadline, worker.log.read_text()[-4000:]
        time.sleep(0.02)
    private_broker.kill()
    time.sleep(1.0)
    private_broker.start()
    deadline = time.monotonic() + 60
    while not all(engine.get(w).status.done for w in ids):
        assert time.monotonic() < deadline, worker.log.read_text()[-4000:]
        time.sleep(0.1)
    assert all(engine.get(w).status is WorkflowStatus.FINISHED for w in ids)
    assert sorted(w for w, _, _, _ in all_runs(side_db)) == ["s0", "s1"]  # each step ran once
    assert worker.proc.poll() is None
    store.close()


def test_gorch_tasks_acknowledge_early_whatever_the_app_says() -> None:
    from celery import Celery

    app = Celery("late", broker="memory://")
    app.conf.task_acks_late = True

    @app.task
    def own() -> None: ...

    tasks = register_tasks(app, lambda: pytest.fail("no engine is built to register tasks"))
    assert (tasks.execute.acks_late, tasks.sweep.acks_late) == (False, False)
    assert own.acks_late is True  # the app's own tasks keep its setting
