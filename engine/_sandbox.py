"""The parts of a sandbox fork: a scratch copy of one workflow to try things on.

``Engine.fork`` builds a scratch ``Engine`` from these: a ``SandboxStore`` (a ``MemoryStore``
seeded with a copy of the workflow's record, waits and history), ``RecordingManager``s in
place of the callback managers (they list what would have been set up and torn down, and do
neither), and a subclass of the workflow's class whose ``definition()`` wraps every step's
action, so the ``Sandbox`` knows which steps ran real code and which were skipped.
Nothing here holds the real store: whatever the fork does stays in its own memory.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, assert_never

from engine._definition.statements import (
    Break,
    Continue,
    For,
    Go,
    If,
    Return,
    Section,
    Statement,
    Step,
    Switch,
    Wait,
    WaitFor,
)
from engine._definition.workflow import Workflow
from engine._records import HistoryEntry, HistoryKind, WaitInfo, WorkflowRecord
from engine.clock import Clock
from engine.errors import InvalidOperation, WorkflowBusy
from engine.store.base import Store
from engine.store.memory import MemoryStore


class ManagerCall(StrEnum):
    """What a callback manager would have been asked to do."""

    SETUP = "setup"
    TEARDOWN = "teardown"


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One set-up or tear-down a fork did not do for real.

    Attributes:
        call: ``setup`` or ``teardown``.
        type: the handler type (the manager's key).
        thread: the waiting thread.
        wait: the ``Wait`` statement's name.
        event: the case's event.
        handled: for a tear-down, whether this wait's event won (None for a set-up).
        at: the fork's clock at the call.
    """

    call: ManagerCall
    type: str
    thread: str
    wait: str
    event: str
    handled: bool | None
    at: datetime


@dataclass
class Sandbox:
    """What a forked engine is a copy of, and what it did that would have been real.

    Attributes:
        origin: the id of the workflow forked (the fork keeps it).
        forked_at: how many history lines were copied: the fork's own lines come after.
        forked_when: the real engine's clock when the fork was made.
        skip: the steps whose action is not called (``True``: every step).
        clock: the fork's clock (the times of the recorded calls).
        calls: the set-ups and tear-downs the fork's recorders were asked for, in order.
        ran: the steps whose real code the fork called, in order (a step retried: again).
        skipped: the steps recorded as skipped instead, in order.
    """

    origin: str
    forked_at: int
    forked_when: datetime
    skip: frozenset[str] | bool = frozenset()
    clock: Clock | None = None
    calls: list[RecordedCall] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def skips(self, step: str) -> bool:
        """Whether the fork records ``step`` as skipped instead of calling it."""
        return self.skip is True or (self.skip is not False and step in self.skip)

    def _now(self) -> datetime:
        return self.clock.now() if self.clock is not None else self.forked_when


class RecordingManager:
    """Stands in for a ``CallbackManager`` in a fork: notes each call, does nothing.

    ``setup`` returns None (nothing was created), so a wait the fork arms has no set-up
    data; the waits copied from the real workflow keep theirs.
    """

    def __init__(self, sandbox: Sandbox, type: str) -> None:
        self.sandbox, self.type = sandbox, type

    def _note(self, call: ManagerCall, wait: WaitInfo, handled: bool | None) -> None:
        made = RecordedCall(call, self.type, wait.thread_id, wait.wait, wait.event, handled,
                            self.sandbox._now())  # fmt: skip
        self.sandbox.calls.append(made)

    def setup(self, wait: WaitInfo) -> None:
        self._note(ManagerCall.SETUP, wait, None)

    def teardown(self, wait: WaitInfo, handled: bool) -> None:
        self._note(ManagerCall.TEARDOWN, wait, handled)


class SandboxStore(MemoryStore):
    """A ``MemoryStore`` that marks the fork's skipped steps in its history
    (``detail["skipped"] = True`` on their ``step`` lines)."""

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__()
        self.sandbox = sandbox

    def checkpoint(
        self,
        record: WorkflowRecord,
        *,
        owner: str,
        waits: Sequence[WaitInfo] | None,
        history: Sequence[HistoryEntry],
        release: bool = False,
    ) -> None:
        for e in history:
            if e.kind == HistoryKind.STEP and e.statement and self.sandbox.skips(e.statement):
                e.detail = {**e.detail, "skipped": True}
        super().checkpoint(record, owner=owner, waits=waits, history=history, release=release)

    def seed(
        self, record: WorkflowRecord, waits: Sequence[WaitInfo], history: Sequence[HistoryEntry]
    ) -> None:
        """Hold a copy of a workflow as another store gave it (lease cleared)."""
        rec = record.copy()
        rec.lease_owner = rec.lease_until = None
        rec.written = None
        with self._lock:
            self._workflows[rec.id] = rec
            self._waits[rec.id] = {w.id: w.copy() for w in waits}
            self._wait_owner.update(dict.fromkeys(self._waits[rec.id], rec.id))
            self._append(history)


