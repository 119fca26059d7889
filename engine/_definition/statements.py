"""The workflow language: frozen statement values with no I/O.

A definition is a tree of these values, rebuilt from the workflow's state at every resume.
Threads stand on statements *by name*, so names (of steps, waits, loops, goroutines) are the
stable part of a definition: see ``docs`` and ``validate()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from engine.errors import DefinitionError

if TYPE_CHECKING:
    from engine._definition.handlers import Handler

Cond = bool | Callable[[], bool]
"""A condition: a bool evaluated when ``definition()`` is rebuilt, or a zero-argument callable."""

Action = Callable[[], Any]
"""A step body: a zero-argument callable, sync or ``async def``."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing step is retried: exponential backoff, then the thread fails.

    Args:
        max_attempts: total attempts, the first included; 1 means never retry.
        initial_interval: the wait before the second attempt.
        backoff: each further wait is the previous one times this factor.
        max_interval: the cap on any single wait.
    """

    max_attempts: int = 3
    initial_interval: timedelta = timedelta(seconds=1)
    backoff: float = 2.0
    max_interval: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise DefinitionError("RetryPolicy.max_attempts must be at least 1")
        if self.initial_interval < timedelta(0) or self.max_interval < timedelta(0):
            raise DefinitionError("RetryPolicy intervals must not be negative")
        if self.backoff < 1:
            raise DefinitionError("RetryPolicy.backoff must be at least 1")

    def delay(self, attempt: int) -> timedelta:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        seconds = self.initial_interval.total_seconds() * self.backoff ** (attempt - 1)
        return min(timedelta(seconds=seconds), self.max_interval)


class StatementKind(StrEnum):
    """The ``kind`` of each statement class: the node kinds of ``engine.graph`` and part of a
    definition's fingerprint (``Program.fingerprint``), so the values never change."""

    SECTION = "section"
    STEP = "step"
    GO = "go"
    WAIT = "wait"
    WAITFOR = "waitfor"
    IF = "if"
    SWITCH = "switch"
    FOR = "for"
    BREAK = "break"
    CONTINUE = "continue"
    RETURN = "return"


class Stmt:
    """Base of every statement; ``Statement`` is the union of the concrete ones."""

    __slots__ = ()
    kind: ClassVar[str] = "stmt"  # a ``StatementKind`` on every concrete statement

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The language is closed: the compiler, the interpreter and the graph ``match`` on
        # ``Statement`` and have no case for a new kind (a subclass of Step, say, is a Step).
        super().__init_subclass__(**kwargs)
        if Stmt in cls.__bases__ and cls.__module__ != __name__:
            raise DefinitionError(
                f"{cls.__name__}: a new kind of statement cannot be added; compose the "
                "existing ones (Step, Wait, If, For, ...)"
            )

    @property
    def label(self) -> str | None:
        """The statement's name, if it has one."""
        return None


def _section(stmts: tuple[Any, ...], where: str, name: Any = None) -> tuple[Statement, ...]:
    for s in stmts:  # kept cheap: a definition is rebuilt whenever the state changes
        if not isinstance(s, Stmt):
            break
    else:
        return stmts  # no cast() call: this is the hot path of every rebuild
    if name is not None:
        where = f"{where}({name!r})"
    for i, s in enumerate(stmts):
        if not isinstance(s, Stmt):
            raise DefinitionError(
                f"{where}: item {i} is {type(s).__name__} {s!r:.60}, not a statement "
                "(did you forget to wrap an action in Step(name, action)?)"
            )
    return stmts  # pragma: no cover - the first loop found a non-statement


@dataclass(frozen=True, slots=True)
class Section(Stmt):
    """Statements run in order. Build one with ``S(*stmts)``."""

    stmts: tuple[Statement, ...]
    renamed: tuple[tuple[str, str], ...] = ()
    kind = StatementKind.SECTION


def S(*stmts: Stmt, renamed: Mapping[str, str] | None = None) -> Section:
    """A section: run ``stmts`` in order.

    Args:
        renamed: ``{"old name": "new name"}`` aliases for statements renamed in a new version
            of the code: threads stored on an old name follow the rename by themselves.
    """
    pairs = tuple(renamed.items()) if renamed else ()
    return Section(_section(stmts, "S(...)"), pairs)


