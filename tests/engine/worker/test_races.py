"""Races between processes: exactly one winner, and the losers get a clear GorchError."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from engine import Engine, PollingResumer, SQLModelStore, WorkflowStatus

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))
from crash_app import Crashy
from race_app import Approval, deliver_rounds

APPS = Path(__file__).resolve().parents[2] / "apps"

PROCESSES = 4
ROUNDS = 25


def test_same_callback_from_many_processes_has_one_winner(db_url: str) -> None:
    store = SQLModelStore(db_url)
    engine = Engine(store, [Approval], resumer=PollingResumer())
    ids = [engine.new_workflow(Approval(), f"race-{i}") for i in range(ROUNDS)]
    for wid in ids:
        engine.execute(wid)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=deliver_rounds, args=(db_url, ids, barrier, results, f"p{i}"))
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
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
