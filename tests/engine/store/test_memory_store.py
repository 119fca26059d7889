"""MemoryStore: copies in and out, leases, versioned checkpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine import LeaseLost, MemoryStore, WorkflowBusy, WorkflowNotFound, WorkflowStatus
from engine._records import HistoryEntry, ThreadState, WorkflowRecord

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def record(wid: str = "w1") -> WorkflowRecord:
    return WorkflowRecord(
        id=wid,
        type="T",
        status=WorkflowStatus.RUNNING,
        state={"x": 1},
        threads=[ThreadState("main")],
        created_at=NOW,
        updated_at=NOW,
        next_run_at=NOW,
    )


def test_create_once_and_load_copies() -> None:
    store = MemoryStore()
    assert store.create(record(), [HistoryEntry("w1", NOW, "created")]) is True
    assert store.create(record(), []) is False
    loaded = store.load("w1")
    loaded.threads[0].position = "changed"
    loaded.state = {"x": 2}
    again = store.load("w1")
    assert again.threads[0].position == ""
    assert again.state == {"x": 1}
    assert [h.kind for h in store.history("w1")] == ["created"]
    with pytest.raises(WorkflowNotFound):
        store.load("nope")


def test_lease_is_exclusive_until_it_expires_or_is_released() -> None:
    store = MemoryStore()
    store.create(record(), [])
    store.acquire("w1", "a", now=NOW, until=NOW + timedelta(minutes=1))
    with pytest.raises(WorkflowBusy) as err:
        store.acquire("w1", "b", now=NOW, until=NOW + timedelta(minutes=1))
    assert err.value.owner == "a"
    assert store.due_workflows(NOW) == []  # leased: not due for anyone else
    store.acquire("w1", "b", now=NOW + timedelta(minutes=2), until=NOW + timedelta(minutes=3))
    store.release("w1", "a")  # no longer a's: nothing happens
    with pytest.raises(WorkflowBusy):
        store.acquire("w1", "c", now=NOW + timedelta(minutes=2), until=NOW)
    store.release("w1", "b")
    store.acquire("w1", "c", now=NOW, until=NOW + timedelta(minutes=1))


def test_checkpoint_needs_the_lease_and_the_version() -> None:
    store = MemoryStore()
    store.create(record(), [])
    rec = store.acquire("w1", "a", now=NOW, until=NOW + timedelta(minutes=1))
    rec.pc = 1
    store.checkpoint(rec, owner="a", waits=None, history=[HistoryEntry("w1", NOW, "step")])
    assert rec.version == 1
    assert store.load("w1").pc == 1

    stale = rec.copy()
    stale.version = 0
    with pytest.raises(LeaseLost):
        store.checkpoint(stale, owner="a", waits=None, history=[])
    with pytest.raises(LeaseLost):
        store.checkpoint(rec, owner="intruder", waits=None, history=[])
    assert store.load("w1").version == 1
    assert [h.kind for h in store.history("w1")] == ["step"]
