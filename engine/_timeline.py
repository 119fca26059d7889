"""A workflow's past, replayed from its history: where every thread stood after each line.

``replay`` is pure: it reads the history lines a store holds, oldest first, and carries each
thread's position, phase and status forward line by line, the way the session changed them
when it wrote the line. Every line that moves a thread names it and the statement
(``step``, ``step_error``, ``wait``, ``waitfor``, ``waitfor_done``, ``callback``, ``goto``,
``retried``, ``renamed``; ``go`` names the thread it started), and the lines that end
threads say so (``return``, ``thread_end``, ``finished``, ``cancelled``). The one line whose
statement need not be the thread's position, ``thread_failed`` (a condition that raised
names the condition's statement, not where the thread stood), carries the position in its
detail since this was written; in a history stored before that, the failed thread's
position is taken from the statement and the points are marked ``exact=False`` until the
thread is positioned again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from engine._records import (
    MAIN,
    HistoryEntry,
    HistoryKind,
    Phase,
    ThreadInfo,
    ThreadState,
    ThreadStatus,
    WorkflowInfo,
    WorkflowStatus,
)


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    """A workflow as it stood right after one line of its history.

    Attributes:
        index: the line's place in the history, from 0 (the ``created`` line).
        entry: the history line.
        status: the workflow's status right after it.
        threads: every thread started so far, in creation order, with its position, phase
            and status right after the line (``attempts``, ``retry_at`` and ``error`` as the
            line says them; a later line may have changed nothing else).
        result: the workflow's result, once a ``finished`` line gave it.
        error: the workflow's error, once a ``finished`` line gave it.
        exact: False when a thread's position here was inferred from a ``thread_failed``
            line written before positions were recorded with it (see ``known_from``).
    """

    index: int
    entry: HistoryEntry
    status: WorkflowStatus
    threads: tuple[ThreadInfo, ...]
    result: Any = None
    error: str | None = None
    exact: bool = True

    def thread(self, thread_id: str) -> ThreadInfo | None:
        """The thread with this id at this point, if it had started."""
        return next((t for t in self.threads if t.id == thread_id), None)

    def info(self, now: WorkflowInfo[Any]) -> WorkflowInfo[Any]:
        """``now`` (the workflow as it stands) with the status, threads, result and error of
        this point: what ``engine.graph.workflow_dot`` draws the past with. The state stays
        the current one: the history does not hold past states."""
        return replace(
            now, status=self.status, threads=self.threads, result=self.result, error=self.error
        )


def known_from(points: Sequence[TimelinePoint]) -> int:
    """The index from which every later point is exact (``len(points)`` if the last is not)."""
    for i in range(len(points) - 1, -1, -1):
        if not points[i].exact:
            return i + 1
    return 0


@dataclass(slots=True)
class _Thread(ThreadState):
    """A thread as the replay has it so far: its state, and how sure and how shown it is."""

    guessed: bool = False  # the position came from an old ``thread_failed`` line
    shown: ThreadInfo | None = None  # as last frozen; None once changed since

    def at(self, position: str | None, phase: Phase, status: ThreadStatus) -> None:
        self.position = position or ""
        self.phase, self.status, self.event, self.guessed = phase, status, None, False
        self.attempts, self.retry_at, self.error = 0, None, None

    def frozen(self) -> ThreadInfo:
        if self.shown is None:
            self.shown = ThreadInfo(self.id, self.go or MAIN, self.status, self.position,
                                    self.phase, self.event, self.attempts, self.retry_at,
                                    self.error)  # fmt: skip
        return self.shown


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


_FAILED, _RUNNING, _WAITING = ThreadStatus.FAILED, ThreadStatus.RUNNING, ThreadStatus.WAITING


def _status(threads: Iterable[_Thread]) -> WorkflowStatus:
    """The workflow's status as its threads say (as the session derives it)."""
    running = waiting = False
    for x in threads:
        s = x.status
        if s is _FAILED:
            return WorkflowStatus.FAILED
        running = running or s is _RUNNING
        waiting = waiting or s is _WAITING
    if running:
        return WorkflowStatus.RUNNING
    return WorkflowStatus.WAITING if waiting else WorkflowStatus.FINISHED


def _end_all(threads: dict[str, _Thread]) -> None:
    for x in threads.values():
        if x.status.live:
            x.status, x.shown = ThreadStatus.CANCELLED, None


