"""A workflow app for crash tests: every step records its own execution in a side table.

The side table lives in its own SQLite file (``GORCH_SIDE_DB``), written by the step itself
in autocommit, so it sees every execution, including those whose checkpoint never happened.

Its approvals are set up by the expense example's ``ApprovalMessages`` on a chat kept in the
same file (``SideChat``: tables ``posts`` and ``edits``), so a crash test sees every message
a set-up posted and which message each tear-down edited (its set-up data).
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from engine import (
    CallbackManager,
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
from engine.examples import ApprovalMessages


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


def _side(sql: str, params: tuple[object, ...]) -> int | None:
    con = sqlite3.connect(os.environ["GORCH_SIDE_DB"], timeout=30, isolation_level=None)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS posts (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                    "channel TEXT, text TEXT, pid INTEGER)")  # fmt: skip
        con.execute("CREATE TABLE IF NOT EXISTS edits (message TEXT, text TEXT, pid INTEGER)")
        return con.execute(sql, params).lastrowid
    finally:
        con.close()


class SideChat:
    """A chat whose messages and edits go to the side file, seen from every process."""

    def post(self, channel: str, text: str) -> str:
        row = _side("INSERT INTO posts (channel, text, pid) VALUES (?, ?, ?)",
                    (channel, text, os.getpid()))  # fmt: skip
        # A crash test's window: posted, but its id not yet returned (so not yet stored).
        time.sleep(float(os.environ.get("GORCH_POST_PAUSE", "0")))
        return str(row)

    def update(self, channel: str, message_id: str, text: str) -> None:
        _side("INSERT INTO edits VALUES (?, ?, ?)", (message_id, text, os.getpid()))


def side_chat(side_db: Path) -> tuple[list[tuple[str, str, int]], list[tuple[str, str]]]:
    """(every post as (message id, text, pid), every edit as (message id, text)), in order."""
    if not side_db.exists():
        return [], []
    con = sqlite3.connect(side_db, timeout=30)
    try:
        posts = [(str(i), t, p) for i, t, p in con.execute("SELECT id, text, pid FROM posts")]
        edits = list(con.execute("SELECT message, text FROM edits ORDER BY rowid"))
        return posts, edits
    except sqlite3.OperationalError as e:
        if "no such table" not in str(e):
            raise
        return [], []
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
MANAGERS: dict[str, CallbackManager] = {"user_action": ApprovalMessages(SideChat())}
