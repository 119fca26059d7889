"""The workflow page's "try it" sandbox and timeline, as plain Python over the engine's API.

A ``Trial`` holds an ``Engine.fork`` of one workflow: a scratch engine over memory that
shares nothing with the real store, whose callback managers only record. Everything done to a
trial happens there and nowhere else, so any user may do it, viewers included: it changes
nothing. The page keeps trials in the browser session (``st.session_state``), so they end
with it; nothing here imports streamlit (tests call it directly).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from engine import (
    Engine,
    GorchError,
    HandlerType,
    InvalidOperation,
    ManualClock,
    Sandbox,
    TimelinePoint,
    WaitInfo,
    WorkflowInfo,
)
from engine import graph as gorch_graph
from gorch_ui.services import goto_targets, history_rows

SANDBOX_ACTOR = "sandbox"
"""Who the sandbox's history records (with the user's name, when one is known)."""

MAX_TRIALS = 5
"""At most this many sandboxes live in one browser session; the oldest goes first."""


@dataclass
class Trial:
    """One sandbox fork of one workflow.

    Attributes:
        engine: the fork (``Engine.fork``): its store is memory, its clock manual.
        workflow_id: the workflow forked (the same id in the fork).
        skip_steps: whether the fork records steps as skipped instead of calling their code.
        log: what was tried, in order (shown with the sandbox).
    """

    engine: Engine
    workflow_id: str
    skip_steps: bool
    log: list[str] = field(default_factory=list)

    @property
    def sandbox(self) -> Sandbox:
        """What the fork is a copy of and what it did (set by ``Engine.fork``)."""
        if self.engine.sandbox is None:  # pragma: no cover - always set by Engine.fork
            raise InvalidOperation("not a sandbox engine")
        return self.engine.sandbox


def start(engine: Engine, workflow_id: str, *, skip_steps: bool = True) -> Trial:
    """Fork the workflow into a new sandbox (at the real engine's now).

    Raises:
        WorkflowNotFound: no such workflow.
    """
    fork = engine.fork(workflow_id, skip_steps=skip_steps or None)
    return Trial(fork, workflow_id, skip_steps)


@dataclass(frozen=True)
class TrialView:
    """What the sandbox panel shows."""

    info: WorkflowInfo[Any]
    waits: list[WaitInfo]
    dot: str | None
    graph_error: str | None
    history: list[dict[str, Any]]  # the fork's own lines (after the copy), newest first
    targets: dict[str, list[str]]
    ran: list[str]  # steps whose real code ran in the sandbox
    skipped: list[str]
    would: list[str]  # set-ups and tear-downs not done for real
    now: str


def view(trial: Trial) -> TrialView:
    """The fork as it stands: graph (no links: a click must never reach the real workflow),
    its own history, the steps that ran real code and what the managers were spared."""
    e, wid = trial.engine, trial.workflow_id
    info = e.get(wid)
    # approve / deny first: what an operator most often tries
    waits = sorted(e.pending_waits(wid), key=lambda w: (not user_action(w), w.event, w.thread_id))
    history = e.history(wid)
    sandbox = trial.sandbox
    dot = error = None
    targets: dict[str, list[str]] = {}
    if info.state is not None:
        try:
            g = gorch_graph.definition_graph(info.state.definition())
            targets = {} if info.status.done else goto_targets(g, info)
            dot = gorch_graph.to_dot(
                g,
                gorch_graph.Overlay(info, waits, history),
                title=f"SANDBOX {info.type} {info.id} — {info.status.value}",
            ).source
        except Exception as ex:  # a definition that raises must not hide the rest
            error = f"{type(ex).__name__}: {ex}"
    else:
        error = f"the state does not load: {info.state_error}"
    would = [
        f"{c.call.value} of {c.type} wait {c.wait!r} / {c.event!r} on thread {c.thread}"
        + ("" if c.handled is None else (" (its event won)" if c.handled else " (closed)"))
        for c in sandbox.calls
    ]
    return TrialView(
        info,
        waits,
        dot,
        error,
        history_rows(history[sandbox.forked_at :]),
        targets,
        list(sandbox.ran),
        list(sandbox.skipped),
        would,
        e.clock.now().strftime("%Y-%m-%d %H:%M:%S %Z"),
    )


def _who(user: str | None) -> str:
    return f"{SANDBOX_ACTOR}:{user}" if user else SANDBOX_ACTOR


def _wait(trial: Trial, key: str) -> WaitInfo:
    """The open wait of the fork that ``key`` (``wait_key``) names."""
    for w in trial.engine.pending_waits(trial.workflow_id):
        if wait_key(w) == key:
            return w
    raise InvalidOperation(f"the sandbox has no open wait {key!r} any more")


def wait_key(w: WaitInfo) -> str:
    """A stable name for an open wait, for a select box."""
    return f"{w.event} · {w.type} · thread {w.thread_id}"


def _after(trial: Trial, what: str) -> str:
    info = trial.engine.get(trial.workflow_id)
    message = f"{what}: the sandbox is now {info.status.value}"
    if info.error:
        message += f" (error: {info.error})"
    elif info.result is not None:
        message += f" (result: {json.dumps(info.result, default=str)})"
    trial.log.append(message)
    return message


def approve(trial: Trial, wait: str, reason: str = "", *, user: str | None = None) -> str:
    """Approve the sandbox's user-action wait ``wait`` (a ``wait_key``)."""
    w = _wait(trial, wait)
    body: dict[str, Any] = {"approved": True}
    if reason:
        body["reason"] = reason
    trial.engine.on_callback(trial.workflow_id, w.event, body, actor=_who(user), thread=w.thread_id)
    return _after(trial, f"approved {w.event!r}")


def deny(trial: Trial, wait: str, reason: str, *, user: str | None = None) -> str:
    """Deny the sandbox's user-action wait ``wait`` with ``reason``."""
    w = _wait(trial, wait)
    body = {"approved": False, "reason": reason}
    trial.engine.on_callback(trial.workflow_id, w.event, body, actor=_who(user), thread=w.thread_id)
    return _after(trial, f"denied {w.event!r}")


def send(trial: Trial, wait: str, input_json: str, *, user: str | None = None) -> str:
    """Deliver the event of wait ``wait`` with ``input_json`` (JSON text; empty: none).

    Raises:
        InvalidOperation: the input is not JSON.
        CallbackRejected: the handler refused it (nothing changed in the sandbox).
    """
    w = _wait(trial, wait)
    try:
        data = json.loads(input_json) if input_json.strip() else None
    except ValueError as e:
        raise InvalidOperation(f"the input is not JSON: {e}") from None
    trial.engine.on_callback(trial.workflow_id, w.event, data, actor=_who(user), thread=w.thread_id)
    return _after(trial, f"sent {w.event!r}")


def goto(trial: Trial, thread: str, statement: str, *, user: str | None = None) -> str:
    """Move a thread of the sandbox onto ``statement``; it runs from there."""
    trial.engine.goto(trial.workflow_id, thread, statement, _who(user), "tried in the sandbox")
    return _after(trial, f"moved thread {thread!r} to {statement!r}")


def advance(trial: Trial, minutes: float) -> str:
    """Move the sandbox's clock forward and run what falls due (timers, retries)."""
    clock = trial.engine.clock
    if not isinstance(clock, ManualClock):  # pragma: no cover - Engine.fork makes one
        raise InvalidOperation("the sandbox's clock cannot be moved")
    if not minutes or minutes <= 0:
        raise InvalidOperation(f"advance the clock by a positive number of minutes, not {minutes}")
    clock.advance(timedelta(minutes=minutes))
    trial.engine.run_due()
    return _after(trial, f"advanced the clock {minutes:g} min")


def user_action(w: WaitInfo) -> bool:
    """Whether approve / deny apply to this wait."""
    return w.type == HandlerType.USER_ACTION


# -- timeline -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineView:
    """One point of the timeline, drawn."""

    point: TimelinePoint
    count: int
    dot: str | None
    caption: str


def timeline(engine: Engine, workflow_id: str, at: int | None = None) -> TimelineView:
    """The graph as it stood right after history line ``at`` (default: the last).

    Raises:
        WorkflowNotFound: no such workflow.
        InvalidOperation: ``at`` is not a line of its history.
    """
    info = engine.get(workflow_id)
    points = engine.timeline(workflow_id)
    if at is None:
        at = len(points) - 1
    if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at < len(points):
        raise InvalidOperation(
            f"line {at!r} is not in the history of {workflow_id!r} (0 to {len(points) - 1})"
        )
    point = points[at]
    past = point.info(info)
    dot = None
    if info.state is not None:
        try:
            dot = gorch_graph.workflow_dot(
                info.state.definition(),
                past,
                (),
                [p.entry for p in points[: at + 1]],
                title=f"{info.type} {info.id} — after line {at}: {point.status.value}",
            ).source
        except GorchError:
            dot = None
    h = point.entry
    where = " · ".join(x for x in (h.thread, h.statement) if x)
    caption = f"line {at} of {len(points) - 1}: {h.kind}" + (f" ({where})" if where else "")
    caption += f" at {h.at:%Y-%m-%d %H:%M:%S}" + (f" by {h.actor}" if h.actor else "")
    if not point.exact:
        caption += " — a failed thread's position here is inferred (older history)"
    return TimelineView(point, len(points), dot, caption)


__all__ = [
    "MAX_TRIALS",
    "SANDBOX_ACTOR",
    "TimelineView",
    "Trial",
    "TrialView",
    "advance",
    "approve",
    "deny",
    "goto",
    "send",
    "start",
    "timeline",
    "user_action",
    "view",
    "wait_key",
]
