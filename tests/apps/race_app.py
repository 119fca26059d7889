"""Helpers for race tests, run in separate processes (multiprocessing, spawn), and the app of
the workers they start (``--app race_app``; steps record themselves through ``crash_app``)."""

from __future__ import annotations

import os
import random
import time
from datetime import timedelta
from typing import Any

from crash_app import record

from engine import (
    CallbackRejected,
    Engine,
    For,
    GorchError,
    On,
    PollingResumer,
    S,
    Section,
    SQLModelStore,
    Step,
    Timeout,
    Wait,
    WaitForUserAction,
    WaitInfo,
    Workflow,
)


class Approval(Workflow):
    """Waits for one approval; counts how many times the handler ran."""

    approvals: int = 0
    by: str = ""

    def definition(self) -> Section:
        return S(Wait("approval", On("approve", WaitForUserAction(
            approve=self.approve, deny=lambda reason: None))))  # fmt: skip

    def approve(self) -> None:
        self.approvals += 1


def deliver_rounds(url: str, ids: list[str], barrier: Any, results: Any, name: str) -> None:
    """For each id: wait at the barrier with the other processes, then deliver the callback."""
    engine = Engine(SQLModelStore(url, migrate=False), [Approval], resumer=PollingResumer())
    for wid in ids:
        barrier.wait()
        try:
            engine.on_callback(wid, "approve", {"approved": True}, actor=name)
            results.put((wid, name, "won"))
        except CallbackRejected as e:
            results.put((wid, name, f"rejected:{e.reason}"))
        except GorchError as e:
            results.put((wid, name, f"error:{type(e).__name__}"))


class Deadline(Workflow):
    """Waits for an approval or a timer, whichever comes first; each branch records itself."""

    key: str
    timeout_s: float = 0.0
    approved: bool = False
    expired: bool = False

    def definition(self) -> Section:
        return S(
            Wait("decision",
                On("approve", WaitForUserAction(approve=self.approve, deny=lambda reason: None)),
                On("expire", Timeout(after=timedelta(seconds=self.timeout_s)),
                   Step("expired", self.expire)),
            ),
            Step("done", self.done),
        )  # fmt: skip

    def approve(self) -> None:
        self.approved = True

    def expire(self) -> None:
        record(self.key, "expired")
        self.expired = True

    def done(self) -> None:
        record(self.key, "done")


class Looper(Workflow):
    """A loop of steps, each followed by a timer due at once: many short sessions in a row."""

    key: str
    n: int = 5
    i: int = 0

    def definition(self) -> Section:
        return S(
            For("loop", self.i < self.n,
                Step("work", self.work),
                Wait("pause", On("tick", Timeout(after=timedelta(0))))),
            Step("final", self.final),
        )  # fmt: skip

    def work(self) -> None:
        record(self.key, f"work:{self.i}")
        time.sleep(random.uniform(0.01, 0.04))  # long enough for an operator to find it busy
        self.i += 1

    def final(self) -> None:
        record(self.key, "final")


class Triple(Workflow):
    """Three slow steps in a row, so that racers arrive while the first one runs them."""

    key: str

    def definition(self) -> Section:
        return S(Step("a", lambda: self.slow("a")), Step("b", lambda: self.slow("b")),
                 Step("c", lambda: self.slow("c")))  # fmt: skip

    def slow(self, name: str) -> None:
        record(self.key, name)
        time.sleep(0.05)


WORKFLOWS = [Approval, Deadline, Looper, Triple]


def _engine(url: str) -> Engine:
    return Engine(SQLModelStore(url, migrate=False), WORKFLOWS, resumer=PollingResumer())


def _outcome(e: GorchError) -> str:
    if isinstance(e, CallbackRejected):
        return f"rejected:{e.reason}"
    return f"error:{type(e).__name__}"


def approve_rounds(url: str, ids: list[str], barrier: Any, results: Any, seed: int) -> None:
    """For each id: wait at the barrier, sleep a random few ms, then approve."""
    engine, rng = _engine(url), random.Random(seed)
    for wid in ids:
        barrier.wait()
        time.sleep(rng.uniform(0.0, 0.02))
        try:
            engine.on_callback(wid, "approve", {"approved": True}, actor="user")
            results.put((wid, "user", "won"))
        except GorchError as e:
            results.put((wid, "user", _outcome(e)))


def run_due_rounds(url: str, ids: list[str], barrier: Any, results: Any, seed: int) -> None:
    """For each id: wait at the barrier, sleep a random few ms, then run what is due (the
    worker's code: it fires the round's timer, unless the approval came first)."""
    engine, rng = _engine(url), random.Random(seed)
    for wid in ids:
        barrier.wait()
        time.sleep(rng.uniform(0.0, 0.02))
        try:
            results.put((wid, "timer", f"handled:{engine.run_due()}"))
        except GorchError as e:
            results.put((wid, "timer", _outcome(e)))


def execute_rounds(url: str, ids: list[str], barrier: Any, results: Any, name: str) -> None:
    """For each id: wait at the barrier with the other racers, then execute it."""
    engine = _engine(url)
    for wid in ids:
        barrier.wait()
        try:
            engine.execute(wid)
            results.put((wid, name, os.getpid(), "returned"))
        except GorchError as e:
            results.put((wid, name, os.getpid(), _outcome(e)))


class ChatManager:
    """A callback manager for a chat system: its set-up takes ``setup_s`` seconds, and its
    tear-down fails while ``down``."""

    def __init__(self, *, setup_s: float = 0.0, down: bool = False) -> None:
        self.setup_s = setup_s
        self.down = down

    def setup(self, wait: WaitInfo) -> None:
        time.sleep(self.setup_s)

    def teardown(self, wait: WaitInfo, handled: bool) -> None:
        if self.down:
            raise ConnectionError("chat API down")


def slow_setup_session(url: str, wid: str, lease_s: float, setup_s: float) -> None:
    """Execute ``wid`` with a lease shorter than its wait's set-up (an inline engine: no
    worker renews the lease meanwhile)."""
    engine = Engine(
        SQLModelStore(url, migrate=False),
        WORKFLOWS,
        managers={"user_action": ChatManager(setup_s=setup_s)},
        resumer=PollingResumer(),
        lease=timedelta(seconds=lease_s),
    )
    engine.execute(wid)