@dataclass(frozen=True, slots=True)
class Step(Stmt):
    """Run ``action()`` (sync or async); its result is written before any other step runs.

    At-least-once: a step interrupted before its checkpoint runs again; a checkpointed step
    never runs again. On an exception it is retried per ``retry`` (default: the engine's policy).

    ``timeout`` (a ``timedelta`` or seconds; default: ``Engine(step_timeout=...)``) runs the
    action on a helper thread and stops waiting for it after that long: the attempt fails with
    ``StepTimeout`` and is retried per ``retry``. Python cannot stop a thread, so the abandoned
    action may still be running in the background; the session that ran it ends, and the
    workflow goes on from the stored state, never from what the abandoned action changes.
    """

    name: str
    action: Action
    retry: RetryPolicy | None = field(default=None, kw_only=True)
    timeout: timedelta | float | None = field(default=None, kw_only=True)
    kind = StatementKind.STEP

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Go(Stmt):
    """Start a logical thread running ``section``.

    ``id`` names the new thread: a string, or a callable evaluated when the ``Go`` runs (so one
    ``Go`` in a loop can start many threads). It defaults to the statement's name.
    """

    name: str
    section: Section
    id: str | Callable[[], str] | None = field(default=None, kw_only=True)
    kind = StatementKind.GO

    def __post_init__(self) -> None:
        if not isinstance(self.section, Section):
            raise DefinitionError(
                f"Go({self.name!r}): the body must be S(...), not {type(self.section).__name__}",
                statement=str(self.name),
            )

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True, init=False)
class On:
    """One case of a ``Wait``: when ``event`` arrives, run ``handler``, then ``stmts``."""

    event: str
    handler: Handler
    body: Section

    def __init__(self, event: str, handler: Handler, *stmts: Stmt) -> None:
        object.__setattr__(self, "event", event)
        object.__setattr__(self, "handler", handler)
        object.__setattr__(self, "body", Section(_section(stmts, "On", event)))


@dataclass(frozen=True, slots=True, init=False)
class Wait(Stmt):
    """Block the thread until exactly one case's event arrives (a select).

    The winning case's handler runs, the other cases are torn down, and the thread continues
    with the winning case's statements, then after the ``Wait``.
    """

    name: str
    cases: tuple[On, ...]
    kind = StatementKind.WAIT

    def __init__(self, name: str, *cases: On) -> None:
        for c in cases:
            if not isinstance(c, On):
                raise DefinitionError(
                    f"Wait({name!r}): every case must be On(event, handler, ...), "
                    f"not {type(c).__name__}",
                    statement=str(name),
                )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "cases", cases)

    @property
    def label(self) -> str:
        return self.name

    def case(self, event: str) -> On | None:
        """The case for ``event``, if this wait has one."""
        for c in self.cases:
            if c.event == event:
                return c
        return None


@dataclass(frozen=True, slots=True)
class WaitFor(Stmt):
    """Block the thread until ``cond`` holds; re-checked after every step of any thread."""

    name: str
    cond: Cond
    kind = StatementKind.WAITFOR

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Branch:
    """One guarded branch of an ``If`` or a ``Switch``; ``default`` marks Else/Default."""

    cond: Cond
    body: Section
    default: bool = False


