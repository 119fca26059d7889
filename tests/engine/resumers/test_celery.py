"""The Celery resumer with a real worker process on a real Redis broker.

The test process starts workflows and delivers callbacks through ``CeleryResumer``; a
``celery worker`` runs them. Steps record each execution in a side table (``crash_app``), so
a step run twice by duplicate messages or a broker restart would show.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from engine import (
    CallbackRejected,
    Engine,
    SQLModelStore,
    WorkflowBusy,
    WorkflowStatus,
)
from engine.examples import Expense
from engine.resumers.celery import EXECUTE, SWEEP, CeleryResumer
from tests.engine.resumers.conftest import APPS, Broker, CeleryWorker

sys.path.insert(0, str(APPS))
from celery_app import WORKFLOWS, QuickExpense
from crash_app import Crashy


def engine_for(db: str, worker: CeleryWorker, tmp_path: Path) -> Engine:
    os.environ["GORCH_SIDE_DB"] = str(tmp_path / "side.db")  # steps run here by a test count too
    return Engine(SQLModelStore(db), WORKFLOWS, resumer=CeleryResumer(worker.sender()))


def wait_until(cond: Callable[[], bool], seconds: float, worker: CeleryWorker) -> float:
    """Seconds until ``cond()`` held; fails with the worker's log after ``seconds``."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < seconds, f"timed out; worker log:\n{worker_log(worker)}"
        time.sleep(0.01)
    return time.monotonic() - t0


def worker_log(worker: CeleryWorker) -> str:
    return worker.log.read_text()[-4000:]


def step_counts(tmp_path: Path) -> Counter[tuple[str, str]]:
    con = sqlite3.connect(tmp_path / "side.db", timeout=30)
    try:
        return Counter(con.execute("SELECT workflow, key FROM runs"))
    finally:
        con.close()


def approve(engine: Engine, wid: str, event: str) -> bool:
    try:
        engine.on_callback(wid, event, {"approved": True}, actor="test")
        return True
    except (CallbackRejected, WorkflowBusy):
        return False  # not waiting yet, or the worker holds it: try again


def test_expense_is_approved_through_celery(
    db_url: str, celery_worker: Callable[..., CeleryWorker], tmp_path: Path
) -> None:
    worker = celery_worker(db_url)  # no sweep: only the tasks the resumer sends run it
    engine = engine_for(db_url, worker, tmp_path)
    wid = engine.new_workflow(Expense(amount=42, requester="ana"))
    wait_until(lambda: engine.get(wid).status is WorkflowStatus.WAITING, 20, worker)
    assert sorted(w.event for w in engine.pending_waits(wid)) == ["slackApproval", "timeout"]
    # bo, not ana: the requester may not approve her own expense
    engine.on_callback(wid, "slackApproval", {"approved": True}, actor="bo")
    wait_until(lambda: engine.get(wid).status.done, 20, worker)
    info = engine.get(wid)
    assert (info.status, info.result) == (WorkflowStatus.FINISHED, {"approved": 42})
    assert info.state.notified
    steps = [h.statement for h in engine.history(wid) if h.kind == "step"]
    assert sorted(steps) == ["first action", "parallel thread"]


def test_expense_times_out_on_time_through_celery(
    db_url: str, celery_worker: Callable[..., CeleryWorker], tmp_path: Path
) -> None:
    worker = celery_worker(db_url)  # no sweep: the timer can only fire through its eta
    engine = engine_for(db_url, worker, tmp_path)
    wid = engine.new_workflow(QuickExpense(key="q", amount=7))
    wait_until(lambda: engine.get(wid).status.done, 20, worker)
    info = engine.get(wid)
    assert (info.status, info.error) == (WorkflowStatus.FINISHED, "workflow finished with timeout")
    fired = [h for h in engine.history(wid) if h.kind == "callback"]
    assert [h.actor for h in fired] == ["timer"]
    armed = next(h for h in engine.history(wid) if h.kind == "wait")
    late = (fired[0].at - armed.at).total_seconds() - 1.0
    # The timer is armed (its due time taken) a moment before the "wait" line is stamped:
    # on a loaded machine that moment can be a few milliseconds, never 50.
    assert -0.05 <= late < 5, f"the one-second timer fired {late:.3f}s late"
    assert set(step_counts(tmp_path).values()) == {1}


