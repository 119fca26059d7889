"""Leases on PostgreSQL's clock: whether a lease has expired, and when a lease taken, renewed
or extended ends, go by the database's ``now()``, however far the caller's clock is off.
Timers (``next_run_at``) stay on the caller's clock. Elsewhere the caller's clock decides."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from engine import LeaseLost, SQLModelStore, StoreError, WorkflowBusy, WorkflowNotDue
from engine._records import HistoryEntry, ThreadState, WaitInfo, WorkflowRecord, WorkflowStatus

HOUR = timedelta(hours=1)
LEASE = timedelta(minutes=5)
SLACK = timedelta(seconds=5)  # a generous bound on the time a test's few statements take


def ahead() -> datetime:
    """A caller whose clock is an hour fast."""
    return datetime.now(UTC) + HOUR


def behind() -> datetime:
    """A caller whose clock is an hour slow."""
    return datetime.now(UTC) - HOUR


def db_now(store: SQLModelStore) -> datetime:
    with store.engine.connect() as conn:
        value: datetime = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    return value


def create(store: SQLModelStore, wid: str = "wf-1", *, next_run_at: datetime) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    record = WorkflowRecord(
        wid, "T", WorkflowStatus.RUNNING, {}, [ThreadState("main")], at, at, next_run_at=next_run_at
    )
    assert store.create(record, [])


@pytest.fixture
def pg(pg_url: str, open_store: Callable[..., SQLModelStore]) -> SQLModelStore:
    """A PostgreSQL store with its default lease clock, holding ``wf-1`` (due long ago)."""
    store = open_store(pg_url)
    create(store, next_run_at=datetime(2026, 1, 1, tzinfo=UTC))
    return store


def lease_of(store: SQLModelStore, wid: str = "wf-1") -> tuple[str | None, datetime | None]:
    rec = store.load(wid)
    return rec.lease_owner, rec.lease_until


@pytest.mark.postgres
def test_postgres_keeps_leases_on_its_own_clock_by_default(
    pg: SQLModelStore, tmp_path: Path, open_store: Callable[..., SQLModelStore]
) -> None:
    assert pg.lease_clock == "database"
    assert open_store(f"sqlite:///{tmp_path / 'gorch.db'}").lease_clock == "caller"


@pytest.mark.postgres
@pytest.mark.parametrize("clock", [ahead, behind], ids=["ahead", "behind"])
def test_a_lease_runs_its_length_from_the_database_now(
    pg: SQLModelStore, clock: Callable[[], datetime]
) -> None:
    before = db_now(pg)
    now = clock()
    got = pg.acquire("wf-1", "w-1", now=now, until=now + LEASE)
    after = db_now(pg)
    assert got.lease_until is not None
    assert before + LEASE <= got.lease_until <= after + LEASE
    assert lease_of(pg) == ("w-1", got.lease_until)


@pytest.mark.postgres
def test_a_caller_an_hour_ahead_cannot_take_a_live_lease(pg: SQLModelStore) -> None:
    now = datetime.now(UTC)
    held = pg.acquire("wf-1", "w-1", now=now, until=now + timedelta(minutes=1))
    now = ahead()  # past the lease by its clock, not by the database's
    with pytest.raises(WorkflowBusy) as e:
        pg.acquire("wf-1", "w-2", now=now, until=now + LEASE)
    assert e.value.owner == "w-1"
    with pytest.raises(WorkflowNotDue):  # a poller an hour ahead does not take it either
        pg.acquire("wf-1", "w-2", now=now, until=now + LEASE, due=True)
    assert pg.due_workflows(now) == []
    assert lease_of(pg) == ("w-1", held.lease_until)


@pytest.mark.postgres
def test_a_lease_taken_by_a_caller_an_hour_ahead_ends_after_its_length(pg: SQLModelStore) -> None:
    """A worker whose clock is fast crashes: its lease does not outlive it by an hour."""
    now = ahead()
    pg.acquire("wf-1", "crashed", now=now, until=now + timedelta(seconds=0.5))
    now = datetime.now(UTC)
    with pytest.raises(WorkflowBusy):
        pg.acquire("wf-1", "w-2", now=now, until=now + LEASE)
    time.sleep(0.7)
    now = datetime.now(UTC)
    assert pg.due_workflows(now) == ["wf-1"]
    assert pg.acquire("wf-1", "w-2", now=now, until=now + LEASE).lease_owner == "w-2"


@pytest.mark.postgres
def test_a_caller_an_hour_behind_neither_loses_a_live_lease_nor_keeps_an_expired_one(
    pg: SQLModelStore,
) -> None:
    now = behind()  # its lease ended an hour ago by the true time: not by the database's
    rec = pg.acquire("wf-1", "w-1", now=now, until=now + timedelta(seconds=0.5))
    now = datetime.now(UTC)
    with pytest.raises(WorkflowBusy):
        pg.acquire("wf-1", "w-2", now=now, until=now + LEASE)
    assert pg.due_workflows(now) == []
    time.sleep(0.7)  # expired by the database's clock; another caller an hour behind takes it
    now = behind()
    assert pg.due_workflows(now) == ["wf-1"]
    assert pg.acquire("wf-1", "w-2", now=now, until=now + LEASE, due=True).lease_owner == "w-2"
    stale = behind()
    rec.updated_at, rec.lease_until, rec.state = stale, stale + LEASE, {"stale": True}
    entries = [HistoryEntry("wf-1", stale, "late")]
    with pytest.raises(LeaseLost) as e:  # the stale owner's checkpoint writes nothing
        pg.checkpoint(rec, owner="w-1", waits=None, history=entries)
    assert e.value.owner == "w-2"
    with pytest.raises(LeaseLost):
        pg.renew("wf-1", "w-1", until=stale + LEASE, now=stale)
    assert pg.load("wf-1").state == {} and pg.history("wf-1") == []
    assert lease_of(pg)[0] == "w-2"


def wait(wid: str = "wf-1") -> WaitInfo:
    return WaitInfo(
        id="w1",
        workflow_id=wid,
        thread_id="main",
        wait="approval",
        event="approve",
        type="user_action",
        pc=1,
        created_at=behind(),
    )


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["one statement", "no history", "with waits"])
def test_renew_and_checkpoints_extend_from_the_database_now(pg: SQLModelStore, kind: str) -> None:
    """By the caller's lease length: ``until - now`` for a renewal, ``lease_until -
    updated_at`` for a checkpoint (on each of the checkpoint's paths)."""
    now = behind()
    rec = pg.acquire("wf-1", "w-1", now=now, until=now + LEASE)
    before, now = db_now(pg), behind()
    pg.renew("wf-1", "w-1", until=now + 2 * LEASE, now=now)
    lease_until = lease_of(pg)[1]
    assert (
        lease_until is not None and before + 2 * LEASE <= lease_until <= before + 2 * LEASE + SLACK
    )
    before, now = db_now(pg), behind()
    rec.updated_at, rec.lease_until = now, now + 3 * LEASE
    history = [] if kind == "no history" else [HistoryEntry("wf-1", now, "step")]
    waits = [wait()] if kind == "with waits" else None
    pg.checkpoint(rec, owner="w-1", waits=waits, history=history)
    owner, lease_until = lease_of(pg)
    assert owner == "w-1" and lease_until is not None
    assert before + 3 * LEASE <= lease_until <= before + 3 * LEASE + SLACK
    assert (pg.load("wf-1").version, len(pg.history("wf-1"))) == (1, len(history))
    rec.lease_until = None  # no extension: the lease stays as it was
    pg.checkpoint(rec, owner="w-1", waits=waits, history=[])
    assert lease_of(pg) == ("w-1", lease_until)
    rec.lease_until = behind() + LEASE
    pg.checkpoint(rec, owner="w-1", waits=waits, history=[], release=True)
    assert lease_of(pg) == (None, None)


@pytest.mark.postgres
def test_a_renewal_without_its_now_extends_to_until_as_it_is(pg: SQLModelStore) -> None:
    now = datetime.now(UTC)
    pg.acquire("wf-1", "w-1", now=now, until=now + LEASE)
    until = datetime(2027, 1, 1, tzinfo=UTC)
    pg.renew("wf-1", "w-1", until=until)
    assert lease_of(pg) == ("w-1", until)


@pytest.mark.postgres
def test_due_workflows_reads_timers_by_the_caller_and_leases_by_the_database(
    pg: SQLModelStore,
) -> None:
    now = ahead()  # the poller's clock
    create(pg, "soon", next_run_at=now - timedelta(minutes=30))  # due by the caller's clock
    create(pg, "later", next_run_at=now + timedelta(minutes=1))
    for wid, lease in [("held", timedelta(minutes=1)), ("expired", timedelta(0))]:
        create(pg, wid, next_run_at=now - HOUR)
        true_now = datetime.now(UTC)  # leased by a process whose clock is right
        pg.acquire(wid, "w-1", now=true_now, until=true_now + lease)
    pg.acquire("wf-1", "w-1", now=now, until=now + LEASE)
    pg.release("wf-1", "w-1")
    assert pg.due_workflows(now) == ["wf-1", "expired", "soon"]


@pytest.mark.postgres
def test_a_caller_clock_on_postgres_goes_by_the_times_given(
    pg_url: str, open_store: Callable[..., SQLModelStore]
) -> None:
    """For tests that expire leases by moving a ``ManualClock``."""
    store = open_store(pg_url, lease_clock="caller")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    create(store, next_run_at=t0)
    assert store.acquire("wf-1", "w-1", now=t0, until=t0 + LEASE).lease_until == t0 + LEASE
    got = store.acquire("wf-1", "w-2", now=t0 + LEASE, until=t0 + 2 * LEASE)
    assert (got.lease_owner, got.lease_until) == ("w-2", t0 + 2 * LEASE)


@pytest.mark.parametrize(
    ("backend", "lease_clock"),
    [
        ("sqlite", "database"),
        ("sqlite", "db"),
        pytest.param("postgres", "Database", marks=pytest.mark.postgres),
        pytest.param("postgres", "", marks=pytest.mark.postgres),
    ],
)
def test_a_lease_clock_the_database_cannot_keep_is_refused(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    backend: str,
    lease_clock: str,
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'gorch.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    with pytest.raises(StoreError, match="lease_clock"):
        SQLModelStore(url, lease_clock=lease_clock)  # type: ignore[arg-type]


@pytest.mark.postgres
@pytest.mark.parametrize("clock", [ahead, behind], ids=["ahead", "behind"])
def test_prune_judges_a_lease_by_the_database_clock(
    pg: SQLModelStore, clock: Callable[[], datetime]
) -> None:
    """A finished workflow still leased (its session died before releasing) is pruned once the
    lease has run out by the database's clock, whatever the pruning caller's clock says."""
    now = clock()
    rec = pg.acquire("wf-1", "w-1", now=now, until=now + timedelta(seconds=1))
    rec.status, rec.updated_at = WorkflowStatus.FINISHED, now
    rec.lease_until = now + timedelta(seconds=1)  # a second more, from the database's now
    pg.checkpoint(rec, owner="w-1", waits=None, history=[])  # finished, lease kept (a crash)
    cut = now + timedelta(days=1)
    ended = (WorkflowStatus.FINISHED,)
    later = clock() + HOUR * 2  # by the caller's clock the lease ran out long ago
    assert pg.prune(finished_before=cut, now=later, statuses=ended).workflows == 0
    assert lease_of(pg)[0] == "w-1"
    time.sleep(1.2)  # now it has run out by the database's clock
    earlier = clock() - HOUR * 2  # by the caller's clock it has not even begun
    assert pg.prune(finished_before=cut, now=earlier, statuses=ended).workflows == 1
    with pytest.raises(Exception, match="wf-1"):
        pg.load("wf-1")
