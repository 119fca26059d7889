"""The seed's expense approval: approve, deny with a reason, or time out after ten minutes."""

from __future__ import annotations

import logging
from datetime import timedelta

from engine import (
    Go,
    If,
    On,
    Return,
    S,
    Section,
    Step,
    Timeout,
    Wait,
    WaitForUserAction,
    Workflow,
)

log = logging.getLogger("gorch.examples")


class Expense(Workflow):
    """An expense claim that a manager approves or denies within ten minutes."""

    amount: int = 0
    requester: str = ""
    approved: bool = False
    notified: bool = False
    error: str = ""

    def definition(self) -> Section:
        return S(
            Step("first action", self.log_start),
            Go("notification goroutine", S(
                Step("parallel thread", self.notify),
            ), id="g1"),
            Wait("waiting for approval",
                On("slackApproval", WaitForUserAction(approve=self.approve, deny=self.deny)),
                On("timeout", Timeout(after=timedelta(minutes=10)),
                    Step("abort workflow", self.abort),
                    Return(error="workflow finished with timeout"),
                ),
            ),
            If(self.approved, Return({"approved": self.amount})),
            Return(error=f"workflow was not approved: {self.error}"),
        )  # fmt: skip

    def log_start(self) -> None:
        log.info("expense of %s by %r has started", self.amount, self.requester)

    def notify(self) -> None:
        self.notified = True  # a real workflow would post to Slack here

    def approve(self) -> None:
        self.approved = True

    def deny(self, reason: str) -> None:
        self.approved, self.error = False, reason

    def abort(self) -> None:
        self.approved, self.error = False, "approval timed out"