def test_duplicated_messages_cause_no_double_step(
    db_url: str, celery_worker: Callable[..., CeleryWorker], tmp_path: Path
) -> None:
    worker = celery_worker(db_url)
    engine = engine_for(db_url, worker, tmp_path)
    sender = worker.sender()
    ids = [engine.new_workflow(Crashy(key=f"d{i}", n=3, timeout_s=1.0 + 60 * (i % 2)), f"d{i}")
           for i in range(6)]  # fmt: skip
    for _ in range(5):  # every message five more times, while the worker's 4 threads run them
        for wid in ids:
            sender.send_task(EXECUTE, args=(wid,))
    approved: set[str] = set()
    while len(approved) < 3:
        approved |= {w for w in ids[1::2] if w not in approved and approve(engine, w, "approve")}
        for wid in ids:
            sender.send_task(EXECUTE, args=(wid,))
        time.sleep(0.05)
    wait_until(lambda: all(engine.get(w).status.done for w in ids), 30, worker)
    counts = step_counts(tmp_path)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    for i, wid in enumerate(ids):
        expected = {"work:0", "work:1", "work:2", "side work", "final"}
        expected |= {"note timeout"} if i % 2 == 0 else set()
        assert {k for (w, k) in counts if w == wid} == expected, wid
        assert len([h for h in engine.history(wid) if h.kind == "callback"]) == 1


def test_broker_restart_mid_run_loses_nothing(
    db_url: str,
    celery_worker: Callable[..., CeleryWorker],
    private_broker: Broker,
    tmp_path: Path,
) -> None:
    worker = celery_worker(db_url, sweep_s=1.0, broker=private_broker.url)
    engine = engine_for(db_url, worker, tmp_path)
    # Half time out after 2 s (their eta messages die with the broker), half await approval.
    before = [engine.new_workflow(Crashy(key=f"b{i}", n=3, timeout_s=2.0 + 60 * (i % 2)), f"b{i}")
              for i in range(6)]  # fmt: skip
    wait_until(lambda: all(engine.pending_waits(w) for w in before), 30, worker)
    private_broker.kill()
    # While it is down: new workflows and approvals are stored; their messages cannot be sent.
    during = [engine.new_workflow(Crashy(key=f"c{i}", n=3, timeout_s=60.0), f"c{i}")
              for i in range(3)]  # fmt: skip
    to_approve = set(before[1::2])
    approved = {w for w in to_approve if approve(engine, w, "approve")}
    assert approved == to_approve
    time.sleep(1.5)
    assert not any(engine.get(w).status.done for w in [*during, *to_approve])
    private_broker.start()
    wait_until(lambda: all(engine.pending_waits(w) for w in during), 60, worker)
    for w in during:
        assert approve(engine, w, "approve")
    wait_until(lambda: all(engine.get(w).status.done for w in before + during), 60, worker)
    counts = step_counts(tmp_path)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    for i, wid in enumerate(before + during):
        timed_out = wid in before and wid not in to_approve
        info = engine.get(wid)
        assert info.status is WorkflowStatus.FINISHED
        assert (info.state.timed_out, info.state.approved) == (timed_out, not timed_out), wid
        callbacks = [h.actor for h in engine.history(wid) if h.kind == "callback"]
        assert callbacks == (["timer"] if timed_out else ["test"]), wid
        expected = {"work:0", "work:1", "work:2", "side work", "final"}
        assert {k for (w, k) in counts if w == wid} == expected | (
            {"note timeout"} if timed_out else set()
        ), (i, wid)


def test_the_documented_celery_app_is_the_file_and_registers_the_tasks(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    docs = Path(__file__).resolve().parents[3] / "docs"
    source = (docs / "celery_tasks.py").read_text()
    assert f"```python\n{source}```" in (docs / "operations.md").read_text()
    monkeypatch.setenv("GORCH_DB_URL", "memory://")
    spec = importlib.util.spec_from_file_location("celery_tasks", docs / "celery_tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert {EXECUTE, SWEEP} <= set(module.app.tasks)
    engine = module.make_engine()
    assert isinstance(engine.resumer, CeleryResumer) and engine.resumer.app is module.app
    assert "Expense" in engine.workflows  # GORCH_APP's default: the bundled examples
