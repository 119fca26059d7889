"""A workflow app for crash tests: every step records its own execution in a side table.

The side table lives in its own SQLite file (``GORCH_SIDE_DB``), written by the step itself
in autocommit, so it sees every execution, including those whose checkpoint never happened.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from engine import (
    For,
    Go,
    On,
    S,
    Section,
    Step,
    Timeout,
    Wait,
    WaitForUserAction,
    Workflow,
)


def record(workflow: str, key: str) -> None:
    """Append one execution of step ``key`` of ``workflow`` by this process, and when."""
    con = sqlite3.connect(os.environ["GORCH_SIDE_DB"], timeout=30, isolation_level=None)
    try:
        con.execute(
            "CREATE TABLE IF NOT EXISTS runs (workflow TEXT, key TEXT, pid INTEGER, at REAL)"
        )
        con.execute(
            "INSERT INTO runs (workflow, key, pid, at) VALUES (?, ?, ?, ?)",
            (workflow, key, os.getpid(), time.time()),
        )
    finally:
        con.close()


def side_runs(side_db: Path) -> list[tuple[str, str, int]]:
    """Every execution ``record`` wrote, in order; none before the first one."""
    if not side_db.exists():
        return []
    con = sqlite3.connect(side_db, timeout=30)
    try:
        return list(con.execute("SELECT workflow, key, pid FROM runs ORDER BY rowid"))
    except sqlite3.OperationalError as e:  # a step has created the file, not yet its table
        if "no such table" not in str(e):
            raise
        return []
    finally:
        con.close()


class Crashy(Workflow):
    """Loops over slow steps, runs a goroutine, then waits for approval or a short timeout."""

    key: str
    n: int = 5
    i: int = 0
    approved: bool = False
    timed_out: bool = False
    side: bool = False
    timeout_s: float = 1.0

    def definition(self) -> Section:
        return S(
            For("loop", self.i < self.n, Step("work", self.work)),
            Go("side thread", S(Step("side work", self.side_work)), id="side"),
            Wait("approval",
                On("approve", WaitForUserAction(approve=self.approve, deny=self.deny)),
                On("late", Timeout(after=timedelta(seconds=self.timeout_s)),
                   Step("note timeout", self.note_timeout)),
            ),
            Step("final", self.final),
        )  # fmt: skip

    def _slow(self, key: str) -> None:
        record(self.key, key)
        time.sleep(random.uniform(0.0, 0.05))

    def work(self) -> None:
        self._slow(f"work:{self.i}")
        self.i += 1

    def side_work(self) -> None:
        self._slow("side work")
        self.side = True

    def approve(self) -> None:
        self.approved = True

    def deny(self, reason: str) -> None:
        self.approved = False

    def note_timeout(self) -> None:
        self._slow("note timeout")
        self.timed_out = True

    def final(self) -> None:
        self._slow("final")


class Slow(Workflow):
    """One long step, for clean-shutdown tests."""

    key: str
    seconds: float = 2.0
    done: bool = False

    def definition(self) -> Section:
        return S(Step("long step", self.long_step))

    def long_step(self) -> None:
        record(self.key, "long step")
        time.sleep(self.seconds)
        self.done = True


WORKFLOWS = [Crashy, Slow]
