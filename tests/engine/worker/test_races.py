"""Races between processes: exactly one winner, and the losers get a clear GorchError."""

from __future__ import annotations

import multiprocessing
import sys
from collections import defaultdict
from pathlib import Path

from engine import Engine, PollingResumer, SQLModelStore

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps"))
from race_app import Approval, deliver_rounds

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
