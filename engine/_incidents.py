"""Incidents: failed threads grouped by cause, and the preview and report of a bulk action.

An operator facing a hundred failed workflows wants to see three causes, not a hundred
rows: the failures are grouped by workflow type, the statement the thread failed on, the
error's class and its message with ids and numbers masked (``Engine.incidents``). From a
group, ``Engine.preview_bulk`` lists every workflow a retry or cancel would touch, with the
version it has now; ``Engine.retry_many`` / ``cancel_many`` then act on exactly those, as one
audited operation, and skip (and report) any workflow that changed since the preview.

Pure: records in, values out. The engine does the I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from engine._records import ThreadStatus, WorkflowRecord, WorkflowStatus
from engine.errors import GorchError


class BulkAction(StrEnum):
    """What a bulk operation does to each workflow of its preview."""

    RETRY = "retry"  # fresh attempts for every failed thread (the workflow must be failed)
    CANCEL = "cancel"  # stop it for good (it must not be finished or cancelled)

    def applies(self, status: WorkflowStatus) -> bool:
        """Whether a workflow in ``status`` can take this action."""
        if self is BulkAction.RETRY:
            return status is WorkflowStatus.FAILED
        return not status.done


@dataclass(frozen=True, slots=True)
class Incident:
    """Failed threads of one cause, across workflows.

    Attributes:
        key: a short stable id of the cause (the same cause gives the same key).
        type: the workflow type.
        statement: the statement the threads failed on.
        error_class: the exception's class name ("" when the error names none).
        message: the error message with ids and numbers masked (``<id>``, ``<n>``).
        example: the newest error of the group as it was recorded.
        threads: how many failed threads.
        workflow_ids: the failed workflows, newest failure first.
        first_seen, last_seen: the earliest and latest failure (each workflow's last change,
            which for a failed workflow nobody has touched since is when it failed).
    """

    key: str
    type: str
    statement: str
    error_class: str
    message: str
    example: str
    threads: int
    workflow_ids: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime

    @property
    def workflows(self) -> int:
        """How many workflows the group holds."""
        return len(self.workflow_ids)

    @property
    def cause(self) -> str:
        """The cause in one line: ``Class: masked message``."""
        return f"{self.error_class}: {self.message}" if self.error_class else self.message


@dataclass(frozen=True, slots=True)
class BulkTarget:
    """A workflow a bulk operation will act on, as the preview saw it."""

    workflow_id: str
    type: str
    status: WorkflowStatus
    version: int  # acted on only if it still has this version
    error: str  # its failed threads' errors (or the workflow's), for the preview's list


@dataclass(frozen=True, slots=True)
class BulkPreview:
    """What ``retry_many`` / ``cancel_many`` will do: every workflow it will touch.

    Attributes:
        action: retry or cancel.
        targets: the workflows it will act on, each with the version it must still have.
        refused: the (workflow id, why) of those asked for that the action does not apply
            to (not failed, already ended, gone): they are left alone.
        incident: the key of the incident it was made from, if any.
        at: when the preview was made.
    """

    action: BulkAction
    targets: tuple[BulkTarget, ...]
    refused: tuple[tuple[str, str], ...]
    incident: str | None
    at: datetime

    def summary(self) -> str:
        """One sentence: what will happen to how many workflows."""
        n = len(self.targets)
        text = f"{self.action.value} {n} workflow{'' if n == 1 else 's'}"
        if self.refused:
            text += f"; {len(self.refused)} left alone"
        return text


@dataclass
class BulkReport:
    """What a bulk operation did, under one ``operation`` id recorded in each history line.

    Attributes:
        operation: the id shared by every history line the operation wrote.
        action: retry or cancel.
        done: the (workflow id, status right after) of the workflows acted on.
        skipped: the (workflow id, why) of those left alone because they changed since
            the preview (another version, gone).
        failed: the (workflow id, error) of those the action was refused for.
    """

    operation: str
    action: BulkAction
    done: list[tuple[str, WorkflowStatus]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, GorchError]] = field(default_factory=list)

    def summary(self) -> str:
        """One sentence: how many were acted on, skipped and failed."""
        verb = "retried" if self.action is BulkAction.RETRY else "cancelled"
        text = f"{verb} {len(self.done)} workflow{'' if len(self.done) == 1 else 's'}"
        again = sum(1 for _, s in self.done if s is WorkflowStatus.FAILED)
        if self.action is BulkAction.RETRY and again:
            text += f" ({again} failed again)"
        if self.skipped:
            text += f"; {len(self.skipped)} skipped (changed since the preview)"
        if self.failed:
            text += f"; {len(self.failed)} refused"
        return text + f" · operation {self.operation}"


_CLASS = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*): (.*)", re.DOTALL)
_MASKS = (
    (re.compile(r"0x[0-9a-fA-F]+"), "<n>"),  # addresses
    (re.compile(r"\b[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b"), "<id>"),  # uuid
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<id>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),  # numbers, and the digits of ids like exp-42
)


def split_error(error: str) -> tuple[str, str]:
    """``("Class", "message")`` of an error as gorch stores it (``Class: message``); the
    class is "" when the text names none."""
    m = _CLASS.fullmatch(error)
    return (m.group(1), m.group(2)) if m else ("", error)


def mask(message: str, ids: Iterable[str] = ()) -> str:
    """``message`` with the given ids, hex ids, uuids and numbers masked, so that failures
    of one cause read the same across workflows."""
    for wid in sorted(ids, key=len, reverse=True):
        if len(wid) >= 4:  # a short id would mask ordinary words
            message = message.replace(wid, "<id>")
    for pattern, repl in _MASKS:
        message = pattern.sub(repl, message)
    return " ".join(message.split())[:500]  # one line: a traceback's tail is no cause


def group(records: Iterable[WorkflowRecord]) -> list[Incident]:
    """The failed threads of ``records`` grouped by cause, the largest group first."""
    groups: dict[tuple[str, str, str, str], list[tuple[WorkflowRecord, str]]] = {}
    for r in records:
        for t in r.threads:
            if t.status is not ThreadStatus.FAILED:
                continue
            error = t.error or r.error or "failed"
            cls, message = split_error(error.splitlines()[0] if error else error)
            cause = (r.type, t.position, cls, mask(message, (r.id,)))
            groups.setdefault(cause, []).append((r, error))
    found = []
    for (type_, statement, cls, message), members in groups.items():
        members.sort(key=lambda m: (m[0].updated_at, m[0].id), reverse=True)
        ids = tuple(dict.fromkeys(r.id for r, _ in members))
        key = hashlib.sha256("\x1f".join((type_, statement, cls, message)).encode())
        found.append(
            Incident(
                key=key.hexdigest()[:12],
                type=type_,
                statement=statement,
                error_class=cls,
                message=message,
                example=members[0][1],
                threads=len(members),
                workflow_ids=ids,
                first_seen=min(r.updated_at for r, _ in members),
                last_seen=members[0][0].updated_at,
            )
        )
    found.sort(key=lambda i: (-i.workflows, -i.last_seen.timestamp(), i.key))
    return found


def target(record: WorkflowRecord) -> BulkTarget:
    """``record`` as a bulk preview lists it."""
    errors = [t.error for t in record.threads if t.status is ThreadStatus.FAILED and t.error]
    return BulkTarget(
        record.id,
        record.type,
        record.status,
        record.version,
        "; ".join(dict.fromkeys(errors)) or record.error or "",
    )


__all__ = [
    "BulkAction",
    "BulkPreview",
    "BulkReport",
    "BulkTarget",
    "Incident",
    "group",
    "mask",
    "split_error",
    "target",
]
