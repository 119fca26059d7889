"""Races between processes: exactly one winner, and the losers get a clear GorchError."""

from __future__ import annotations

import multiprocessing
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import (
    Engine,
    GorchError,
    MemoryStore,
    PollingResumer,
    SQLModelStore,
    WaitStatus,
    WorkflowStatus,
)
from engine._scheduling.worker import renewing_leases

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))
from crash_app import Crashy, side_runs
from race_app import (
    WORKFLOWS,
    Approval,
    ChatManager,
    Deadline,
    Looper,
    Triple,
    approve_rounds,
    deliver_rounds,
    execute_rounds,
    run_due_rounds,
    slow_setup_session,
)

APPS = Path(__file__).resolve().parents[2] / "apps"

PROCESSES = 4
ROUNDS = 25


def start_racers(
    db_url: str, ids: list[str], racers: list[tuple[Any, Any]], *, parties: int | None = None
) -> tuple[list[Any], Any, Any]:
    """Start one spawned process per ``(target, name)``, each running
    ``target(db_url, ids, barrier, results, name)``; all meet at one barrier of ``parties``
    (default: the racers alone). Returns the processes, the barrier and the results queue;
    keep the barrier referenced until the racers have started (collected, its semaphore
    goes before they can unpickle it)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(parties or len(racers)), ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(db_url, ids, barrier, results, name))
        for target, name in racers
    ]
    for p in procs:
        p.start()
    return procs, barrier, results


def test_same_callback_from_many_processes_has_one_winner(db_url: str) -> None:
    store = SQLModelStore(db_url)
    engine = Engine(store, [Approval], resumer=PollingResumer())
    ids = [engine.new_workflow(Approval(), f"race-{i}") for i in range(ROUNDS)]
    for wid in ids:
        engine.execute(wid)
    procs, _barrier, results = start_racers(  # held: the racers unpickle the barrier
        db_url, ids, [(deliver_rounds, f"p{i}") for i in range(PROCESSES)]
    )
    outcomes: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for _ in range(PROCESSES * ROUNDS):
        wid, name, outcome = results.get(timeout=120)
        outcomes[wid].append((name, outcome))
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    for wid in ids:
        won = [name for name, o in outcomes[wid] if o == "won"]
        lost = [o for _, o in outcomes[wid] if o != "won"]
        assert len(won) == 1, (wid, outcomes[wid])
        # Losers are told the wait is gone (or, rarely, that it stayed busy past the timeout).
        assert all(o in ("rejected:no_wait", "error:WorkflowBusy") for o in lost), lost
        info = engine.get(wid)
        assert info.state.approvals == 1
        callbacks = [h for h in engine.history(wid) if h.kind == "callback"]
        assert [h.actor for h in callbacks] == won
    store.close()


def test_run_due_from_many_machines_at_once_runs_each_step_once(
    db_url: str, tmp_path: Path
) -> None:
    """``gorch run-due`` from cron on several machines: leases share the work out."""
    side_db = tmp_path / "side.db"
    os.environ["GORCH_SIDE_DB"] = str(side_db)
    store = SQLModelStore(db_url)
    engine = Engine(store, [Crashy], resumer=PollingResumer())
    ids = [engine.new_workflow(Crashy(key=f"r{i}", n=3, timeout_s=0.0), f"r{i}") for i in range(12)]
    env = {**os.environ, "PYTHONPATH": str(APPS)}
    cmd = [sys.executable, "-m", "engine.cli", "run-due", "--db", db_url, "--app", "crash_app"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE) for _ in range(PROCESSES)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * PROCESSES, outputs
    assert all(engine.get(w).status is WorkflowStatus.FINISHED for w in ids)
    con = sqlite3.connect(side_db)
    runs = Counter(con.execute("SELECT workflow, key FROM runs"))
    con.close()
    assert set(runs.values()) == {1}, [k for k, n in runs.items() if n > 1]
    assert len(runs) == 12 * 6  # work:0-2, side work, note timeout, final
    assert sum(int(o.split()[0]) for o in outputs) >= 12 * 2  # every workflow and timer
    store.close()


def assert_settled(engine: Engine, wid: str) -> None:
    """Finished, no lease held, no wait left behind."""
    rec = engine.store.load(wid)
    assert rec.status is WorkflowStatus.FINISHED, (wid, rec.status, rec.threads)
    assert rec.lease_owner is None, (wid, rec.lease_owner)
    assert engine.store.load_waits(wid) == [], wid


def test_callback_races_its_timeout_one_branch_wins(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An approval and the worker firing the same Wait's timer, at the same moment."""
    side_db = tmp_path / "side.db"
    monkeypatch.setenv("GORCH_SIDE_DB", str(side_db))
    store = SQLModelStore(db_url)
    engine = Engine(store, WORKFLOWS, resumer=PollingResumer())
    ids = [f"d{i}" for i in range(ROUNDS)]
    # The test process meets the two racers at the barrier: it arms each round.
    procs, barrier, results = start_racers(
        db_url, ids, [(approve_rounds, 1), (run_due_rounds, 2)], parties=3
    )
    outcomes: dict[str, dict[str, str]] = defaultdict(dict)
    try:
        for wid in ids:
            # Armed now, one round at a time: the timer is due at once, so the racers'
            # run_due finds this round's timer only.
            engine.new_workflow(Deadline(key=wid), wid)
            engine.execute(wid)
            barrier.wait(timeout=60)
            for _ in range(2):
                w, side, outcome = results.get(timeout=60)
                outcomes[w][side] = outcome
    finally:
        for p in procs:
            p.join(timeout=30)
    assert [p.exitcode for p in procs] == [0, 0]
    while engine.run_due():  # finish what the racers left due
        pass
    runs = Counter((w, k) for w, k, _ in side_runs(side_db))
    winners: Counter[str] = Counter()
    for wid in ids:
        assert_settled(engine, wid)
        callbacks = [h for h in engine.history(wid) if h.kind == "callback"]
        assert len(callbacks) == 1, (wid, callbacks)
        winner = callbacks[0].actor
        winners[winner] += 1
        state = engine.get(wid).state
        user = outcomes[wid]["user"]
        if winner == "user":
            assert user == "won"
            assert state.approved and not state.expired
            assert runs[wid, "expired"] == 0
        else:
            assert winner == "timer"
            # The approval lost: the wait was gone, the workflow finished, or (rarely)
            # it stayed busy past the busy timeout.
            assert user in ("rejected:no_wait", "rejected:finished", "error:WorkflowBusy"), user
            assert state.expired and not state.approved
            assert runs[wid, "expired"] == 1
        assert runs[wid, "done"] == 1
        assert not outcomes[wid]["timer"].startswith(("error", "rejected")), outcomes[wid]
    print(f"callback vs timeout: {dict(winners)}")
    store.close()


