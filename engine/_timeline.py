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

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from engine._records import (
    MAIN,
    HistoryEntry,
    HistoryKind,
    Phase,
    ThreadInfo,
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
class _Thread:
    id: str
    go: str | None = None
    position: str = ""
    phase: Phase = Phase.AT
    status: ThreadStatus = ThreadStatus.RUNNING
    event: str | None = None
    attempts: int = 0
    retry_at: datetime | None = None
    error: str | None = None
    guessed: bool = False  # the position came from an old ``thread_failed`` line

    def at(self, position: str | None, phase: Phase, status: ThreadStatus) -> None:
        self.position = position or ""
        self.phase, self.status, self.event, self.guessed = phase, status, None, False
        self.attempts, self.retry_at, self.error = 0, None, None

    def frozen(self) -> ThreadInfo:
        return ThreadInfo(self.id, self.go or MAIN, self.status, self.position, self.phase,
                          self.event, self.attempts, self.retry_at, self.error)  # fmt: skip


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _status(threads: list[_Thread], ended: WorkflowStatus | None) -> WorkflowStatus:
    """The workflow's status as its threads say (as the session derives it)."""
    if ended is not None:
        return ended
    if any(t.status is ThreadStatus.FAILED for t in threads):
        return WorkflowStatus.FAILED
    if any(t.status is ThreadStatus.RUNNING for t in threads):
        return WorkflowStatus.RUNNING
    if any(t.status is ThreadStatus.WAITING for t in threads):
        return WorkflowStatus.WAITING
    return WorkflowStatus.FINISHED


def replay(history: Sequence[HistoryEntry]) -> list[TimelinePoint]:
    """One point per history line, oldest first: see the module docstring."""
    threads: dict[str, _Thread] = {}
    ended: WorkflowStatus | None = None
    result: Any = None
    error: str | None = None
    points: list[TimelinePoint] = []
    for index, h in enumerate(history):
        t = threads.get(h.thread) if h.thread is not None else None
        if t is None and h.thread is not None and h.kind != HistoryKind.BLOCKED:
            t = threads[h.thread] = _Thread(h.thread)  # a history that lost its first lines
        d = h.detail
        match h.kind:
            case HistoryKind.CREATED:
                threads = {MAIN: _Thread(MAIN)}
                ended, result, error = None, None, None
            case HistoryKind.STEP | HistoryKind.WAITFOR_DONE if t is not None:
                t.at(h.statement, Phase.DONE, ThreadStatus.RUNNING)
            case HistoryKind.STEP_ERROR if t is not None:
                t.at(h.statement, Phase.AT, ThreadStatus.RUNNING)
                t.attempts = int(d.get("attempt") or 0)
                t.retry_at, t.error = _time(d.get("retry_at")), d.get("error")
            case HistoryKind.THREAD_FAILED if t is not None:
                position = d.get("position")
                t.status, t.error, t.retry_at = ThreadStatus.FAILED, d.get("error"), None
                if isinstance(position, str):
                    t.position, t.guessed = position, False
                else:  # written before positions were recorded with it
                    t.position, t.guessed = h.statement or t.position, True
            case HistoryKind.GO if t is not None:
                t.at(h.statement, Phase.DONE, ThreadStatus.RUNNING)
                started = d.get("started")
                if isinstance(started, str):
                    # a goroutine started afresh keeps its place, as in the record
                    threads[started] = _Thread(started, go=h.statement)
            case HistoryKind.WAIT | HistoryKind.WAITFOR if t is not None:
                t.at(h.statement, Phase.AT, ThreadStatus.WAITING)
            case HistoryKind.CALLBACK if t is not None:
                t.at(h.statement, Phase.HANDLED, ThreadStatus.RUNNING)
                event = d.get("event")
                t.event = event if isinstance(event, str) else None
            case HistoryKind.GOTO if t is not None:
                t.at(h.statement, Phase.AT, ThreadStatus.RUNNING)
                if ended is None or ended is WorkflowStatus.FAILED:
                    ended = None
            case HistoryKind.RETRIED if t is not None:
                t.status, t.attempts, t.retry_at, t.error = ThreadStatus.RUNNING, 0, None, None
            case HistoryKind.RENAMED if t is not None:
                t.position, t.guessed = h.statement or "", False
            case HistoryKind.RETURN | HistoryKind.THREAD_END if t is not None:
                t.status = ThreadStatus.FINISHED
            case HistoryKind.FINISHED:
                for x in threads.values():
                    if x.status.live:
                        x.status = ThreadStatus.CANCELLED
                ended, result, error = WorkflowStatus.FINISHED, d.get("result"), d.get("error")
            case HistoryKind.CANCELLED:
                for x in threads.values():
                    if x.status.live:
                        x.status = ThreadStatus.CANCELLED
                ended = WorkflowStatus.CANCELLED
            case _:  # requests, state edits, set-up results, code changes: nobody moves
                pass
        points.append(
            TimelinePoint(
                index,
                h,
                _status(list(threads.values()), ended),
                tuple(x.frozen() for x in threads.values()),
                result,
                error,
                not any(x.guessed and x.status.unfinished for x in threads.values()),
            )
        )
    return points


__all__ = ["TimelinePoint", "known_from", "replay"]
