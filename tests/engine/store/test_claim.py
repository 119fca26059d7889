"""``claim_due``: a poller leases a batch of due workflows in one write, on every backend,
and the poller runs each claimed workflow once, giving back what it did not run."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from engine import (
    Engine,
    ManualClock,
    MemoryStore,
    PollingResumer,
    S,
    Section,
    SQLModelStore,
    Step,
    Store,
    Workflow,
    WorkflowStatus,
)
from engine._records import ThreadState, WorkflowRecord

T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
LEASE_CLOCK = "caller"
"""Leases go by the times the tests pass (T0 and later) on every backend (see conftest)."""


def record(
    wid: str,
    *,
    next_run_at: datetime | None = T0,
    status: WorkflowStatus = WorkflowStatus.RUNNING,
) -> WorkflowRecord:
    return WorkflowRecord(
        id=wid,
        type="Counter",
        status=status,
        state={"n": 0},
        threads=[ThreadState("main")],
        created_at=T0,
        updated_at=T0,
        next_run_at=next_run_at,
    )


def test_claim_due_leases_the_oldest_due_free_workflows_each_to_owner_plus_id(
    store: Store,
) -> None:
    now = T0 + timedelta(hours=1)
    for wid, due in [("c", 3), ("a", 1), ("b", 2), ("d", 4)]:
        store.create(record(wid, next_run_at=now - timedelta(minutes=10 - due)), [])
    store.create(record("future", next_run_at=now + timedelta(seconds=1)), [])
    store.create(record("waiting", status=WorkflowStatus.WAITING), [])
    store.create(record("held"), [])
    store.acquire("held", "other", now=now, until=now + timedelta(minutes=5))
    store.create(record("expired"), [])
    store.acquire("expired", "crashed", now=T0, until=now)  # expired at now: free again
    until = now + timedelta(minutes=5)

    claimed = store.claim_due(now, "poller-1:", until=until, limit=3)  # type: ignore[attr-defined]

    assert [r.id for r in claimed] == ["expired", "a", "b"]
    for r in claimed:
        assert r.lease_owner == f"poller-1:{r.id}"
        assert r.lease_until == until
        stored = store.load(r.id)
        assert (stored.lease_owner, stored.version, stored.state) == (
            r.lease_owner,
            r.version,
            r.state,
        )
    assert store.due_workflows(now) == ["c", "d"]  # the claimed ones are leased now
    rest = store.claim_due(now, "poller-2:", until=until, limit=10)  # type: ignore[attr-defined]
    assert [r.id for r in rest] == ["c", "d"]
    assert store.claim_due(now, "poller-3:", until=until, limit=10) == []  # type: ignore[attr-defined]
    # A claimed lease is an ordinary lease: its owner checkpoints and releases under it.
    rec = claimed[1]
    rec.pc += 1
    store.checkpoint(rec, owner="poller-1:a", waits=None, history=[], release=True)
    assert store.load("a").lease_owner is None and store.load("a").pc == 1


def test_concurrent_claims_never_hand_out_a_workflow_twice(store: Store) -> None:
    now = T0 + timedelta(hours=1)
    ids = [f"wf-{i:02d}" for i in range(30)]
    for i, wid in enumerate(ids):
        store.create(record(wid, next_run_at=T0 + timedelta(seconds=i)), [])
    got: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def poller(name: str) -> None:
        mine = got.setdefault(name, [])
        try:
            while True:
                batch = store.claim_due(now, f"{name}:", until=now + timedelta(minutes=5), limit=3)  # type: ignore[attr-defined]  # fmt: skip
                if not batch:
                    return
                mine += [r.id for r in batch]
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=poller, args=(f"p{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    every = [wid for mine in got.values() for wid in mine]
    assert sorted(every) == ids  # each exactly once
    for name, mine in got.items():
        assert all(store.load(wid).lease_owner == f"{name}:{wid}" for wid in mine)


class Counter(Workflow):
    """Two steps."""

    n: int = 0

    def definition(self) -> Section:
        return S(Step("one", self.bump), Step("two", self.bump))

    def bump(self) -> None:
        self.n += 1


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine_store(request: pytest.FixtureRequest, tmp_path: object) -> Store:
    if request.param == "memory":
        return MemoryStore()
    if request.param == "sqlite":
        return SQLModelStore(f"sqlite:///{tmp_path}/claim.db")
    return SQLModelStore(request.getfixturevalue("pg_url"), lease_clock="caller")


def test_the_poller_runs_each_claimed_workflow_once_and_gives_back_what_it_did_not_run(
    engine_store: Store,
) -> None:
    clock = ManualClock(T0)
    engine = Engine(engine_store, [Counter], clock=clock, resumer=PollingResumer())
    ids = [engine.new_workflow(Counter(), f"wf-{i:02d}") for i in range(20)]
    assert engine.run_due(limit=5) == 5  # one claim of five
    finished = [w for w in ids if engine.get(w).status is WorkflowStatus.FINISHED]
    assert len(finished) == 5
    assert all(engine.get(w).state.n == 2 for w in finished)

    calls = iter(range(100))
    assert engine.run_due(stop=lambda: next(calls) >= 2) == 2  # stopped in its first batch
    assert not engine.active  # nothing claimed is left leased to this engine
    left = [w for w in ids if engine.get(w).status is not WorkflowStatus.FINISHED]
    assert len(left) == 13
    assert all(engine_store.load(w).lease_owner is None for w in left)  # given back, due
    assert sorted(engine_store.due_workflows(clock.now())) == left

    assert engine.run_due() == 13
    for w in ids:
        info = engine.get(w)
        assert (info.status, info.state.n) == (WorkflowStatus.FINISHED, 2)
        steps = [h for h in engine.history(w) if h.kind == "step"]
        assert [h.statement for h in steps] == ["one", "two"]  # each step ran once
    if isinstance(engine_store, SQLModelStore):
        engine_store.close()


def test_quarantined_workflows_do_not_starve_the_others_nor_loop_the_poller(
    engine_store: Store,
) -> None:
    clock = ManualClock(T0)
    engine = Engine(engine_store, [Counter], clock=clock, resumer=PollingResumer())
    ids = [engine.new_workflow(Counter(), f"wf-{i:02d}") for i in range(12)]
    broken = ids[:10]  # the oldest due: every claim of the first batch is quarantined
    for wid in broken:
        engine._poller.quarantine[wid] = clock.now() + timedelta(hours=1)
    assert engine.run_due() == 2  # and it returns: the quarantined stay out of later claims
    assert [engine.get(w).status for w in ids[10:]] == [WorkflowStatus.FINISHED] * 2
    assert not engine.active
    for wid in broken:  # untouched, unleased, still due for another poller
        stored = engine_store.load(wid)
        assert (stored.pc, stored.lease_owner) == (0, None)
    assert sorted(engine_store.due_workflows(clock.now())) == broken
    if isinstance(engine_store, SQLModelStore):
        engine_store.close()