def test_operator_goto_races_workers_running_steps(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers run loops of steps and timers; an operator moves each workflow to its
    final step at a random moment. The goto lands between sessions or is refused."""
    side_db = tmp_path / "side.db"
    monkeypatch.setenv("GORCH_SIDE_DB", str(side_db))
    store = SQLModelStore(db_url)
    patient = Engine(store, WORKFLOWS, resumer=PollingResumer())
    hasty = Engine(store, WORKFLOWS, resumer=PollingResumer(), busy_timeout=timedelta(0))
    ids = [patient.new_workflow(Looper(key=f"g{i}"), f"g{i}") for i in range(16)]
    log = tmp_path / "workers.log"
    env = {**os.environ, "PYTHONPATH": str(APPS)}
    cmd = [sys.executable, "-m", "engine.cli", "worker", "--db", db_url, "--app", "race_app",
           "--poll", "0.02", "--lease", "5"]  # fmt: skip
    workers = [subprocess.Popen(cmd, env=env, stderr=log.open("ab")) for _ in range(2)]
    outcomes: dict[str, str] = {}
    rng = random.Random(3)
    try:
        while not side_runs(side_db):  # the workers have started
            assert all(w.poll() is None for w in workers), log.read_text()
            time.sleep(0.05)
        for n, wid in enumerate(rng.sample(ids, len(ids))):
            time.sleep(rng.uniform(0.0, 0.08))
            try:
                (hasty if n % 2 else patient).goto(wid, "main", "final", actor="op")
                outcomes[wid] = "moved"
            except GorchError as e:
                outcomes[wid] = type(e).__name__
        deadline = time.monotonic() + 60
        while not all(patient.get(w).status.done for w in ids):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
    finally:
        for w in workers:
            w.terminate()
        codes = [w.wait(timeout=20) for w in workers]
    assert codes == [0, 0], log.read_text()[-3000:]
    assert set(outcomes.values()) <= {"moved", "WorkflowBusy", "InvalidOperation"}, outcomes
    runs = Counter((w, k) for w, k, _ in side_runs(side_db))
    for wid in ids:
        assert_settled(patient, wid)
        history = patient.history(wid)
        gotos = [h for h in history if h.kind == "goto"]
        works = [h for h in history if h.kind == "step" and h.statement == "work"]
        i = patient.get(wid).state.i
        # Every step ran once (two workers, no crash) and its checkpoint says so.
        assert len(works) == i, (wid, works, i)
        assert {k: n for (w, k), n in runs.items() if w == wid} == {
            **{f"work:{k}": 1 for k in range(i)}, "final": 1}, wid  # fmt: skip
        if outcomes[wid] == "moved":
            assert len(gotos) == 1
            # Nothing of the loop ran after the move: it landed between two sessions.
            assert all(h.seq < gotos[0].seq for h in works), wid
            after = [h.statement for h in history if h.seq > gotos[0].seq and h.kind == "step"]
            assert after == ["final"], (wid, after)
        else:
            assert gotos == [] and i == 5, (wid, outcomes[wid])
    print(f"goto vs workers: {Counter(outcomes.values())}")
    store.close()


def test_workers_racing_for_one_workflow_run_each_step_once(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several processes execute the same workflow at the same instant: one runs it, the
    others are told it is busy (or, arriving after it finished, find nothing to do)."""
    side_db = tmp_path / "side.db"
    monkeypatch.setenv("GORCH_SIDE_DB", str(side_db))
    store = SQLModelStore(db_url)
    engine = Engine(store, WORKFLOWS, resumer=PollingResumer())
    ids = [engine.new_workflow(Triple(key=f"t{i}"), f"t{i}") for i in range(ROUNDS // 2)]
    procs, _barrier, results = start_racers(  # held: the racers unpickle the barrier
        db_url, ids, [(execute_rounds, f"p{i}") for i in range(PROCESSES)]
    )
    outcomes: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for _ in range(PROCESSES * len(ids)):
        wid, _name, pid, outcome = results.get(timeout=120)
        outcomes[wid].append((pid, outcome))
    for p in procs:
        p.join(timeout=30)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    runs = side_runs(side_db)
    tally: Counter[str] = Counter()
    for wid in ids:
        assert_settled(engine, wid)
        mine = [(k, pid) for w, k, pid in runs if w == wid]
        assert sorted(k for k, _ in mine) == ["a", "b", "c"], (wid, mine)
        (winner,) = {pid for _, pid in mine}
        assert (winner, "returned") in outcomes[wid], outcomes[wid]
        losers = [o for pid, o in outcomes[wid] if pid != winner]
        assert all(o in ("error:WorkflowBusy", "returned") for o in losers), losers
        tally.update(losers)
        steps = [h.statement for h in engine.history(wid) if h.kind == "step"]
        assert steps == ["a", "b", "c"]
    print(f"execute vs execute, losers: {dict(tally)}")
    store.close()


def test_a_late_set_up_does_not_reopen_a_wait_another_process_closed(db_url: str) -> None:
    """A set-up outlives its session's lease; meanwhile another process takes the workflow
    over, handles the wait and fails to tear it down. The late set-up's result must not
    turn the closed wait back into an open one (it would stay in the inbox for good, never
    torn down)."""
    store = SQLModelStore(db_url)
    chat = ChatManager(down=True)
    engine = Engine(store, WORKFLOWS, managers={"user_action": chat}, resumer=PollingResumer())
    wid = engine.new_workflow(Approval(), "late")
    ctx = multiprocessing.get_context("spawn")
    slow = ctx.Process(target=slow_setup_session, args=(db_url, wid, 0.3, 1.5))
    slow.start()
    deadline = time.monotonic() + 30
    while not store.load_waits(wid):  # the slow session has armed the wait: set-up begins
        assert time.monotonic() < deadline and slow.is_alive()
        time.sleep(0.02)
    time.sleep(0.6)  # its 0.3 s lease is over; its set-up still runs
    engine.on_callback(wid, "approve", {"approved": True}, actor="user")
    assert [w.status for w in store.load_waits(wid)] == [WaitStatus.TEARDOWN_ERROR]
    slow.join(timeout=30)
    assert slow.exitcode == 0
    # The set-up has returned: its outcome is not written over the closed wait.
    assert [w.status for w in store.load_waits(wid)] == [WaitStatus.TEARDOWN_ERROR]
    assert engine.pending_waits(wid) == []
    chat.down = False
    engine.execute(wid)
    time.sleep(1.1)  # the tear-down's retry back-off
    engine.run_due()
    assert_settled(engine, wid)
    assert engine.get(wid).state.approvals == 1
    store.close()


def test_a_timer_another_worker_fired_first_is_not_reported_as_a_problem(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two workers read the same due timer; the second to fire it finds it taken. That is the
    race going as it should: nothing to log as a warning, nothing counted as handled."""
    monkeypatch.setenv("GORCH_SIDE_DB", str(tmp_path / "side.db"))
    store = SQLModelStore(db_url)
    engine = Engine(store, WORKFLOWS, resumer=PollingResumer())
    wid = engine.new_workflow(Deadline(key="t"), "t")
    engine.execute(wid)
    seen = store.due_waits(engine.clock.now())  # the second worker's read, before the first fires
    assert [w.event for w in seen] == ["expire"]
    assert engine.run_due() == 2  # the first worker: the timer, then the workflow
    monkeypatch.setattr(store, "due_waits", lambda now, limit=None: seen)
    with caplog.at_level("INFO", logger="gorch"):
        assert engine.run_due() == 0
    assert [r.getMessage() for r in caplog.records if r.levelname != "DEBUG"] == []
    assert [h.actor for h in engine.history(wid) if h.kind == "callback"] == ["timer"]
    store.close()


def test_the_heartbeat_warns_of_leases_taken_over_not_of_leases_given_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The heartbeat renews from a snapshot of the running sessions; a session may end (and
    give its lease back) between the snapshot and the renewal. Only a lease that another
    process holds now is worth a warning."""
    store = MemoryStore()
    engine = Engine(store, WORKFLOWS, resumer=PollingResumer(), lease=timedelta(seconds=0.15))
    ended, taken = (
        engine.new_workflow(Approval(), "ended"),
        engine.new_workflow(Approval(), "taken"),
    )
    now = engine.clock.now()
    store.acquire(taken, "another-worker", now=now, until=now + timedelta(hours=1))
    engine.active.update({"session-1": ended, "session-2": taken})  # ended's lease is free
    with caplog.at_level("DEBUG", logger="gorch.worker"), renewing_leases(engine):
        time.sleep(0.2)
    warned = {r.getMessage().split(":")[0] for r in caplog.records if r.levelname == "WARNING"}
    assert warned == {"lease of taken"}
    assert any("lease of ended" in r.getMessage() for r in caplog.records)
