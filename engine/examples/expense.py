"""The seed's expense approval: approve, deny with a reason, or time out after ten minutes.

Who decides: the people (or ``role:NAME`` entries) in ``approvers`` (empty: anyone), never
the requester (separation of duties, enforced by the engine). The inbox card shows the amount
and the requester (``summary()``); a start form asks for the amount, the requester and the
approvers only (the other fields are the workflow's own, ``{"input": False}``).

``ApprovalMessages`` is a callback manager for its approval, showing set-up data: its
``setup`` posts a message to a chat and returns the message's id, which gorch keeps with the
wait; its ``teardown`` edits that very message to say how the wait ended. It keeps no storage
of its own. Use it with ``Engine(..., managers={"user_action": ApprovalMessages(chat)})``.
"""

from __future__ import annotations

import itertools
import logging
import threading
from datetime import timedelta
from typing import Any, Protocol

from pydantic import Field

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
    WaitInfo,
    Workflow,
)

log = logging.getLogger("gorch.examples")


class Expense(Workflow):
    """An expense claim that a manager approves or denies within ten minutes."""

    amount: int = 0
    requester: str = ""
    approvers: list[str] = Field(
        default_factory=list,
        description="who may approve: people, or role:NAME for a role (empty: anyone but the "
        "requester)",
    )
    approved: bool = Field(default=False, json_schema_extra={"input": False})
    notified: bool = Field(default=False, json_schema_extra={"input": False})
    error: str = Field(default="", json_schema_extra={"input": False})

    def definition(self) -> Section:
        return S(
            Step("first action", self.log_start),
            Go("notification goroutine", S(
                Step("parallel thread", self.notify),
            ), id="g1"),
            Wait("waiting for approval",
                On("slackApproval", WaitForUserAction(
                    approve=self.approve, deny=self.deny, assignees=self.approvers,
                )),
                On("timeout", Timeout(after=timedelta(minutes=10)),
                    Step("abort workflow", self.abort),
                    Return(error="workflow finished with timeout"),
                ),
            ),
            If(self.approved, Return({"approved": self.amount})),
            Return(error=f"workflow was not approved: {self.error}"),
        )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """What an approver sees on the inbox card."""
        return {"amount": self.amount, "requester": self.requester}

    def excluded_actors(self) -> list[str]:
        """The requester never approves their own expense."""
        return [self.requester] if self.requester.strip() else []

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


class ChatService(Protocol):
    """What ``ApprovalMessages`` needs from a chat service (Slack's chat.postMessage and
    chat.update)."""

    def post(self, channel: str, text: str) -> str:
        """Post ``text`` to ``channel``; return the new message's id."""
        ...

    def update(self, channel: str, message_id: str, text: str) -> None:
        """Replace the text of a message posted before."""
        ...


class Chat:
    """A stand-in chat service in this process's memory: ``messages`` by id."""

    def __init__(self) -> None:
        self.messages: dict[str, tuple[str, str]] = {}  # id -> (channel, text)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def post(self, channel: str, text: str) -> str:
        with self._lock:
            message_id = f"msg-{next(self._ids)}"
            self.messages[message_id] = (channel, text)
        log.info("posted %s to %s: %s", message_id, channel, text)
        return message_id

    def update(self, channel: str, message_id: str, text: str) -> None:
        with self._lock:
            self.messages[message_id] = (channel, text)
        log.info("updated %s in %s: %s", message_id, channel, text)


class ApprovalMessages:
    """A ``CallbackManager`` for ``user_action`` waits that asks for approval in a chat.

    ``setup`` posts the request and returns ``{"channel": ..., "message": id}``: gorch stores
    it with the wait (``WaitInfo.setup_data``) in the write that marks the wait set up, and
    hands it back to ``teardown``, which edits that message with the outcome. A set-up whose
    write was lost (a crash right after posting) is set up again: the chat may then show an
    extra request, which is what at-least-once set-ups cost.

    Args:
        chat: where to post (default: a ``Chat`` in memory).
        channel: the channel to post to.
    """

    def __init__(self, chat: ChatService | None = None, channel: str = "#approvals") -> None:
        self.chat: ChatService = chat if chat is not None else Chat()
        self.channel = channel

    def setup(self, wait: WaitInfo) -> dict[str, Any]:
        text = f"{wait.workflow_id}: {wait.wait!r} needs your approval (event {wait.event!r})"
        return {"channel": self.channel, "message": self.chat.post(self.channel, text)}

    def teardown(self, wait: WaitInfo, handled: bool) -> None:
        data = wait.setup_data
        if not isinstance(data, dict) or "message" not in data:
            return  # never posted: the wait ended before its set-up succeeded
        outcome = "answered" if handled else "closed: no longer needed"
        self.chat.update(data["channel"], data["message"], f"{wait.workflow_id}: {outcome}")