class _Kinds:
    """``HistoryKind`` values as plain class attributes (no enum look-up in the loop)."""

    CREATED, STEP, STEP_ERROR = (
        HistoryKind.CREATED.value,
        HistoryKind.STEP.value,
        HistoryKind.STEP_ERROR.value,
    )
    THREAD_FAILED, GO, WAIT = (
        HistoryKind.THREAD_FAILED.value,
        HistoryKind.GO.value,
        HistoryKind.WAIT.value,
    )
    WAITFOR, WAITFOR_DONE = HistoryKind.WAITFOR.value, HistoryKind.WAITFOR_DONE.value
    CALLBACK, RETURN = HistoryKind.CALLBACK.value, HistoryKind.RETURN.value
    THREAD_END, FINISHED = HistoryKind.THREAD_END.value, HistoryKind.FINISHED.value
    CANCELLED, RETRIED = HistoryKind.CANCELLED.value, HistoryKind.RETRIED.value
    GOTO, RENAMED, BLOCKED = (
        HistoryKind.GOTO.value,
        HistoryKind.RENAMED.value,
        HistoryKind.BLOCKED.value,
    )


def replay(history: Sequence[HistoryEntry]) -> list[TimelinePoint]:
    """One point per history line, oldest first: see the module docstring.

    Kept cheap (a few microseconds a line): a thread is frozen again only when the
    line changed it, and the kinds are tested most frequent first.
    """
    K = _Kinds  # plain strings: a stored kind may be either, and str == str is the fast one
    threads: dict[str, _Thread] = {}
    shown: tuple[ThreadInfo, ...] = ()
    ended: WorkflowStatus | None = None
    result: Any = None
    error: str | None = None
    guesses = False  # any thread's position guessed from an old line, ever
    points: list[TimelinePoint] = []
    append = points.append
    for index, h in enumerate(history):
        kind, name, d = h.kind, h.thread, h.detail
        t = None
        if name is not None and kind != K.BLOCKED:
            t = threads.get(name)
            if t is None:  # a history that lost its first lines
                t = threads[name] = _Thread(name)
            t.shown = None
        changed = t is not None
        if t is None:
            if kind == K.CREATED:
                threads = {MAIN: _Thread(MAIN)}
                ended, result, error, changed = None, None, None, True
            elif kind == K.FINISHED:
                _end_all(threads)
                ended, result, error = WorkflowStatus.FINISHED, d.get("result"), d.get("error")
                changed = True
            elif kind == K.CANCELLED:
                _end_all(threads)
                ended, changed = WorkflowStatus.CANCELLED, True
            # requests, state edits, set-up results, code changes: nobody moves
        elif kind == K.STEP or kind == K.WAITFOR_DONE:
            t.at(h.statement, Phase.DONE, _RUNNING)
        elif kind == K.WAIT or kind == K.WAITFOR:
            t.at(h.statement, Phase.AT, _WAITING)
        elif kind == K.CALLBACK:
            t.at(h.statement, Phase.HANDLED, _RUNNING)
            event = d.get("event")
            t.event = event if isinstance(event, str) else None
        elif kind == K.GO:
            t.at(h.statement, Phase.DONE, _RUNNING)
            started = d.get("started")
            if isinstance(started, str):
                # a goroutine started afresh keeps its place, as in the record
                threads[started] = _Thread(started, go=h.statement)
        elif kind == K.RETURN or kind == K.THREAD_END:
            t.status = ThreadStatus.FINISHED
        elif kind == K.STEP_ERROR:
            t.at(h.statement, Phase.AT, _RUNNING)
            t.attempts = int(d.get("attempt") or 0)
            t.retry_at, t.error = _time(d.get("retry_at")), d.get("error")
        elif kind == K.THREAD_FAILED:
            position = d.get("position")
            t.status, t.error, t.retry_at = _FAILED, d.get("error"), None
            if isinstance(position, str):
                t.position, t.guessed = position, False
            else:  # written before positions were recorded with it
                t.position, t.guessed, guesses = h.statement or t.position, True, True
        elif kind == K.GOTO:
            t.at(h.statement, Phase.AT, _RUNNING)
            if ended is WorkflowStatus.FAILED:
                ended = None
        elif kind == K.RETRIED:
            t.status, t.attempts, t.retry_at, t.error = _RUNNING, 0, None, None
        elif kind == K.RENAMED:
            t.position, t.guessed = h.statement or "", False
        if changed:
            shown = tuple([x.frozen() for x in threads.values()])
        exact = not guesses or not any(x.guessed and x.status.unfinished for x in threads.values())
        status = ended if ended is not None else _status(threads.values())
        append(TimelinePoint(index, h, status, shown, result, error, exact))
    return points


__all__ = ["TimelinePoint", "known_from", "replay"]
