"""The interpreter: advance one thread of a compiled definition to its next checkpoint.

It knows statements, thread records and nothing else: no store, no clock, no engine. The
engine decides what to do with each ``Outcome`` (checkpoint, create waits, start threads).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
from collections.abc import Callable, Coroutine, Sequence
from contextvars import ContextVar, copy_context
from dataclasses import dataclass
from typing import Any, assert_never

from engine._definition.compiler import FrameKind, Program
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
    evaluate,
)
from engine._records import Phase, ThreadState, ThreadStatus, WaitInfo
from engine._timeouts import call_with_timeout, timeout_seconds
from engine.errors import DefinitionMismatch, MismatchKind, RunawayLoop

_current_thread: ContextVar[str | None] = ContextVar("gorch_current_thread", default=None)


_current_attempt: ContextVar[int] = ContextVar("gorch_current_attempt", default=0)


def current_attempt() -> int:
    """The attempt number (1 for the first) of the step running now, or 0 outside a step.

    Useful to vary what a retry does, or to simulate a flaky service deterministically.
    """
    return _current_attempt.get()


def current_thread() -> str | None:
    """The id of the thread whose step or handler is running now, or None outside one."""
    return _current_thread.get()


_current_wait: ContextVar[WaitInfo | None] = ContextVar("gorch_current_wait", default=None)


def current_wait() -> WaitInfo | None:
    """The wait whose handler is running now (a copy), or None outside a handler.

    Its ``setup_data`` is what the wait's ``CallbackManager.setup`` returned (a message id,
    say), so a handler can refer to what was set up for it.
    """
    return _current_wait.get()


@dataclass(frozen=True, slots=True)
class StepRan:
    """A step's action returned: checkpoint with the thread after the step."""

    step: Step
    value: Any


@dataclass(frozen=True, slots=True)
class StepRaised:
    """A step's action raised: retry it or fail the thread."""

    step: Step
    error: BaseException


@dataclass(frozen=True, slots=True)
class Crashed:
    """A condition or a goroutine id raised: the thread fails at ``statement``."""

    statement: str
    error: BaseException


@dataclass(frozen=True, slots=True)
class GoStart:
    """A ``Go`` ran: start a thread with ``thread_id`` running its body."""

    go: Go
    thread_id: str


@dataclass(frozen=True, slots=True)
class Blocked:
    """The thread reached a ``Wait``: arm its cases and wait."""

    wait: Wait


@dataclass(frozen=True, slots=True)
class BlockedFor:
    """The thread reached a ``WaitFor`` whose condition does not hold yet."""

    waitfor: WaitFor


@dataclass(frozen=True, slots=True)
class Returned:
    """The thread reached ``Return``."""

    value: Any
    error: str | None


@dataclass(frozen=True, slots=True)
class Ended:
    """The thread ran off the end of its body."""


Outcome = StepRan | StepRaised | Crashed | GoStart | Blocked | BlockedFor | Returned | Ended
"""What ``advance`` can report; a ``match`` on it ends with ``case _: assert_never(outcome)``."""


class Frame:
    """One level of the interpreter's cursor: a section's statements, the index of the one to
    run next, and what owns the section (which decides what happens when it ends).

    Mutable (the index moves) and never stored: a thread is stored by statement *name*, and
    its frames are rebuilt from the program's path to that name (``start_frames``).
    """

    __slots__ = ("index", "kind", "stmts")

    def __init__(self, stmts: tuple[Statement, ...], index: int, kind: FrameKind) -> None:
        self.stmts = stmts
        self.index = index
        self.kind = kind

    def __repr__(self) -> str:
        return f"Frame({len(self.stmts)} statements, index={self.index}, kind={self.kind.name})"


def _mismatch(
    thread: ThreadState, msg: str, kind: MismatchKind = MismatchKind.STATEMENT
) -> DefinitionMismatch:
    e = DefinitionMismatch(msg, thread=thread.id, statement=thread.position or None)
    e.kind = kind
    return e


