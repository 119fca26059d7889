"""Jupyter display of definitions and workflows, and one-liners to drive workflows by hand.

Definitions (``Section``) and ``WorkflowInfo`` display as graphs through the
``_repr_mimebundle_`` that ``engine._display`` attaches to them, which calls
``definition_bundle`` and ``workflow_bundle`` here: SVG when
the Graphviz binary is installed, else a text outline and a note on how to get SVG.

``Notebook`` wraps an ``Engine`` (best with a ``ManualClock`` and a ``PollingResumer``, so
nothing runs until a cell says so)::

    nb = Notebook(Engine(MemoryStore(), [Expense], clock=ManualClock(), resumer=PollingResumer()))
    wid = nb.start(Expense(amount=42))
    nb.step(wid)                  # one step, then the graph
    nb.approve(wid)               # resolve the open user-action wait
    nb.advance(minutes=10)        # move the clock, fire timers, run due work
    nb.history(wid)               # the history as a table
    nb.show(wid, at=3)            # the graph as it stood after history line 3
    try_it = nb.fork(wid)         # a sandbox copy: approve, deny, step it; nothing is real
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import graphviz

import engine.graph as graph
from engine._definition.handlers import HandlerType
from engine._definition.statements import Section
from engine._definition.workflow import Workflow
from engine._engine import Engine
from engine._records import HistoryEntry, ThreadStatus, WaitInfo, WorkflowInfo
from engine.clock import Clock, ManualClock
from engine.errors import CallbackRejected, GorchError, InvalidOperation, RejectReason
from engine.resumers import PollingResumer

NO_GRAPHVIZ = (
    "(Text outline: the Graphviz `dot` program is not installed. To see this as a graph, "
    "install it: `apt-get install graphviz` on Debian/Ubuntu, `brew install graphviz` on macOS, "
    "then restart the kernel.)"
)
"""The note shown under the text outline when there is no Graphviz binary."""


def _bundle(dot: graphviz.Digraph, outline: str) -> dict[str, str]:
    drawn = graph.svg(dot)
    if drawn is not None:
        return {"image/svg+xml": drawn, "text/plain": outline}
    return {"text/plain": f"{outline}\n\n{NO_GRAPHVIZ}"}


def definition_bundle(definition: Section) -> dict[str, str]:
    """The MIME bundle that shows ``definition`` in Jupyter: its graph, or a text outline."""
    outline = graph.text_tree(definition)
    try:
        dot = graph.to_dot(definition)
    except GorchError as e:  # a malformed definition still shows its outline and why
        return {"text/plain": f"{outline}\n\n{type(e).__name__}: {e}"}
    return _bundle(dot, outline)


def workflow_bundle(
    info: WorkflowInfo[Any],
    waits: Sequence[WaitInfo] = (),
    history: Sequence[HistoryEntry] = (),
    *,
    title: str | None = None,
) -> dict[str, str]:
    """The MIME bundle that shows a workflow: its definition with threads, waits and history
    (``title``: the caption instead of its type, id and status)."""
    head = title or f"{info.type} {info.id}: {info.status.value}"
    if info.error:
        head += f" (error: {info.error})"
    elif info.result is not None:
        head += f" (result: {info.result!r})"
    failed = failures(info)
    if failed:
        head += "\n" + "\n".join(failed)
    if not isinstance(info.state, Workflow):  # a state that does not load: say why
        return {"text/plain": head + (f"\n{info.state_error}" if info.state_error else "")}
    try:
        definition = info.state.definition()
        outline = graph.text_tree(definition, info)
        dot = graph.workflow_dot(definition, info, waits, history, title=title)
    except GorchError as e:
        return {"text/plain": f"{head}\n{type(e).__name__}: {e}"}
    bundle = _bundle(dot, f"{head}\n{outline}")
    errors = ([f"error: {info.error}"] if info.error else []) + failed
    if errors and "image/svg+xml" in bundle:
        # Jupyter shows the richest type alone: the error goes above the drawing, in HTML.
        lines = "".join(f"<div>{html.escape(e)}</div>" for e in errors)
        drawing = bundle["image/svg+xml"]
        drawing = drawing[drawing.find("<svg") :]  # no XML prolog inside HTML
        bundle["text/html"] = (
            '<div style="color:#b00020;border-left:4px solid #b00020;padding:4px 8px;'
            f'margin-bottom:6px;white-space:pre-wrap"><b>{html.escape(head.splitlines()[0])}'
            f"</b>{lines}</div>{drawing}"
        )
    return bundle


def failures(info: WorkflowInfo[Any]) -> list[str]:
    """One line per failed thread of ``info``: where it failed and why."""
    return [
        f"thread {t.id} failed at {t.position or '(start)'!r}: {t.error or 'no error recorded'}"
        for t in info.threads
        if t.status is ThreadStatus.FAILED
    ]


@dataclass(frozen=True)
class WorkflowView:
    """A workflow as it stands, with its open waits and history; Jupyter draws it as a graph.

    Attributes:
        info: the workflow (``status``, ``threads``, ``state``, ``result``, ...).
        waits: its open waits.
        history: its history, oldest first.
        title: the caption (a past point's says which); default its type, id and status.
    """

    info: WorkflowInfo[Any]
    waits: Sequence[WaitInfo] = ()
    history: Sequence[HistoryEntry] = ()
    title: str | None = None

    @property
    def dot(self) -> graphviz.Digraph:
        """The graph as ``graphviz.Digraph`` (``.source`` is the DOT text)."""
        definition = self.info.state.definition()
        return graph.workflow_dot(definition, self.info, self.waits, self.history,
                                  title=self.title)  # fmt: skip

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return workflow_bundle(self.info, self.waits, self.history, title=self.title)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


@dataclass(frozen=True, repr=False)
class Table:
    """Rows shown as an HTML table in Jupyter (every cell escaped); ``rows`` for code.

    Attributes:
        rows: one dict per row, column name to value.
        columns: the columns in display order.
    """

    rows: list[dict[str, Any]]
    columns: tuple[str, ...] = field(default=())

    def _cols(self) -> tuple[str, ...]:
        return self.columns or (tuple(self.rows[0]) if self.rows else ())

    def _repr_html_(self) -> str:
        cols = self._cols()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in cols) + "</tr>"
            for r in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        cols = self._cols()
        lines = [" | ".join(cols)]
        lines += [" | ".join(_cell(r.get(c)) for c in cols) for r in self.rows]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def __len__(self) -> int:
        return len(self.rows)


def deciders(assignees: tuple[str, ...] | None, excluded: tuple[str, ...]) -> str | None:
    """Who may decide a wait, as text ("anyone", "ann, role:approver; not bob"); None if no
    person decides it."""
    if assignees is None:
        return None
    text = ", ".join(assignees) or "anyone"
    return text + (f"; not {', '.join(excluded)}" if excluded else "")


class Notebook:
    """One-liners for driving workflows from notebook cells.

    Args:
        engine: the engine to drive; give it a ``ManualClock`` to use ``advance``, and a
            ``PollingResumer`` so that work runs only when a cell asks for it.
        actor: who callbacks are recorded as, in the history.
        roles: the actor's roles, for waits assigned to a role (``"role:NAME"``).
    """

    def __init__(
        self, engine: Engine, *, actor: str = "notebook", roles: Sequence[str] = ()
    ) -> None:
        self.engine = engine
        self.actor = actor
        self.roles = tuple(roles)

    def start(self, state: Workflow, id: str | None = None) -> str:
        """Store a new workflow and return its id (nothing runs yet with a polling resumer)."""
        return self.engine.new_workflow(state, id, actor=self.actor)

    def show(self, workflow_id: str, *, at: int | None = None) -> WorkflowView:
        """The workflow with its open waits and history, drawn as a graph.

        Args:
            at: draw it as it stood right after this history line (0 is ``created``; a
                negative number counts from the end, as in a list): its threads' positions
                and statuses then, and the history up to that line. The state and the
                definition drawn are the current ones (the history holds no past states).

        Raises:
            WorkflowNotFound: no such workflow.
            InvalidOperation: ``at`` is not a line of its history.
        """
        e = self.engine
        info = e.get(workflow_id)
        if at is None:
            return WorkflowView(info, e.pending_waits(workflow_id), e.history(workflow_id))
        points = e.timeline(workflow_id)
        if isinstance(at, bool) or not isinstance(at, int) or not -len(points) <= at < len(points):
            raise InvalidOperation(
                f"at={at!r} is not a line of the history of {workflow_id!r}: it has "
                f"{len(points)} line(s), 0 to {len(points) - 1} (or -1 to -{len(points)})",
                workflow_id=workflow_id,
            )
        point = points[at]
        h = point.entry
        title = (f"{info.type} {info.id} after history line {point.index} ({h.kind}, "
                 f"{h.at:%Y-%m-%d %H:%M:%S}): {point.status.value}")  # fmt: skip
        history = [p.entry for p in points[: point.index + 1]]
        return WorkflowView(point.info(info), (), history, title)

    def fork(
        self,
        workflow_id: str,
        *,
        skip_steps: bool | Sequence[str] | None = None,
        clock: Clock | None = None,
    ) -> Notebook:
        """A notebook over a sandbox copy of the workflow (``Engine.fork``): approve, deny,
        send, goto, step and advance it like any other; nothing it does is real, except the
        steps' own code unless ``skip_steps`` skips them.

        The fork runs its work the way this notebook's engine does: a ``PollingResumer``
        here means it runs only when a cell says so (``step``, ``run``, ``advance``).

        Raises:
            WorkflowNotFound: no such workflow.
            InvalidOperation: ``skip_steps`` names a step the workflow does not have.
        """
        polling = isinstance(self.engine.resumer, PollingResumer)
        forked = self.engine.fork(
            workflow_id,
            clock=clock,
            skip_steps=skip_steps,
            resumer=PollingResumer() if polling else None,
        )
        return Notebook(forked, actor=self.actor)

    def goto(self, workflow_id: str, thread: str, statement: str) -> WorkflowView:
        """Move ``thread`` onto the named ``statement`` (recorded as this notebook's actor),
        then show the workflow."""
        self.engine.goto(workflow_id, thread, statement, self.actor)
        return self.show(workflow_id)

    def timeline(self, workflow_id: str) -> Table:
        """The workflow's timeline as a table: each history line with where every thread
        stood right after it (``nb.show(wid, at=N)`` draws point N)."""
        return Table(
            [
                {
                    "at": p.index,
                    "kind": p.entry.kind,
                    "thread": p.entry.thread,
                    "statement": p.entry.statement,
                    "status": p.status.value,
                    "threads": "; ".join(
                        f"{t.id}: {t.status.value} {'after' if t.phase == 'done' else 'at'} "
                        f"{t.position or '(start)'}"
                        for t in p.threads
                    ),
                }
                for p in self.engine.timeline(workflow_id)
            ],
            ("at", "kind", "thread", "statement", "status", "threads"),
        )

    def step(self, workflow_id: str) -> WorkflowView:
        """Run exactly one step (of the next thread in turn), then show the workflow."""
        self.engine.step(workflow_id)
        return self.show(workflow_id)

    def run(self, workflow_id: str) -> WorkflowView:
        """Run until every thread blocks or ends, then show the workflow."""
        self.engine.execute(workflow_id)
        return self.show(workflow_id)

    def send(
        self, workflow_id: str, event: str, input: Any = None, *, thread: str | None = None
    ) -> WorkflowView:
        """Deliver ``event`` with ``input`` to the workflow's open wait, then show it.

        Raises:
            CallbackRejected: no open wait for ``event``, or the input is invalid.
        """
        self.engine.on_callback(
            workflow_id, event, input, actor=self.actor, roles=self.roles, thread=thread
        )
        return self.show(workflow_id)

    def approve(
        self, workflow_id: str, event: str | None = None, *, reason: str | None = None
    ) -> WorkflowView:
        """Approve the open user-action wait (``event`` is needed only if there are several)."""
        body: dict[str, Any] = {"approved": True}
        if reason:
            body["reason"] = reason
        return self.send(workflow_id, event or self._user_event(workflow_id), body)

    def deny(self, workflow_id: str, reason: str, event: str | None = None) -> WorkflowView:
        """Deny the open user-action wait with ``reason``."""
        body = {"approved": False, "reason": reason}
        return self.send(workflow_id, event or self._user_event(workflow_id), body)

    def _user_event(self, workflow_id: str) -> str:
        events = sorted(
            {w.event for w in self.engine.pending_waits(workflow_id, type=HandlerType.USER_ACTION)}
        )
        if len(events) != 1:
            raise CallbackRejected(
                f"workflow {workflow_id!r} has {len(events)} open user-action waits "
                f"({', '.join(events) or 'none'}): pass event=",
                reason=RejectReason.NO_WAIT if not events else RejectReason.AMBIGUOUS,
                workflow_id=workflow_id,
            )
        return events[0]

    def advance(
        self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0
    ) -> int:
        """Move the manual clock forward, then fire due timers and run due work.

        Returns:
            How many timers, waits and workflows ``run_due`` handled.

        Raises:
            InvalidOperation: the engine's clock is not a ``ManualClock``.
        """
        clock = self.engine.clock
        if not isinstance(clock, ManualClock):
            raise InvalidOperation(
                f"advance() needs an Engine(clock=ManualClock()), not {type(clock).__name__}"
            )
        clock.advance(timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds))
        return self.engine.run_due()

    def history(self, workflow_id: str) -> Table:
        """The workflow's history, oldest first, as a table."""
        return Table(
            [
                {
                    "seq": h.seq,
                    "at": h.at,
                    "kind": h.kind,
                    "thread": h.thread,
                    "statement": h.statement,
                    "actor": h.actor,
                    "detail": dict(h.detail) if h.detail else None,
                }
                for h in self.engine.history(workflow_id)
            ],
            ("seq", "at", "kind", "thread", "statement", "actor", "detail"),
        )

    def waits(self, workflow_id: str | None = None) -> Table:
        """Open waits (of one workflow, or all): the inbox, newest first, each with what a
        person must see to decide it (``context``: the workflow's ``summary()``) and who may
        (``who``: its assignees, "anyone", and who is excluded)."""
        return Table(
            [
                {
                    "workflow": w.workflow_id,
                    "thread": w.thread_id,
                    "wait": w.wait,
                    "event": w.event,
                    "type": w.type,
                    "context": w.context or None,
                    "who": deciders(w.assignees, w.excluded),
                    "since": w.created_at,
                    "due": w.due_at,
                }
                for w in self.engine.pending_waits(workflow_id)
            ],
            ("workflow", "thread", "wait", "event", "type", "context", "who", "since", "due"),
        )

    def workflows(self, **filters: Any) -> Table:
        """Workflows, newest first (``status=``, ``type=``, ``search=`` as ``Engine.list``)."""
        rows = [
            {
                "id": w.id,
                "type": w.type,
                "status": w.status.value,
                "result": w.result,
                "error": w.error,
                "updated": w.updated_at,
            }
            for w in self.engine.list(**filters)
        ]
        return Table(rows, ("id", "type", "status", "result", "error", "updated"))


__all__ = [
    "NO_GRAPHVIZ",
    "Notebook",
    "Table",
    "WorkflowView",
    "definition_bundle",
    "workflow_bundle",
]