def snapshot(
    store: Store, workflow_id: str, *, tries: int = 5
) -> tuple[WorkflowRecord, list[WaitInfo], list[HistoryEntry]]:
    """The workflow's record, waits and history as one consistent copy: read again if a
    session wrote between the reads (the version moved).

    Raises:
        WorkflowNotFound: no such workflow.
        WorkflowBusy: it kept changing under ``tries`` attempts.
    """
    for _ in range(tries):
        record = store.load(workflow_id)
        waits = store.load_waits(workflow_id)
        history = store.history(workflow_id)
        if store.load(workflow_id).version == record.version:
            return record, waits, history
    raise WorkflowBusy(
        f"workflow {workflow_id!r} changed under each of {tries} attempts to copy it",
        workflow_id=workflow_id,
    )


def skip_spec(skip_steps: bool | str | Iterable[str] | None) -> frozenset[str] | bool:
    """``fork(skip_steps=...)`` as a set of step names or True. Raises ``InvalidOperation``."""
    if skip_steps is None or skip_steps is False:
        return frozenset()
    if skip_steps is True:
        return True
    names = [skip_steps] if isinstance(skip_steps, str) else skip_steps
    try:
        spec = frozenset(names)
    except TypeError:
        raise InvalidOperation(
            f"skip_steps must be True or a list of step names, not {skip_steps!r:.80}"
        ) from None
    if not all(isinstance(n, str) for n in spec):
        raise InvalidOperation(f"skip_steps must hold step names, not {sorted(map(repr, spec))}")
    return spec


_ORIGINS: weakref.WeakKeyDictionary[type[Workflow], type[Workflow]] = weakref.WeakKeyDictionary()
"""The class each forked class stands in for: a fork of a fork wraps the real code once."""


def forked_class(cls: type[Workflow], sandbox: Sandbox) -> type[Workflow]:
    """A subclass of ``cls`` under the same type name whose steps report to ``sandbox``:
    a skipped step's action is not called, any other is called and noted in ``ran``."""
    cls = _ORIGINS.get(cls, cls)
    base_definition = cls.definition

    def definition(self: Workflow) -> Section:
        wrapped: Section = _wrap(base_definition(self), sandbox)
        return wrapped

    namespace = {
        "definition": definition,
        "type_name": cls.workflow_type(),
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
    }
    meta: Any = type(cls)  # pydantic's model metaclass
    sub: type[Workflow] = meta(cls.__name__, (cls,), namespace)
    _ORIGINS[sub] = cls
    return sub


def _stand_in(step: Step, sandbox: Sandbox) -> Callable[[], Any]:
    action, name = step.action, step.name
    if sandbox.skips(name):

        def skipped() -> None:
            sandbox.skipped.append(name)

        return skipped

    def ran() -> Any:
        sandbox.ran.append(name)
        return action()

    return ran


def _rebuilt(st: Any, **changes: Any) -> Any:
    """A copy of frozen statement ``st`` with ``changes`` (their ``__init__`` take other
    arguments than their fields, so ``dataclasses.replace`` cannot build them)."""
    new = object.__new__(type(st))
    for f in dataclasses.fields(st):
        object.__setattr__(new, f.name, changes.get(f.name, getattr(st, f.name)))
    return new


def _wrap(st: Statement, sandbox: Sandbox) -> Any:
    match st:
        case Section():
            return _rebuilt(st, stmts=tuple(_wrap(x, sandbox) for x in st.stmts))
        case Step():
            return _rebuilt(st, action=_stand_in(st, sandbox))
        case Go():
            return _rebuilt(st, section=_wrap(st.section, sandbox))
        case Wait():
            cases = tuple(_rebuilt(c, body=_wrap(c.body, sandbox)) for c in st.cases)
            return _rebuilt(st, cases=cases)
        case If() | Switch():
            branches = tuple(_rebuilt(b, body=_wrap(b.body, sandbox)) for b in st.branches)
            return _rebuilt(st, branches=branches)
        case For():
            return _rebuilt(st, body=_wrap(st.body, sandbox))
        case WaitFor() | Break() | Continue() | Return():
            return st
        case _:
            assert_never(st)


__all__ = [
    "ManagerCall",
    "RecordedCall",
    "RecordingManager",
    "Sandbox",
    "SandboxStore",
    "forked_class",
    "skip_spec",
    "snapshot",
]