def start_frames(program: Program, thread: ThreadState) -> list[Frame]:
    """The interpreter's cursor for ``thread``: a stack of frames, innermost last.

    Raises:
        DefinitionMismatch: the thread's position, wait case or goroutine is gone from the code.
    """
    if not thread.position:
        if thread.go is None:
            return [Frame(program.root.stmts, 0, FrameKind.ROOT)]
        go = program.go(thread.go)
        if go is None:
            raise _mismatch(
                thread,
                f"thread {thread.id!r} runs goroutine {thread.go!r}, "
                "which the current definition no longer has",
                MismatchKind.GOROUTINE,
            )
        return [Frame(go.section.stmts, 0, FrameKind.ROOT)]
    entry = program.entry(thread.position)
    if entry is None:
        raise _mismatch(
            thread,
            f"thread {thread.id!r} stands on {thread.position!r}, "
            "which the current definition no longer has",
        )
    if entry.thread != thread.go:
        where = f"goroutine {entry.thread!r}" if entry.thread else "the main thread"
        raise _mismatch(
            thread,
            f"thread {thread.id!r} stands on {thread.position!r}, which now belongs to {where}",
        )
    frames = [Frame(stmts, i, kind) for stmts, i, kind in entry.path]
    if thread.phase is Phase.DONE:
        frames[-1].index += 1
    elif thread.phase is Phase.HANDLED:
        wait = entry.stmt
        case = wait.case(thread.event or "") if isinstance(wait, Wait) else None
        if case is None:
            raise _mismatch(
                thread,
                f"thread {thread.id!r} handled event {thread.event!r} of "
                f"{thread.position!r}, which no longer has that case",
                MismatchKind.CASE,
            )
        frames.append(Frame(case.body.stmts, 0, FrameKind.CASE))
    return frames


def advance(
    program: Program,
    thread: ThreadState,
    *,
    max_iterations: int = 10_000,
    before_step: Callable[[], None] | None = None,
    step_timeout: float | None = None,
) -> Outcome:
    """Run ``thread`` from its position to its next checkpoint and say what happened.

    Control flow (If, Switch, For conditions, Break, Continue, a WaitFor that holds) runs
    freely; a step's action, a ``Go``, a blocking wait, ``Return`` or the end of the thread
    stops it. ``thread`` itself is not changed. ``before_step`` is called right before a
    step's action runs (the engine writes what came before it). ``step_timeout`` (seconds)
    applies to steps that set no ``timeout`` of their own.

    Raises:
        DefinitionMismatch: the position is gone from the code.
        RunawayLoop: more than ``max_iterations`` loop iterations ran without a checkpoint.
    """
    frames = start_frames(program, thread)
    iterations = 0
    while frames:
        frame = frames[-1]
        stmts, i = frame.stmts, frame.index
        if i >= len(stmts):
            frames.pop()
            if frames and frame.kind is not FrameKind.LOOP:
                frames[-1].index += 1  # a finished branch/case/section moves its owner on
            continue  # a finished loop body leaves its owner on the For: check it again
        st = stmts[i]
        match st:  # the most frequent first: it is the hot path
            case Step():
                if before_step is not None:
                    before_step()
                return _run_step(st, thread, step_timeout)
            case Section():
                frames.append(Frame(st.stmts, 0, FrameKind.SEQ))
            case If() | Switch():
                try:
                    branch = next((b for b in st.branches if evaluate(b.cond)), None)
                except Exception as e:
                    return Crashed(st.name or thread.position, e)
                if branch is None:
                    frame.index += 1
                else:
                    frames.append(Frame(branch.body.stmts, 0, FrameKind.BRANCH))
            case For():
                iterations += 1
                if iterations > max_iterations:
                    raise RunawayLoop(
                        f"loop {st.name!r} ran {max_iterations} iterations without reaching a "
                        "step or a wait",
                        thread=thread.id,
                        statement=st.name,
                    )
                try:
                    go_on = evaluate(st.cond)
                except Exception as e:
                    return Crashed(st.name, e)
                if go_on:
                    frames.append(Frame(st.body.stmts, 0, FrameKind.LOOP))
                else:
                    frame.index += 1
            case Break() | Continue():
                while frames and frames[-1].kind is not FrameKind.LOOP:
                    frames.pop()
                frames.pop()  # the loop body itself
                if isinstance(st, Break):
                    frames[-1].index += 1
            case Wait():
                return Blocked(st)
            case WaitFor():
                try:
                    holds = evaluate(st.cond)
                except Exception as e:
                    return Crashed(st.name, e)
                if not holds:
                    return BlockedFor(st)
                frame.index += 1
            case Go():
                try:
                    tid = st.id() if callable(st.id) else (st.id if st.id is not None else st.name)
                except Exception as e:
                    return Crashed(st.name, e)
                if not isinstance(tid, str) or not tid:
                    return Crashed(
                        st.name,
                        TypeError(f"Go {st.name!r}: id gave {tid!r}, not a non-empty string"),
                    )
                return GoStart(st, tid)
            case Return():
                return Returned(st.value, st.error)
            case _:
                assert_never(st)
    return Ended()


