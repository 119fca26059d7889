"""A Celery app for the resumer tests: gorch's tasks on a queue of the test's own.

Configured by the environment of the worker the test starts: ``GORCH_BROKER_URL``,
``GORCH_QUEUE`` (so tests sharing the machine's Redis never take each other's messages),
``GORCH_DB_URL``, ``GORCH_SWEEP_S`` (the sweep's period), ``GORCH_LEASE_S`` (the engine's
lease), ``GORCH_ACKS_LATE`` (app-wide late acknowledgement) and ``GORCH_SIDE_DB`` (the side
table of ``crash_app.record``, which counts step executions).
"""

from __future__ import annotations

import os
from datetime import timedelta

from celery import Celery
from crash_app import Crashy, Slow, record

from engine import (
    Engine,
    Go,
    If,
    On,
    Return,
    S,
    Section,
    SQLModelStore,
    Step,
    Timeout,
    Wait,
    WaitForUserAction,
    Workflow,
)
from engine.examples import Expense
from engine.resumers.celery import CeleryResumer, register_tasks


class QuickExpense(Workflow):
    """The expense example with a one-second timeout; every step is counted by ``record``."""

    key: str
    amount: int = 0
    approved: bool = False
    error: str = ""

    def definition(self) -> Section:
        return S(
            Step("first action", lambda: record(self.key, "first action")),
            Go("notification goroutine", S(
                Step("parallel thread", lambda: record(self.key, "parallel thread")),
            ), id="g1"),
            Wait("waiting for approval",
                On("slackApproval", WaitForUserAction(approve=self.approve, deny=self.deny)),
                On("timeout", Timeout(after=timedelta(seconds=1)),
                    Step("abort workflow", self.abort),
                    Return(error="workflow finished with timeout"),
                ),
            ),
            If(self.approved, Return({"approved": self.amount})),
            Return(error=f"workflow was not approved: {self.error}"),
        )  # fmt: skip

    def approve(self) -> None:
        self.approved = True

    def deny(self, reason: str) -> None:
        self.approved, self.error = False, reason

    def abort(self) -> None:
        record(self.key, "abort workflow")
        self.approved, self.error = False, "approval timed out"


WORKFLOWS = [Expense, QuickExpense, Crashy, Slow]

app = Celery("gorch_tests", broker=os.environ.get("GORCH_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_default_queue=os.environ.get("GORCH_QUEUE", "gorch"),
    broker_connection_retry_on_startup=True,
)
if os.environ.get("GORCH_ACKS_LATE"):
    # An app that acknowledges its own tasks late, and (Celery 6's default) cancels those still
    # running when the broker connection drops: gorch's tasks must not follow.
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )


def make_engine() -> Engine:
    lease = timedelta(seconds=float(os.environ.get("GORCH_LEASE_S", "300")))
    return Engine(
        SQLModelStore(os.environ["GORCH_DB_URL"]),
        WORKFLOWS,
        resumer=CeleryResumer(app),
        lease=lease,
    )


tasks = register_tasks(
    app, make_engine, sweep_every=timedelta(seconds=float(os.environ.get("GORCH_SWEEP_S", "60")))
)
