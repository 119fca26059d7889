"""The ``Store`` contract, method by method, on every backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from engine import (
    HistoryEntry,
    LeaseLost,
    Store,
    WaitInfo,
    WaitStatus,
    WorkflowBusy,
    WorkflowNotDue,
    WorkflowNotFound,
    WorkflowStatus,
)
from engine._records import FORMAT_VERSION, Phase, ThreadState, ThreadStatus, WorkflowRecord

T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
HOSTILE = [
    'it\'s "quoted"',
    "'; DROP TABLE workflows; --",
    "emoji 🚀🔥 ünïcödé 中文",
    "line one\nline two\r\n\ttabbed",
    "back\\slash %_ like",
]


LEASE_CLOCK = "caller"
"""The contract's leases go by the times it passes (T0 and later) on every backend, so on
PostgreSQL by the caller's clock (the ``store`` fixture reads this). The database's clock
has its own tests: test_lease_clock.py."""


def record(
    wid: str = "wf-1",
    *,
    type: str = "Expense",
    status: WorkflowStatus = WorkflowStatus.RUNNING,
    created_at: datetime = T0,
    next_run_at: datetime | None = T0,
    state: dict[str, Any] | None = None,
) -> WorkflowRecord:
    return WorkflowRecord(
        id=wid,
        type=type,
        status=status,
        state=state if state is not None else {"amount": 5, "nested": {"list": [1, "two", None]}},
        threads=[
            ThreadState("main", position="first action", phase=Phase.DONE),
            ThreadState(
                "g1",
                go="notification goroutine",
                status=ThreadStatus.WAITING,
                attempts=2,
                retry_at=T0 + timedelta(seconds=30),
                error="ConnectionError: down",
            ),
        ],
        created_at=created_at,
        updated_at=created_at,
        next_run_at=next_run_at,
    )


def wait(
    wid: str = "wf-1",
    wait_id: str = "w1",
    *,
    event: str = "approve",
    type: str = "user_action",
    created_at: datetime = T0,
    status: WaitStatus = WaitStatus.SET_UP,
    due_at: datetime | None = None,
    retry_at: datetime | None = None,
) -> WaitInfo:
    return WaitInfo(
        id=wait_id,
        workflow_id=wid,
        thread_id="main",
        wait="waiting for approval",
        event=event,
        type=type,
        pc=3,
        created_at=created_at,
        status=status,
        due_at=due_at,
        data={"input": {"type": "object"}},
        retry_at=retry_at,
    )


def entry(wid: str = "wf-1", kind: str = "note", **detail: Any) -> HistoryEntry:
    return HistoryEntry(wid, T0, kind, "main", "first action", "alice", 1, dict(detail))


def leased(store: Store, wid: str = "wf-1", owner: str = "w-1") -> WorkflowRecord:
    """Create ``wid`` and take its lease for ``owner``; return the leased record."""
    store.create(record(wid), [])
    return store.acquire(wid, owner, now=T0, until=T0 + timedelta(minutes=5))


def history_kinds(store: Store, wid: str = "wf-1") -> list[str]:
    return [e.kind for e in store.history(wid)]


# -- create / load ------------------------------------------------------------------------------


def test_create_then_load_round_trips_every_field(store: Store) -> None:
    rec = record()
    rec.result, rec.error, rec.pc, rec.turn = {"ok": [1, 2]}, "boom", 7, 3
    assert store.create(rec, [entry(kind="created")]) is True
    assert store.load("wf-1") == rec
    assert store.load("wf-1").format == FORMAT_VERSION


def test_create_is_idempotent_on_the_id(store: Store) -> None:
    assert store.create(record(type="Expense"), [entry(kind="created")])
    assert store.create(record(type="Other", state={"x": 1}), [entry(kind="again")]) is False
    loaded = store.load("wf-1")
    assert loaded.type == "Expense"
    assert loaded.state["amount"] == 5
    assert history_kinds(store) == ["created"]


def test_create_assigns_increasing_seqs(store: Store) -> None:
    entries = [entry(kind="a"), entry(kind="b")]
    store.create(record(), entries)
    assert 0 < entries[0].seq < entries[1].seq
    assert [e.seq for e in store.history("wf-1")] == [e.seq for e in entries]


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.load("nope"),
        lambda s: s.load_waits("nope"),
        lambda s: s.history("nope"),
        lambda s: s.acquire("nope", "o", now=T0, until=T0),
        lambda s: s.renew("nope", "o", until=T0),
        lambda s: s.checkpoint(record("nope"), owner="o", waits=None, history=[]),
        lambda s: s.update_wait(wait("nope"), owner="o"),
        lambda s: s.delete_wait("w1", workflow_id="nope", owner="o"),
        lambda s: s.append_history([entry("nope")], owner="o"),
    ],
    ids=[
        "load",
        "load_waits",
        "history",
        "acquire",
        "renew",
        "checkpoint",
        "update_wait",
        "delete_wait",
        "append_history",
    ],
)
def test_unknown_workflow_raises_not_found(store: Store, call: Any) -> None:
    with pytest.raises(WorkflowNotFound) as e:
        call(store)
    assert e.value.workflow_id == "nope"


def test_records_are_copied_in_and_out(store: Store) -> None:
    rec = record()
    store.create(rec, [])
    rec.threads[0].position, rec.status, rec.state = "elsewhere", WorkflowStatus.FAILED, {}
    out = store.load("wf-1")
    assert out.threads[0].position == "first action"
    out.threads.append(ThreadState("g2"))
    out.threads[1].attempts = 99
    out.state, out.pc = {"replaced": True}, 42
    again = store.load("wf-1")
    assert [t.id for t in again.threads] == ["main", "g1"]
    assert again.threads[1].attempts == 2
    assert again.state["amount"] == 5
    assert again.status is WorkflowStatus.RUNNING
    assert again.pc == 0


def test_waits_and_history_are_copied_out(store: Store) -> None:
    rec = leased(store)
    store.checkpoint(rec, owner="w-1", waits=[wait()], history=[entry(step="x")])
    store.load_waits("wf-1")[0].data["input"] = "changed"
    store.list_waits()[0].data.clear()
    store.history("wf-1")[0].detail["step"] = "changed"
    assert store.load_waits("wf-1")[0].data == {"input": {"type": "object"}}
    assert store.history("wf-1")[0].detail == {"step": "x"}


# -- leases -------------------------------------------------------------------------------------


def test_acquire_takes_a_free_lease(store: Store) -> None:
    store.create(record(), [])
    got = store.acquire("wf-1", "w-1", now=T0, until=T0 + timedelta(minutes=5))
    assert (got.lease_owner, got.lease_until) == ("w-1", T0 + timedelta(minutes=5))
    stored = store.load("wf-1")
    assert (stored.lease_owner, stored.lease_until) == ("w-1", T0 + timedelta(minutes=5))
    assert got.state == stored.state and got.version == stored.version


def test_acquire_of_a_held_lease_is_busy(store: Store) -> None:
    leased(store, owner="w-1")
    with pytest.raises(WorkflowBusy) as e:
        store.acquire("wf-1", "w-2", now=T0 + timedelta(minutes=4), until=T0 + timedelta(hours=1))
    assert e.value.owner == "w-1"
    assert e.value.workflow_id == "wf-1"
    assert store.load("wf-1").lease_owner == "w-1"


@pytest.mark.parametrize(
    ("status", "next_run_at", "taken"),
    [
        (WorkflowStatus.RUNNING, T0, True),  # due exactly now
        (WorkflowStatus.RUNNING, T0 + timedelta(seconds=1), False),  # a back-off not over yet
        (WorkflowStatus.RUNNING, None, False),
        (WorkflowStatus.WAITING, T0, False),
        (WorkflowStatus.FINISHED, T0, False),  # another poller ran it to its end
    ],
)
def test_acquire_for_a_poller_takes_only_a_due_workflow(
    store: Store, status: WorkflowStatus, next_run_at: datetime | None, taken: bool
) -> None:
    store.create(record(status=status, next_run_at=next_run_at), [])
    until = T0 + timedelta(minutes=5)
    if taken:
        assert store.acquire("wf-1", "w-1", now=T0, until=until, due=True).lease_owner == "w-1"
        with pytest.raises(WorkflowBusy):  # leased now: not for another poller
            store.acquire("wf-1", "w-2", now=T0, until=until, due=True)
        return
    with pytest.raises(WorkflowNotDue):
        store.acquire("wf-1", "w-1", now=T0, until=until, due=True)
    assert store.load("wf-1").lease_owner is None  # nothing changed
    with pytest.raises(WorkflowNotDue):  # an unknown id is simply not due
        store.acquire("nope", "w-1", now=T0, until=until, due=True)


def test_acquire_takes_over_an_expired_lease(store: Store) -> None:
    leased(store, owner="w-1")
    later = T0 + timedelta(minutes=5)  # the lease ran until exactly now: expired
    got = store.acquire("wf-1", "w-2", now=later, until=later + timedelta(minutes=5))
    assert got.lease_owner == "w-2"
    with pytest.raises(LeaseLost):
        store.renew("wf-1", "w-1", until=later + timedelta(hours=1))


def test_acquire_again_by_the_same_owner_extends(store: Store) -> None:
    leased(store, owner="w-1")
    got = store.acquire("wf-1", "w-1", now=T0, until=T0 + timedelta(hours=2))
    assert got.lease_until == T0 + timedelta(hours=2)


def test_renew_extends_the_owners_lease(store: Store) -> None:
    leased(store, owner="w-1")
    store.renew("wf-1", "w-1", until=T0 + timedelta(hours=1))
    assert store.load("wf-1").lease_until == T0 + timedelta(hours=1)


def test_renew_by_another_owner_is_lease_lost(store: Store) -> None:
    leased(store, owner="w-1")
    with pytest.raises(LeaseLost) as e:
        store.renew("wf-1", "w-2", until=T0 + timedelta(hours=1))
    assert e.value.owner == "w-1"
    assert store.load("wf-1").lease_until == T0 + timedelta(minutes=5)


def test_release_only_by_the_owner(store: Store) -> None:
    leased(store, owner="w-1")
    store.release("wf-1", "w-2")
    assert store.load("wf-1").lease_owner == "w-1"
    store.release("wf-1", "w-1")
    stored = store.load("wf-1")
    assert (stored.lease_owner, stored.lease_until) == (None, None)
    store.release("nope", "w-1")  # no error for an unknown workflow


# -- checkpoint ---------------------------------------------------------------------------------


def test_checkpoint_writes_the_record_and_bumps_the_version(store: Store) -> None:
    rec = leased(store)
    rec.state = {"amount": 6}
    rec.status, rec.pc, rec.turn, rec.result = WorkflowStatus.FINISHED, 2, 1, [1, "x"]
    rec.threads[0].status = ThreadStatus.FINISHED
    rec.next_run_at = None
    store.checkpoint(rec, owner="w-1", waits=None, history=[])
    assert rec.version == 1
    stored = store.load("wf-1")
    assert stored == rec
    assert stored.lease_owner == "w-1"  # a checkpoint keeps the lease


def test_checkpoint_with_a_stale_version_writes_nothing(store: Store) -> None:
    rec = leased(store)
    store.checkpoint(rec, owner="w-1", waits=[wait()], history=[entry(kind="one")])
    stale = store.load("wf-1")
    stale.version -= 1
    stale.state = {"stale": True}
    with pytest.raises(LeaseLost) as e:
        store.checkpoint(stale, owner="w-1", waits=[], history=[entry(kind="two")])
    assert e.value.workflow_id == "wf-1"
    assert stale.version == 0
    assert store.load("wf-1").state["amount"] == 5
    assert store.load("wf-1").version == 1
    assert [w.id for w in store.load_waits("wf-1")] == ["w1"]
    assert history_kinds(store) == ["one"]


def test_checkpoint_by_a_lost_owner_writes_nothing(store: Store) -> None:
    rec = leased(store, owner="w-1")
    later = T0 + timedelta(minutes=6)
    store.acquire("wf-1", "w-2", now=later, until=later + timedelta(minutes=5))
    rec.state = {"mine": True}
    entries = [entry(kind="late")]
    with pytest.raises(LeaseLost) as e:
        store.checkpoint(rec, owner="w-1", waits=[wait()], history=entries)
    assert e.value.owner == "w-2"
    assert rec.version == 0
    assert entries[0].seq == 0
    assert store.load("wf-1").state["amount"] == 5
    assert store.load_waits("wf-1") == []
    assert history_kinds(store) == []


def test_checkpoints_write_status_and_next_run_only_when_they_change(store: Store) -> None:
    """A store may leave unchanged indexed columns out of its UPDATE: each change still lands,
    after checkpoints that left them alone."""
    rec = leased(store)
    for _ in range(2):  # unchanged: the state still lands
        rec.state = {"amount": rec.pc}
        rec.pc += 1
        store.checkpoint(rec, owner="w-1", waits=None, history=[])
    stored = store.load("wf-1")
    assert (stored.status, stored.next_run_at, stored.state) == (rec.status, T0, {"amount": 1})
    rec.next_run_at = T0 + timedelta(hours=1)
    store.checkpoint(rec, owner="w-1", waits=None, history=[])
    assert store.load("wf-1").next_run_at == T0 + timedelta(hours=1)
    rec.status, rec.next_run_at = WorkflowStatus.WAITING, None
    store.checkpoint(rec, owner="w-1", waits=None, history=[])
    store.checkpoint(rec, owner="w-1", waits=None, history=[])
    stored = store.load("wf-1")
    assert (stored.status, stored.next_run_at, stored.version) == (WorkflowStatus.WAITING, None, 5)
    for result in [1, True, [1], [True], None]:  # 1 and True are different results
        rec.result, rec.turn, rec.fingerprint = result, rec.turn + 1, f"f{rec.turn}"
        store.checkpoint(rec, owner="w-1", waits=None, history=[])
        stored = store.load("wf-1")
        assert (stored.result, type(stored.result)) == (result, type(result))
        assert (stored.turn, stored.fingerprint) == (rec.turn, rec.fingerprint)


@pytest.mark.parametrize("rows", [0, 1, 3])
def test_a_lost_checkpoint_that_changes_no_wait_writes_nothing(store: Store, rows: int) -> None:
    """The common checkpoint (a step) is one statement or a transaction on the driver: a lost
    lease leaves no trace of it either, history included."""
    rec = leased(store, owner="w-1")
    later = T0 + timedelta(minutes=6)
    store.acquire("wf-1", "w-2", now=later, until=later + timedelta(minutes=5))
    rec.state = {"mine": True}
    entries = [entry(kind=f"late{i}") for i in range(rows)]
    with pytest.raises(LeaseLost) as e:
        store.checkpoint(rec, owner="w-1", waits=None, history=entries)
    assert e.value.owner == "w-2"
    assert rec.version == 0 and all(h.seq == 0 for h in entries)
    assert store.load("wf-1").state["amount"] == 5
    assert history_kinds(store) == []
    store.checkpoint(store.load("wf-1"), owner="w-2", waits=None, history=[entry(kind="next")])
    assert history_kinds(store) == ["next"]  # the connection is fine for the next writer


@pytest.mark.parametrize("rows", [1, 3, 64, 65, 9_000])
def test_checkpoint_writes_any_number_of_history_rows_in_order(store: Store, rows: int) -> None:
    # 9,000 rows of 8 values pass PostgreSQL's 65,535 parameters per statement: a workflow
    # starting thousands of goroutines in one session writes that many lines at once.
    rec = leased(store)
    entries = [entry(kind=f"k{i}") for i in range(rows)]
    store.checkpoint(rec, owner="w-1", waits=None, history=entries)
    assert history_kinds(store) == [f"k{i}" for i in range(rows)]
    seqs = [e.seq for e in entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == rows and seqs[0] > 0
    assert [e.seq for e in store.history("wf-1")] == seqs
    assert store.load("wf-1").version == 1


def test_checkpoint_replaces_waits_only_when_given(store: Store) -> None:
    rec = leased(store)
    w1, w2 = wait(wait_id="w1", event="approve"), wait(wait_id="w2", event="timeout")
    store.checkpoint(rec, owner="w-1", waits=[w1, w2], history=[])
    assert store.load_waits("wf-1") == [w1, w2]
    store.checkpoint(rec, owner="w-1", waits=None, history=[])
    assert store.load_waits("wf-1") == [w1, w2]
    w2.status, w2.handled = WaitStatus.PENDING_TEARDOWN, True
    w3 = wait(wait_id="w3", event="later")
    store.checkpoint(rec, owner="w-1", waits=[w3, w2], history=[])
    assert store.load_waits("wf-1") == [w3, w2]  # w1 gone, w2 updated, order as given
    store.checkpoint(rec, owner="w-1", waits=[], history=[])
    assert store.load_waits("wf-1") == []
    assert rec.version == 4


def test_checkpoint_waits_of_other_workflows_are_untouched(store: Store) -> None:
    a = leased(store, "a")
    b = leased(store, "b")
    store.checkpoint(a, owner="w-1", waits=[wait("a", "wa")], history=[])
    store.checkpoint(b, owner="w-1", waits=[wait("b", "wb")], history=[])
    store.checkpoint(a, owner="w-1", waits=[], history=[])
    assert [w.id for w in store.load_waits("b")] == ["wb"]


def test_checkpoint_appends_history_with_seqs(store: Store) -> None:
    rec = leased(store)
    first = [entry(kind="step"), entry(kind="wait")]
    store.checkpoint(rec, owner="w-1", waits=None, history=first)
    second = [entry(kind="callback", input={"approved": True})]
    store.checkpoint(rec, owner="w-1", waits=None, history=second)
    stored = store.history("wf-1")
    assert [e.kind for e in stored] == ["step", "wait", "callback"]
    assert [e.seq for e in stored] == [e.seq for e in first + second]
    assert stored[0].seq < stored[1].seq < stored[2].seq
    assert stored[2].detail == {"input": {"approved": True}}
    assert (stored[2].thread, stored[2].statement, stored[2].actor, stored[2].pc) == (
        "main",
        "first action",
        "alice",
        1,
    )


# -- waits --------------------------------------------------------------------------------------


def test_update_wait_writes_its_status(store: Store) -> None:
    rec = leased(store)
    w = wait(status=WaitStatus.PENDING_SETUP, retry_at=T0)
    store.checkpoint(rec, owner="w-1", waits=[w], history=[])
    w.status, w.attempts, w.error = WaitStatus.SETUP_ERROR, 1, "ConnectionError: down"
    w.retry_at = T0 + timedelta(seconds=1)
    store.update_wait(w, owner="w-1")
    assert store.load_waits("wf-1") == [w]


def test_update_wait_never_reopens_a_closed_wait(store: Store) -> None:
    """A set-up that outlived its lease reports back after another session closed the wait."""
    rec = leased(store)
    closed = wait(status=WaitStatus.TEARDOWN_ERROR, retry_at=T0)
    store.checkpoint(rec, owner="w-1", waits=[closed], history=[])
    late = wait(status=WaitStatus.SET_UP)
    store.update_wait(late, owner="w-1")
    assert store.load_waits("wf-1") == [closed]
    late.status = WaitStatus.SETUP_ERROR
    store.update_wait(late, owner="w-1")
    assert store.load_waits("wf-1") == [closed]
    closed.status, closed.attempts = WaitStatus.PENDING_TEARDOWN, 2  # closed to closed: written
    store.update_wait(closed, owner="w-1")
    assert store.load_waits("wf-1") == [closed]


def test_update_of_a_gone_wait_is_a_no_op(store: Store) -> None:
    leased(store)
    store.update_wait(wait(wait_id="ghost"), owner="w-1")
    assert store.load_waits("wf-1") == []


def test_delete_wait(store: Store) -> None:
    rec = leased(store)
    store.checkpoint(rec, owner="w-1", waits=[wait(wait_id="w1"), wait(wait_id="w2")], history=[])
    store.delete_wait("w1", workflow_id="wf-1", owner="w-1")
    store.delete_wait("never-was", workflow_id="wf-1", owner="w-1")
    assert [w.id for w in store.load_waits("wf-1")] == ["w2"]


def test_append_history_keeps_order_across_workflows(store: Store) -> None:
    store.create(record("a"), [entry("a", "created")])
    store.create(record("b"), [entry("b", "created")])
    for wid in ("a", "b"):  # one owner may hold both leases
        store.acquire(wid, "w-1", now=T0, until=T0 + timedelta(minutes=5))
    batch = [entry("a", "setup_error"), entry("b", "teardown_error"), entry("a", "again")]
    store.append_history(batch, owner="w-1")
    store.append_history([], owner="w-1")
    assert batch[0].seq < batch[1].seq < batch[2].seq
    assert history_kinds(store, "a") == ["created", "setup_error", "again"]
    assert history_kinds(store, "b") == ["created", "teardown_error"]


# -- writes outside a checkpoint check the lease ------------------------------------------------

SETUP_DATA = {"channel": "C1", "ts": "1700000000.000100", "nested": [1, 2.5, None, {"ok": True}]}


def test_set_up_data_is_written_by_update_wait_and_read_back_everywhere(store: Store) -> None:
    rec = leased(store)
    w = wait(status=WaitStatus.PENDING_SETUP, retry_at=T0)
    store.checkpoint(rec, owner="w-1", waits=[w], history=[])
    assert store.load_waits("wf-1")[0].setup_data is None
    w.status, w.retry_at, w.setup_data = WaitStatus.SET_UP, None, SETUP_DATA
    store.update_wait(w, owner="w-1")
    assert store.load_waits("wf-1") == [w]
    assert store.list_waits()[0].setup_data == SETUP_DATA
    # A checkpoint that rewrites the waits keeps it; so does closing the wait.
    w.status, w.retry_at = WaitStatus.PENDING_TEARDOWN, T0
    store.checkpoint(rec, owner="w-1", waits=[w], history=[])
    assert store.load_waits("wf-1")[0].setup_data == SETUP_DATA
    assert store.due_waits(T0)[0].setup_data == SETUP_DATA


def test_set_up_data_is_copied_in_and_out(store: Store) -> None:
    rec = leased(store)
    data = {"ids": [1, 2]}
    w = wait()
    w.setup_data = data
    store.checkpoint(rec, owner="w-1", waits=[w], history=[])
    data["ids"].append(3)  # the caller's object changes: the stored one does not
    out = store.load_waits("wf-1")[0]
    out.setup_data["ids"].clear()
    assert store.load_waits("wf-1")[0].setup_data == {"ids": [1, 2]}
    assert w.copy().setup_data is not w.setup_data


@pytest.mark.parametrize("holder", ["w-2", None], ids=["taken-over", "released"])
def test_writes_outside_a_checkpoint_need_the_lease(store: Store, holder: str | None) -> None:
    """update_wait, delete_wait and append_history by a session that lost its lease are
    refused with LeaseLost, and write nothing."""
    rec = leased(store, owner="w-1")
    w1, w2 = wait(wait_id="w1", status=WaitStatus.PENDING_SETUP, retry_at=T0), wait(wait_id="w2")
    store.checkpoint(rec, owner="w-1", waits=[w1, w2], history=[entry(kind="wait")])
    store.release("wf-1", "w-1")
    if holder is not None:
        store.acquire("wf-1", holder, now=T0, until=T0 + timedelta(minutes=5))
    before = (store.load_waits("wf-1"), history_kinds(store), store.load("wf-1"))
    late = w1.copy()
    late.status, late.retry_at, late.setup_data = WaitStatus.SET_UP, None, {"message": "m1"}
    calls = [
        lambda: store.update_wait(late, owner="w-1"),
        lambda: store.delete_wait("w2", workflow_id="wf-1", owner="w-1"),
        lambda: store.delete_wait("never-was", workflow_id="wf-1", owner="w-1"),
        lambda: store.append_history([entry(kind="setup_error")], owner="w-1"),
    ]
    for call in calls:
        with pytest.raises(LeaseLost) as e:
            call()
        assert e.value.workflow_id == "wf-1"
        assert e.value.owner == holder
    assert (store.load_waits("wf-1"), history_kinds(store), store.load("wf-1")) == before


def test_append_history_is_all_or_nothing_across_leases(store: Store) -> None:
    leased(store, "a", owner="w-1")
    leased(store, "b", owner="w-2")
    with pytest.raises(LeaseLost) as e:
        store.append_history([entry("a", "one"), entry("b", "two"), entry("a", "three")],
                             owner="w-1")  # fmt: skip
    assert e.value.workflow_id == "b"
    assert history_kinds(store, "a") == [] and history_kinds(store, "b") == []


def test_the_lease_holder_writes_outside_a_checkpoint(store: Store) -> None:
    """The owner check is the only condition: the holder's writes go through (an expired
    lease that nobody took over still counts, as for a checkpoint)."""
    rec = leased(store, owner="w-1")
    leased(store, "other", owner="w-1")
    w1, w2 = wait(wait_id="w1", status=WaitStatus.PENDING_SETUP, retry_at=T0), wait(wait_id="w2")
    store.checkpoint(rec, owner="w-1", waits=[w1, w2], history=[])
    w1.status, w1.retry_at, w1.setup_data = WaitStatus.SET_UP, None, "plain text is JSON too"
    store.update_wait(w1, owner="w-1")
    store.delete_wait("w2", workflow_id="wf-1", owner="w-1")
    store.delete_wait("w1", workflow_id="other", owner="w-1")  # not that workflow's wait
    entries = [entry(kind="teardown_error")]
    store.append_history(entries, owner="w-1")
    assert store.load_waits("wf-1") == [w1]
    assert history_kinds(store) == ["teardown_error"] and entries[0].seq > 0


# -- listing ------------------------------------------------------------------------------------


def seed_list(store: Store) -> None:
    statuses = [
        WorkflowStatus.RUNNING,
        WorkflowStatus.WAITING,
        WorkflowStatus.FINISHED,
        WorkflowStatus.WAITING,
        WorkflowStatus.FAILED,
    ]
    for i, status in enumerate(statuses):
        store.create(
            record(
                f"wf-{i}",
                type="Expense" if i % 2 == 0 else "Order",
                status=status,
                created_at=T0 + timedelta(minutes=i),
            ),
            [],
        )
    store.create(record("wf-tie", created_at=T0 + timedelta(minutes=4)), [])  # same as wf-4


def test_list_workflows_newest_first(store: Store) -> None:
    seed_list(store)
    assert [r.id for r in store.list_workflows()] == [
        "wf-tie",
        "wf-4",
        "wf-3",
        "wf-2",
        "wf-1",
        "wf-0",
    ]


def test_list_workflows_filters(store: Store) -> None:
    seed_list(store)
    assert [r.id for r in store.list_workflows(status=WorkflowStatus.WAITING)] == ["wf-3", "wf-1"]
    assert [r.id for r in store.list_workflows(type="Order")] == ["wf-3", "wf-1"]
    assert [r.id for r in store.list_workflows(type="Expense", status=WorkflowStatus.FAILED)] == [
        "wf-4"
    ]
    assert [r.id for r in store.list_workflows(search="tie")] == ["wf-tie"]
    assert [r.id for r in store.list_workflows(search="WF")] == []  # case-sensitive
    assert len(store.list_workflows(search="")) == 6


def test_list_workflows_pages(store: Store) -> None:
    seed_list(store)
    pages = [[r.id for r in store.list_workflows(limit=4, offset=o)] for o in (0, 4, 8)]
    assert pages == [["wf-tie", "wf-4", "wf-3", "wf-2"], ["wf-1", "wf-0"], []]


def test_search_takes_like_wildcards_literally(store: Store) -> None:
    for wid in ["100%", "1000", "a_b", "axb"]:
        store.create(record(wid), [])
    assert [r.id for r in store.list_workflows(search="%")] == ["100%"]
    assert [r.id for r in store.list_workflows(search="_")] == ["a_b"]


def test_count_workflows(store: Store) -> None:
    seed_list(store)
    counts = store.count_workflows()
    assert counts == {
        WorkflowStatus.RUNNING: 2,
        WorkflowStatus.WAITING: 2,
        WorkflowStatus.FINISHED: 1,
        WorkflowStatus.FAILED: 1,
        WorkflowStatus.CANCELLED: 0,
    }
    assert store.count_workflows(type="Order")[WorkflowStatus.WAITING] == 2
    assert sum(store.count_workflows(type="None such").values()) == 0


def test_list_waits_open_newest_first(store: Store) -> None:
    a, b = leased(store, "a"), leased(store, "b")
    store.checkpoint(
        a,
        owner="w-1",
        waits=[
            wait("a", "a1", created_at=T0),
            wait("a", "a2", type="timeout", created_at=T0 + timedelta(seconds=2)),
            wait("a", "a3", status=WaitStatus.PENDING_TEARDOWN, created_at=T0),
        ],
        history=[],
    )
    store.checkpoint(
        b,
        owner="w-1",
        waits=[
            wait("b", "b1", status=WaitStatus.PENDING_SETUP, created_at=T0 + timedelta(seconds=1)),
            wait("b", "b2", status=WaitStatus.SETUP_ERROR, created_at=T0 + timedelta(seconds=3)),
            wait("b", "b3", status=WaitStatus.TEARDOWN_ERROR, created_at=T0),
        ],
        history=[],
    )
    assert [w.id for w in store.list_waits()] == ["b2", "a2", "b1", "a1"]
    assert [w.id for w in store.list_waits(workflow_id="a")] == ["a2", "a1"]
    assert [w.id for w in store.list_waits(type="timeout")] == ["a2"]
    assert [w.id for w in store.list_waits(limit=2)] == ["b2", "a2"]
    assert store.list_waits(workflow_id="nope") == []


# -- due work -----------------------------------------------------------------------------------


def test_due_workflows(store: Store) -> None:
    now = T0 + timedelta(hours=1)
    store.create(record("late", next_run_at=now - timedelta(minutes=2)), [])
    store.create(record("due", next_run_at=now - timedelta(minutes=1)), [])
    store.create(record("exactly", next_run_at=now), [])
    store.create(record("future", next_run_at=now + timedelta(seconds=1)), [])
    store.create(record("none", next_run_at=None), [])
    store.create(
        record("waiting", status=WorkflowStatus.WAITING, next_run_at=now - timedelta(hours=1)), []
    )
    store.create(record("held", next_run_at=now - timedelta(hours=1)), [])
    store.acquire("held", "w-1", now=now, until=now + timedelta(seconds=1))
    store.create(record("expired", next_run_at=now - timedelta(hours=1)), [])
    store.acquire("expired", "w-1", now=T0, until=now)
    assert store.due_workflows(now) == ["expired", "late", "due", "exactly"]
    assert store.due_workflows(now, limit=2) == ["expired", "late"]


def test_due_waits(store: Store) -> None:
    now = T0 + timedelta(hours=1)
    rec = leased(store)
    waits = [
        wait(wait_id="timer-due", type="timeout", due_at=now - timedelta(minutes=1)),
        wait(wait_id="timer-now", type="timeout", due_at=now),
        wait(wait_id="timer-later", type="timeout", due_at=now + timedelta(minutes=1)),
        wait(wait_id="plain", retry_at=None),
        wait(
            wait_id="setup-retry",
            status=WaitStatus.SETUP_ERROR,
            retry_at=now - timedelta(minutes=3),
        ),
        wait(
            wait_id="teardown",
            status=WaitStatus.PENDING_TEARDOWN,
            retry_at=now - timedelta(minutes=2),
        ),
        wait(  # a closed timer fires no more; only its teardown would be due
            wait_id="closed-timer",
            type="timeout",
            status=WaitStatus.PENDING_TEARDOWN,
            due_at=now - timedelta(hours=1),
        ),
        wait(wait_id="retry-later", status=WaitStatus.SETUP_ERROR, retry_at=now + timedelta(1)),
    ]
    store.checkpoint(rec, owner="w-1", waits=waits, history=[])
    due = store.due_waits(now)
    assert [w.id for w in due] == ["setup-retry", "teardown", "timer-due", "timer-now"]
    assert due[2] == waits[0]
    assert [w.id for w in store.due_waits(now, limit=1)] == ["setup-retry"]


# -- values -------------------------------------------------------------------------------------


def test_datetimes_come_back_aware_utc(store: Store) -> None:
    rec = leased(store)
    w = wait(due_at=T0 + timedelta(days=3), retry_at=T0 + timedelta(microseconds=1))
    store.checkpoint(rec, owner="w-1", waits=[w], history=[entry()])
    stored = store.load("wf-1")
    got = store.load_waits("wf-1")[0]
    values = [
        stored.created_at,
        stored.updated_at,
        stored.next_run_at,
        stored.lease_until,
        stored.threads[1].retry_at,
        got.created_at,
        got.due_at,
        got.retry_at,
        store.history("wf-1")[0].at,
    ]
    for v in values:
        assert v is not None and v.tzinfo is not None and v.utcoffset() == timedelta(0)
    assert got.retry_at == T0 + timedelta(microseconds=1)


def test_other_offsets_are_the_same_instant(store: Store, backend: str) -> None:
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))
    store.create(record(created_at=plus_two, next_run_at=plus_two), [])
    stored = store.load("wf-1")
    assert stored.created_at == T0
    assert store.due_workflows(T0) == ["wf-1"]
    assert store.due_workflows(T0 - timedelta(microseconds=1)) == []
    if backend != "memory":  # memory keeps the object it was given
        assert stored.created_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_round_trip(store: Store, text: str) -> None:
    rec = record(text, type=text, state={text: text, "list": [text]})
    rec.threads[1].id, rec.threads[1].error, rec.error, rec.result = text, text, text, {text: text}
    assert store.create(rec, [entry(text, text, value=text)])
    leased_rec = store.acquire(text, text, now=T0, until=T0 + timedelta(minutes=1))
    w = wait(text, text, event=text, type=text)
    w.data = {text: [text]}
    store.checkpoint(leased_rec, owner=text, waits=[w], history=[entry(text, "x", v=text)])
    assert store.load(text).state == {text: text, "list": [text]}
    assert store.load(text).threads[1].id == text
    assert store.load(text).result == {text: text}
    assert store.load_waits(text) == [w]
    assert [e.detail for e in store.history(text)] == [{"value": text}, {"v": text}]
    assert [r.id for r in store.list_workflows(search=text)] == [text]
    assert [r.id for r in store.list_workflows(type=text)] == [text]
    assert [x.id for x in store.list_waits(type=text)] == [text]
    assert store.count_workflows(type=text)[WorkflowStatus.RUNNING] == 1
    assert store.load(text).lease_owner == text