def _run_step(step: Step, thread: ThreadState, timeout: float | None) -> StepRan | StepRaised:
    retrying = thread.position == step.name and thread.phase is Phase.AT
    token = _current_thread.set(thread.id)
    attempt = _current_attempt.set(thread.attempts + 1 if retrying else 1)
    try:
        if step.timeout is not None:
            timeout = timeout_seconds(step.timeout, f"Step {step.name!r}: timeout")
        if timeout is None:  # no helper thread, no cost, unless a timeout applies
            return StepRan(step, run_callable(step.action))
        call = functools.partial(run_callable, step.action)
        return StepRan(step, call_with_timeout(call, timeout, step=step.name, thread=thread.id))
    except Exception as e:
        return StepRaised(step, e)
    finally:
        _current_attempt.reset(attempt)
        _current_thread.reset(token)


def run_callable(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn``; if it returns an awaitable, run it to completion and return its result.

    Works inside a running event loop too (Jupyter), by running the coroutine on a helper thread.
    """
    result = fn(*args)
    if result is not None and inspect.isawaitable(result):
        return _await(result)
    return result


async def _wrap(aw: Any) -> Any:
    return await aw


def _await(aw: Any) -> Any:
    coro: Coroutine[Any, Any, Any] = aw if inspect.iscoroutine(aw) else _wrap(aw)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    ctx = copy_context()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(ctx.run, asyncio.run, coro).result()


def position_problems(
    program: Program, threads: Sequence[ThreadState], waits: Sequence[WaitInfo]
) -> list[DefinitionMismatch]:
    """Every place where ``threads`` (and their open ``waits``) stand that ``program`` lacks.

    Finished and cancelled threads do not count. Each problem is a ``DefinitionMismatch``
    naming the thread and the statement; ``kind`` on it says what is missing: ``statement``,
    ``goroutine``, ``case`` (a wait's event) or ``thread`` (the name now belongs elsewhere).
    """
    problems: list[DefinitionMismatch] = []
    for t in threads:
        if t.status.done:
            continue
        try:
            start_frames(program, t)
        except DefinitionMismatch as e:
            problems.append(e)
            continue
        if t.status is not ThreadStatus.WAITING:
            continue
        entry = program.entry(t.position)
        stmt = entry.stmt if entry is not None else None
        for w in waits:
            if (
                w.thread_id == t.id
                and w.status.open
                and (not isinstance(stmt, Wait) or stmt.case(w.event) is None)
            ):
                gone = DefinitionMismatch(
                    f"thread {t.id!r} waits for event {w.event!r} of {t.position!r}, "
                    "which the current definition no longer has",
                    thread=t.id,
                    statement=t.position,
                )
                gone.kind = MismatchKind.CASE
                problems.append(gone)
    return problems
