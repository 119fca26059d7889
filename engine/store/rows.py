"""Rows of ``SQLModelStore``: runtime records to column values and back."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import SQLAlchemyError

from engine._records import (
    HistoryEntry,
    ThreadState,
    WaitInfo,
    WaitStatus,
    WorkflowRecord,
    WorkflowStatus,
    person_key,
)
from engine.errors import StoreError


def history_values(e: HistoryEntry) -> dict[str, Any]:
    return {
        "workflow_id": e.workflow_id,
        "at": e.at,
        "kind": e.kind,
        "thread": e.thread,
        "statement": e.statement,
        "actor": e.actor,
        "pc": e.pc,
        "detail": e.detail,
    }


SELDOM_CHANGED = ("status", "next_run_at", "turn", "result", "error", "format", "fingerprint")
"""Checkpoint columns most steps leave as they were (``WorkflowRecord.written``)."""


def workflow_values(r: WorkflowRecord) -> dict[str, Any]:
    """The columns a checkpoint writes (all but the id, the version and the lease)."""
    return {
        "type": r.type,
        "status": WorkflowStatus(r.status).value,
        "state": r.state,
        "threads": [t.to_json() for t in r.threads],
        "pc": r.pc,
        "turn": r.turn,
        "result": r.result,
        "error": r.error,
        "next_run_at": r.next_run_at,
        "format": r.format,
        "fingerprint": r.fingerprint,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    }


def record_of(row: Row[Any] | Mapping[str, Any]) -> WorkflowRecord:
    """The record of a ``workflows`` row (SQLAlchemy's, or a dict by column name)."""
    m = row._mapping if isinstance(row, Row) else row
    return WorkflowRecord(
        id=m["id"],
        type=m["type"],
        status=WorkflowStatus(m["status"]),
        state=m["state"],
        threads=[ThreadState.from_json(t) for t in m["threads"]],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        pc=m["pc"],
        version=m["version"],
        turn=m["turn"],
        result=m["result"],
        error=m["error"],
        next_run_at=m["next_run_at"],
        lease_owner=m["lease_owner"],
        lease_until=m["lease_until"],
        format=m["format"],
        fingerprint=m["fingerprint"],
        written={k: m[k] for k in SELDOM_CHANGED},
    )


def wait_values(w: WaitInfo, position: int = 0) -> dict[str, Any]:
    return {
        "id": w.id,
        "workflow_id": w.workflow_id,
        "thread_id": w.thread_id,
        "wait": w.wait,
        "event": w.event,
        "type": w.type,
        "pc": w.pc,
        "created_at": w.created_at,
        "status": WaitStatus(w.status).value,
        "due_at": w.due_at,
        "data": w.data,
        "attempts": w.attempts,
        "retry_at": w.retry_at,
        "error": w.error,
        "handled": w.handled,
        "position": position,
        "setup_data": w.setup_data,
        "deciders": deciders_column(w.assignees),
        "excluded": deciders_column(w.excluded or None),
    }


def name_token(name: str) -> str:
    """One name as ``deciders_column`` writes it and the inbox's filter looks for it: its
    ``person_key`` as JSON between commas. A name cannot fake a boundary: any comma or quote
    inside it is in the JSON string, where a quote is escaped."""
    return "," + json.dumps(person_key(name)) + ","


def deciders_column(names: tuple[str, ...] | None) -> str | None:
    """Names as one text column (None: no person decides; ``*``: anyone), searched with
    ``LIKE`` for ``name_token``."""
    if names is None:
        return None
    if not names:
        return "*"
    return "," + ",".join(json.dumps(person_key(n)) for n in names) + ","


def wait_of(row: Row[Any] | Mapping[str, Any]) -> WaitInfo:
    """The wait of a ``waits`` row (SQLAlchemy's, or a dict by column name)."""
    m = row._mapping if isinstance(row, Row) else row
    return WaitInfo(
        id=m["id"],
        workflow_id=m["workflow_id"],
        thread_id=m["thread_id"],
        wait=m["wait"],
        event=m["event"],
        type=m["type"],
        pc=m["pc"],
        created_at=m["created_at"],
        status=WaitStatus(m["status"]),
        due_at=m["due_at"],
        data=m["data"],
        attempts=m["attempts"],
        retry_at=m["retry_at"],
        error=m["error"],
        handled=bool(m["handled"]),
        setup_data=m["setup_data"],
    )


def store_error(what: str, workflow_id: str | None, e: SQLAlchemyError) -> StoreError:
    """``e`` (from the store's ``what``) as a ``StoreError`` saying what failed and why."""
    where = f" of workflow {workflow_id!r}" if workflow_id else ""
    reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
    return StoreError(
        f"{what}{where} failed: {type(e).__name__}: {reason}", workflow_id=workflow_id
    )


def set_seqs(entries: Sequence[HistoryEntry], seqs: Sequence[int]) -> None:
    """Give written history entries the ids the database gave them."""
    for e, seq in zip(entries, seqs, strict=True):
        e.seq = seq
