"""A workflow app for the fault-injection suite (tests/engine/faults).

``FaultFlow`` exercises everything a checkpoint carries: steps in a loop, a goroutine with a
loop of its own, a step that fails its first attempt (a retry back-off), two waits with
callback managers (an approval that races a durable timer, and a typed event), a
``WaitFor`` on the goroutine, and a final step.

Every step and handler appends its key to ``state.done`` (what the checkpoints kept) and
records each execution in ``LEDGER``, a plain list outside the store that no rollback can
undo. Comparing the two tells a step that ran again because its checkpoint never committed
(allowed) from a checkpointed step that ran again (a duplicate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from pydantic import BaseModel

from engine import (
    Event,
    For,
    Go,
    On,
    RetryPolicy,
    S,
    Section,
    Step,
    Timeout,
    Wait,
    WaitFor,
    WaitForUserAction,
    Workflow,
    current_attempt,
)

APPROVE, DENY, TIMEOUT, CANCEL = "approve", "deny", "timeout", "cancel"
PATHS = (APPROVE, DENY, TIMEOUT, CANCEL)
"""How a workflow's approval ends: approved, denied, timed out, or approved and then
cancelled by an operator while it waits for its data."""
TIMER = timedelta(seconds=60)
"""How long a ``timeout`` workflow's approval waits; the others wait 30 days."""


@dataclass
class Run:
    """One execution of a step or handler and the fate of the checkpoint that carried it.

    ``pending`` until that checkpoint was tried; then ``uncommitted`` if it failed.
    """

    workflow: str
    key: str
    pending: bool = True
    uncommitted: bool = False


@dataclass
class Ledger:
    """Every execution of every step and handler, in order, kept outside the store."""

    runs: list[Run] = field(default_factory=list)
    failed_attempts: int = 0  # first attempts of the flaky step, which raise on purpose

    def record(self, workflow: str, key: str) -> None:
        self.runs.append(Run(workflow, key))

    def last(self, workflow: str) -> Run | None:
        """The latest execution in ``workflow``: the one a checkpoint being written is for."""
        return next((r for r in reversed(self.runs) if r.workflow == workflow), None)

    def clear(self) -> None:
        self.runs.clear()
        self.failed_attempts = 0


LEDGER = Ledger()


class Data(BaseModel):
    """Input of the ``data`` event."""

    value: int


class FaultFlow(Workflow):
    """Steps, a goroutine, a retried step, an approval racing a timer, an event, a WaitFor."""

    key: str
    path: str = APPROVE
    n: int = 3
    i: int = 0
    s: int = 0
    value: int = 0
    done: list[str] = []

    def definition(self) -> Section:
        timer = TIMER if self.path == TIMEOUT else timedelta(days=30)
        return S(
            Step("start", self.start),
            Go("side", S(For("side loop", self.s < 2, Step("side step", self.side_step))),
               id="side"),
            For("loop", self.i < self.n, Step("work", self.work)),
            Step("flaky", self.flaky, retry=RetryPolicy(max_attempts=50)),
            Wait("approval",
                On("approve", WaitForUserAction(approve=self.approve, deny=self.deny)),
                On("late", Timeout(after=timer), Step("note timeout", self.note_timeout)),
            ),
            Wait("data", On("data", Event(model=Data, handle=self.got_data))),
            WaitFor("side finished", lambda: self.s >= 2),
            Step("final", self.final),
        )  # fmt: skip

    def _ran(self, key: str) -> None:
        LEDGER.record(self.key, key)
        self.done.append(key)

    def start(self) -> None:
        self._ran("start")

    def work(self) -> None:
        self._ran(f"work:{self.i}")
        self.i += 1

    def side_step(self) -> None:
        self._ran(f"side:{self.s}")
        self.s += 1

    def flaky(self) -> None:
        if current_attempt() == 1:
            LEDGER.failed_attempts += 1
            raise ConnectionError("the first attempt of this step always fails")
        self._ran("flaky")

    def approve(self) -> None:
        self._ran("approve")

    def deny(self, reason: str) -> None:
        self._ran("deny")

    def note_timeout(self) -> None:
        self._ran("note timeout")

    def got_data(self, data: Data) -> None:
        self._ran("data")
        self.value = data.value

    def final(self) -> None:
        self._ran("final")


def expected_keys(path: str, n: int = 3) -> list[str]:
    """The keys ``state.done`` must end with, each once, for a workflow on ``path``."""
    keys = ["start", "side:0", "side:1", "flaky"] + [f"work:{i}" for i in range(n)]
    keys += [] if path == CANCEL else ["data", "final"]
    keys.append({DENY: "deny", TIMEOUT: "note timeout"}.get(path, "approve"))
    return sorted(keys)


WORKFLOWS = [FaultFlow]