@dataclass(frozen=True, slots=True, init=False)
class If(Stmt):
    """Run the first branch whose condition holds: ``If(c, ...).ElseIf(c2, ...).Else(...)``."""

    branches: tuple[Branch, ...]
    name: str | None
    kind = StatementKind.IF

    def __init__(self, cond: Cond, *stmts: Stmt, name: str | None = None) -> None:
        object.__setattr__(
            self,
            "branches",
            (
                Branch(
                    cond,
                    Section(_section(stmts, "If")),
                ),
            ),
        )
        object.__setattr__(self, "name", name)

    @classmethod
    def _make(cls, branches: tuple[Branch, ...], name: str | None) -> If:
        new = object.__new__(cls)
        object.__setattr__(new, "branches", branches)
        object.__setattr__(new, "name", name)
        return new

    @property
    def label(self) -> str | None:
        return self.name

    def _open(self, what: str) -> None:
        if self.branches[-1].default:
            raise DefinitionError(
                f"If{'(' + repr(self.name) + ')' if self.name else ''}: {what} after Else",
                statement=self.name,
            )

    def ElseIf(self, cond: Cond, *stmts: Stmt) -> If:
        """A further branch, tried when the earlier ones do not hold."""
        self._open("ElseIf")
        return If._make(
            (*self.branches, Branch(cond, Section(_section(stmts, "ElseIf")))), self.name
        )

    def Else(self, *stmts: Stmt) -> If:
        """The branch run when no condition holds."""
        self._open("Else")
        return If._make(
            (*self.branches, Branch(True, Section(_section(stmts, "Else")), default=True)),
            self.name,
        )


@dataclass(frozen=True, slots=True, init=False)
class Case:
    """A guarded case of a ``Switch``."""

    cond: Cond
    body: Section

    def __init__(self, cond: Cond, *stmts: Stmt) -> None:
        object.__setattr__(self, "cond", cond)
        object.__setattr__(self, "body", Section(_section(stmts, "Case")))


@dataclass(frozen=True, slots=True, init=False)
class Default:
    """The case of a ``Switch`` run when no other case holds."""

    body: Section

    def __init__(self, *stmts: Stmt) -> None:
        object.__setattr__(self, "body", Section(_section(stmts, "Default")))


@dataclass(frozen=True, slots=True, init=False)
class Switch(Stmt):
    """Run the first ``Case`` whose condition holds, else the ``Default`` if there is one."""

    branches: tuple[Branch, ...]
    name: str | None
    kind = StatementKind.SWITCH

    def __init__(self, *cases: Case | Default, name: str | None = None) -> None:
        branches: list[Branch] = []
        for i, c in enumerate(cases):
            if isinstance(c, Case):
                branches.append(Branch(c.cond, c.body))
            elif isinstance(c, Default):
                if i != len(cases) - 1:
                    raise DefinitionError("Switch: Default must be the last case", statement=name)
                branches.append(Branch(True, c.body, default=True))
            else:
                raise DefinitionError(
                    f"Switch: every case must be Case(...) or Default(...), not {type(c).__name__}",
                    statement=name,
                )
        object.__setattr__(self, "branches", tuple(branches))
        object.__setattr__(self, "name", name)

    @property
    def label(self) -> str | None:
        return self.name


@dataclass(frozen=True, slots=True, init=False)
class For(Stmt):
    """Loop: while ``cond`` holds, run ``stmts``. ``Break()`` and ``Continue()`` work inside."""

    name: str
    cond: Cond
    body: Section
    kind = StatementKind.FOR

    def __init__(self, name: str, cond: Cond, *stmts: Stmt) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "cond", cond)
        object.__setattr__(self, "body", Section(_section(stmts, "For", name)))

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Break(Stmt):
    """Leave the innermost ``For`` of this thread."""

    kind = StatementKind.BREAK


@dataclass(frozen=True, slots=True)
class Continue(Stmt):
    """Go back to the condition of the innermost ``For`` of this thread."""

    kind = StatementKind.CONTINUE


@dataclass(frozen=True, slots=True)
class Return(Stmt):
    """End this thread; from the main thread, end the workflow with ``value`` or ``error``."""

    value: Any = None
    error: str | None = field(default=None, kw_only=True)
    kind = StatementKind.RETURN


Statement = Section | Step | Go | Wait | WaitFor | If | Switch | For | Break | Continue | Return
"""Every concrete statement: what a section holds, and what a ``match`` on statements must cover
(end it with ``case _: assert_never(st)`` so that mypy flags a statement type left out)."""


def evaluate(cond: Cond) -> bool:
    """The truth of a condition: a bool as it is, a callable by calling it."""
    if callable(cond):
        return bool(cond())
    return bool(cond)
