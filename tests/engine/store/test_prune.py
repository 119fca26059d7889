"""Retention: ``Engine.prune`` (and ``Store.prune``) on every backend, racing a retry, and input
that is refused before anything is deleted."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select

from engine import (
    Engine,
    InvalidOperation,
    ManualClock,
    MemoryStore,
    On,
    PollingResumer,
    PruneResult,
    RetryPolicy,
    Return,
    S,
    Section,
    SQLModelStore,
    Step,
    Store,
    Wait,
    WaitForUserAction,
    WaitInfo,
    WaitStatus,
    Workflow,
    WorkflowNotFound,
    WorkflowStatus,
)
from engine.store.tables import history, waits, workflows

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
# These tests expire leases by moving a ManualClock: on PostgreSQL they keep leases on the
# caller's clock (the store fixture reads this); test_lease_clock prunes by the database's.
LEASE_CLOCK = "caller"


class Quick(Workflow):
    """Two steps, then finished."""

    n: int = 0

    def definition(self) -> Section:
        return S(Step("one", self.bump), Step("two", self.bump), Return(self.n))

    def bump(self) -> None:
        self.n += 1


class Other(Quick):
    """The same, under another type name."""


class Broken(Workflow):
    """A step that always fails, once: the workflow fails."""

    def definition(self) -> Section:
        return S(Step("explode", self.explode, retry=RetryPolicy(max_attempts=1)), Return())

    def explode(self) -> None:
        raise RuntimeError("boom")


class Approval(Workflow):
    """Waits for an approval: a live workflow until someone answers."""

    approved: bool = False

    def definition(self) -> Section:
        return S(
            Wait("decide", On("approval", WaitForUserAction(approve=self.approve, deny=self.deny))),
            Return(self.approved),
        )

    def approve(self) -> None:
        self.approved = True

    def deny(self, reason: str) -> None:
        self.approved = False


class StuckTeardown:
    """A callback manager whose tear-down always fails: the wait outlives its workflow's end."""

    def setup(self, wait: WaitInfo) -> None:
        pass

    def teardown(self, wait: WaitInfo, handled: bool) -> None:
        raise ConnectionError("the chat service is down")


TYPES: list[type[Workflow]] = [Quick, Other, Broken, Approval]


def engine_on(store: Store, clock: ManualClock, **kw: Any) -> Engine:
    return Engine(store, TYPES, clock=clock, managers={"user_action": StuckTeardown()}, **kw)


def stored(store: Store) -> tuple[set[str], Counter[str], Counter[str]]:
    """Every workflow id, and the waits and history rows per workflow id, as stored (also rows
    whose workflow is gone: no store method would show those)."""
    if isinstance(store, MemoryStore):
        return (
            set(store._workflows),
            Counter({k: len(v) for k, v in store._waits.items() if v}),
            Counter({k: len(v) for k, v in store._history.items() if v}),
        )
    assert isinstance(store, SQLModelStore)
    with store.engine.connect() as conn:
        ids = set(conn.execute(select(workflows.c.id)).scalars())
        per = [
            Counter(
                {
                    wid: n
                    for wid, n in conn.execute(
                        select(t.c.workflow_id, func.count()).group_by(t.c.workflow_id)
                    )
                }
            )
            for t in (waits, history)
        ]
    return ids, per[0], per[1]


def populate(engine: Engine, clock: ManualClock) -> dict[str, str]:
    """One workflow of each kind at T0, by name; the clock is then a day later."""
    made = {
        "finished": engine.new_workflow(Quick(), "finished"),
        "finished-other": engine.new_workflow(Other(), "finished-other"),
        "failed": engine.new_workflow(Broken(), "failed"),
        "waiting": engine.new_workflow(Approval(), "waiting"),
        "cancelled": engine.new_workflow(Approval(), "cancelled"),
    }
    engine.cancel("cancelled", actor="ops", reason="not needed")
    clock.advance(DAY)
    return made


def test_prune_removes_finished_and_cancelled_with_their_waits_and_history(store: Store) -> None:
    clock = ManualClock(T0)
    engine = engine_on(store, clock)
    populate(engine, clock)
    assert engine.get("cancelled").status is WorkflowStatus.CANCELLED
    # the cancelled workflow's wait could not be torn down: it is still stored
    assert [w.status for w in store.load_waits("cancelled")] == [WaitStatus.TEARDOWN_ERROR]
    ids, wait_rows, history_rows = stored(store)
    expected = PruneResult(
        workflows=3,
        waits=wait_rows["cancelled"],
        history=sum(history_rows[w] for w in ("finished", "finished-other", "cancelled")),
    )
    assert expected.waits == 1 and expected.history >= 6

    assert engine.prune(T0 + timedelta(hours=1), dry_run=True) == PruneResult(
        expected.workflows, expected.waits, expected.history, dry_run=True
    )
    assert stored(store) == (ids, wait_rows, history_rows)  # the dry run changed nothing

    assert engine.prune(T0 + timedelta(hours=1)) == expected
    left, left_waits, left_history = stored(store)
    assert left == {"failed", "waiting"}  # failed is kept unless named; waiting is live
    assert set(left_waits) == {"waiting"} and set(left_history) == {"failed", "waiting"}
    assert left_history == Counter({w: history_rows[w] for w in ("failed", "waiting")})
    with pytest.raises(WorkflowNotFound):
        engine.get("finished")
    assert engine.get("waiting").status is WorkflowStatus.WAITING
    assert engine.prune(T0 + timedelta(hours=1)) == PruneResult()  # nothing more to do


def test_cut_off_is_when_the_workflow_ended(store: Store) -> None:
    clock = ManualClock(T0)
    engine = engine_on(store, clock)
    engine.new_workflow(Approval(), "late")  # waits from T0 ...
    clock.advance(10 * DAY)
    engine.on_callback("late", "approval", {"approved": True})  # ... and ends at T0 + 10 days
    assert engine.get("late").status is WorkflowStatus.FINISHED
    assert engine.get("late").updated_at == T0 + 10 * DAY
    clock.advance(DAY)
    assert engine.prune(T0 + 5 * DAY) == PruneResult()  # created before, ended after: kept
    assert engine.prune(T0 + 10 * DAY) == PruneResult()  # the cut-off is exclusive
    assert engine.prune(T0 + 10 * DAY + timedelta(microseconds=1)).workflows == 1


def test_operator_actions_on_ended_workflows_cannot_make_prune_wrong(store: Store) -> None:
    clock = ManualClock(T0)
    engine = engine_on(store, clock, resumer=PollingResumer())
    for wid in ("done", "failed-a", "failed-b"):
        engine.new_workflow(Quick() if wid == "done" else Broken(), wid)
        engine.execute(wid)
    assert engine.get("done").status is WorkflowStatus.FINISHED
    clock.advance(30 * DAY)
    # Nothing an operator does to a finished workflow writes it: its end time stands.
    for action in (
        lambda: engine.cancel("done", "ops"),
        lambda: engine.retry("done", "ops"),
        lambda: engine.update_state("done", {"n": 7}, "ops"),
        lambda: engine.goto("done", "main", "one", "ops"),
    ):
        with pytest.raises(InvalidOperation):
            action()
    assert engine.get("done").updated_at == T0
    # A failed workflow an operator touches counts from that action: kept the longer.
    engine.retry("failed-a", "ops")  # alive again (running)
    engine.cancel("failed-b", "ops")  # ended again, now
    assert engine.get("failed-b").updated_at == T0 + 30 * DAY
    everything = ("finished", "cancelled", "failed")
    done_history = len(engine.history("done"))
    assert engine.prune(T0 + DAY, statuses=everything) == PruneResult(1, 0, done_history)
    assert {w.id for w in engine.list()} == {"failed-a", "failed-b"}
    clock.advance(DAY)
    assert engine.prune(clock.now(), statuses=everything).workflows == 1  # failed-b
    assert engine.get("failed-a").status is WorkflowStatus.RUNNING


def test_filters_by_type_and_status_and_failed_only_when_named(store: Store) -> None:
    clock = ManualClock(T0)
    engine = engine_on(store, clock)
    populate(engine, clock)
    cut = clock.now()
    assert engine.prune(cut, types=["Other"]).workflows == 1
    assert "finished-other" not in stored(store)[0]
    assert engine.prune(cut, types="Quick", statuses="cancelled") == PruneResult()
    assert engine.prune(cut, statuses=["cancelled"]).workflows == 1
    assert stored(store)[0] == {"finished", "failed", "waiting"}
    failed_history = stored(store)[2]["failed"]
    assert engine.prune(cut, statuses=[WorkflowStatus.FAILED], types=["Broken", "Quick"]) == (
        PruneResult(1, 0, failed_history)
    )
    assert stored(store)[0] == {"finished", "waiting"}


def test_live_and_leased_workflows_are_untouched(store: Store) -> None:
    clock = ManualClock(T0)
    engine = engine_on(store, clock, resumer=PollingResumer())
    engine.new_workflow(Quick(), "running")  # stored, never executed: running and due
    engine.new_workflow(Approval(), "waiting")
    engine.execute("waiting")
    engine.new_workflow(Quick(), "leased")
    engine.execute("leased")
    clock.advance(DAY)
    # Another process holds the finished workflow (serving a tear-down, say).
    store.acquire("leased", "worker-1", now=clock.now(), until=clock.now() + timedelta(minutes=5))
    everything = ("finished", "cancelled", "failed")
    assert engine.prune(clock.now(), statuses=everything, dry_run=True).workflows == 0
    assert engine.prune(clock.now(), statuses=everything) == PruneResult()
    assert stored(store)[0] == {"running", "waiting", "leased"}
    assert engine.get("running").status is WorkflowStatus.RUNNING
    clock.advance(timedelta(minutes=6))  # the lease ran out: its holder is gone
    assert engine.prune(T0 + DAY, statuses=everything).workflows == 1
    assert stored(store)[0] == {"running", "waiting"}


def test_batches_of_two_over_five(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock(T0)
    engine = engine_on(store, clock)
    for i in range(5):
        engine.new_workflow(Quick(), f"wf-{i}")
    engine.new_workflow(Approval(), "live")
    clock.advance(DAY)
    rows = stored(store)[2]
    seen: list[int] = []
    if isinstance(store, SQLModelStore):  # count the transactions that delete workflows
        from sqlalchemy import event

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("DELETE FROM WORKFLOWS"):
                seen.append(1)

        event.listen(store.engine, "before_cursor_execute", count)
    result = engine.prune(clock.now(), batch=2)
    assert result == PruneResult(5, 0, sum(rows[f"wf-{i}"] for i in range(5)))
    assert stored(store)[0] == {"live"}
    if isinstance(store, SQLModelStore):
        assert len(seen) == 3  # 2 + 2 + 1: the short batch is the last
    assert engine.prune(clock.now(), batch=2) == PruneResult()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"finished_before": datetime(2026, 1, 2)}, "timezone-aware"),
        ({"finished_before": "2026-01-02"}, "timezone-aware"),
        ({"statuses": ["running"]}, "never pruned"),
        ({"statuses": "waiting"}, "never pruned"),
        ({"statuses": ["finished", "done"]}, "'done'"),
        ({"statuses": []}, "at least one status"),
        ({"statuses": None}, "list of names"),
        ({"types": 5}, "list of names"),
        ({"types": []}, "type names"),
        ({"types": [3]}, "type names"),
        ({"types": ["a\x00b"]}, "NUL"),
        ({"batch": 0}, "at least 1"),
        ({"batch": -5}, "at least 1"),
        ({"batch": 2.5}, "at least 1"),
        ({"batch": True}, "at least 1"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_deleted(
    store: Store, kwargs: dict[str, Any], match: str
) -> None:
    clock = ManualClock(T0)
    engine = engine_on(store, clock)
    populate(engine, clock)
    before = stored(store)
    args = {"finished_before": clock.now(), **kwargs}
    with pytest.raises(InvalidOperation, match=match):
        engine.prune(args.pop("finished_before"), **args)
    assert stored(store) == before


def test_a_finished_before_in_another_zone_is_the_same_instant(store: Store) -> None:
    clock = ManualClock(T0)
    engine = engine_on(store, clock)
    engine.new_workflow(Quick(), "wf")
    clock.advance(DAY)
    plus_two = timezone(timedelta(hours=2))
    assert engine.prune(datetime(2026, 1, 1, 2, 0, tzinfo=plus_two)) == PruneResult()  # = T0
    assert engine.prune(datetime(2026, 1, 1, 2, 0, 1, tzinfo=plus_two)).workflows == 1


def test_the_store_itself_refuses_a_live_status_a_naive_cut_off_and_no_batch(store: Store) -> None:
    with pytest.raises(InvalidOperation):
        store.prune(finished_before=T0, now=T0, statuses=[WorkflowStatus.RUNNING], batch=10)
    with pytest.raises(InvalidOperation):
        store.prune(finished_before=T0, now=T0, statuses=[WorkflowStatus.FINISHED], batch=0)
    with pytest.raises(InvalidOperation):
        store.prune(
            finished_before=datetime(2026, 1, 1), now=T0, statuses=[WorkflowStatus.FINISHED]
        )


# -- a prune racing a retry of the same workflows ---------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_prune_racing_retries_never_leaves_half_a_workflow(
    db_url: str, open_store: Callable[..., SQLModelStore], round_: int
) -> None:
    n = 40
    clock = ManualClock(T0)
    setup = engine_on(open_store(db_url), clock, resumer=PollingResumer())
    for i in range(n):
        setup.new_workflow(Broken(), f"wf-{i:02d}")
        setup.execute(f"wf-{i:02d}")
    assert all(w.status is WorkflowStatus.FAILED for w in setup.list(limit=n))
    clock.advance(DAY)
    before = {f"wf-{i:02d}": len(setup.history(f"wf-{i:02d}")) for i in range(n)}
    # Two processes' worth of engines, each on its own connections.
    pruner = engine_on(open_store(db_url), clock, resumer=PollingResumer())
    retrier = engine_on(open_store(db_url), clock, resumer=PollingResumer())
    order = list(before)
    random.Random(round_).shuffle(order)
    start = threading.Barrier(2)
    outcome: dict[str, str] = {}
    pruned: list[PruneResult] = []
    errors: list[BaseException] = []

    def prune() -> None:
        try:
            start.wait()
            pruned.append(pruner.prune(T0 + timedelta(hours=1), statuses=["failed"], batch=2))
        except BaseException as e:
            errors.append(e)

    def retry() -> None:
        try:
            start.wait()
            for wid in order:
                try:
                    retrier.retry(wid, "ops")
                    outcome[wid] = "lives"
                except WorkflowNotFound:
                    outcome[wid] = "gone"
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=prune), threading.Thread(target=retry)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(outcome) == n and len(pruned) == 1
    ids, wait_rows, history_rows = stored(setup.store)
    assert set(wait_rows) <= ids and set(history_rows) <= ids  # no row outlives its workflow
    for wid, what in outcome.items():
        if what == "gone":
            assert wid not in ids and history_rows[wid] == 0
        else:  # the retry won: the whole workflow lives, its history complete, running again
            info = setup.get(wid)
            assert info.status is WorkflowStatus.RUNNING
            kinds = [e.kind for e in setup.history(wid)]
            assert len(kinds) == before[wid] + 1 and kinds[0] == "created"
            assert kinds[-1] == "retried"
    gone = sum(1 for v in outcome.values() if v == "gone")
    assert pruned[0].workflows == gone
    assert pruned[0].history == sum(before[w] for w, v in outcome.items() if v == "gone")


@pytest.mark.postgres
def test_postgres_passes_over_a_workflow_another_session_holds_locked(
    pg_url: str, open_store: Callable[..., SQLModelStore]
) -> None:
    clock = ManualClock(T0)
    store = open_store(pg_url)
    engine = engine_on(store, clock)
    for wid in ("a", "b", "c"):
        engine.new_workflow(Quick(), wid)
    clock.advance(DAY)
    with store.engine.connect() as other:  # another session, mid-transaction on "b"
        other.begin()
        other.execute(select(workflows.c.id).where(workflows.c.id == "b").with_for_update())
        result = engine.prune(clock.now(), batch=1)
        assert result.workflows == 2  # not blocked behind "b": passed over
        assert stored(store)[0] == {"b"}
        assert stored(store)[2]["b"] > 0  # whole: its history is there
        other.rollback()
    assert engine.prune(clock.now()).workflows == 1
    assert stored(store) == (set(), Counter(), Counter())


def test_a_batch_whose_recheck_fails_is_rolled_back_whole(
    db_url: str, open_store: Callable[..., SQLModelStore]
) -> None:
    """Under the locks no workflow can change between the pick and the DELETE; should one
    change all the same (here: inside the batch's own transaction), the batch is undone."""
    from sqlalchemy import event, update

    from engine import StoreError

    clock = ManualClock(T0)
    store = open_store(db_url)
    engine = engine_on(store, clock)
    for wid in ("a", "b"):
        engine.new_workflow(Quick(), wid)
    clock.advance(DAY)
    before = stored(store)
    fired: list[str] = []

    def revive(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM HISTORY") and not fired:
            fired.append(statement)
            conn.execute(update(workflows).where(workflows.c.id == "b").values(status="running"))

    event.listen(store.engine, "before_cursor_execute", revive)
    with pytest.raises(StoreError, match="rolled back"):
        engine.prune(clock.now())
    event.remove(store.engine, "before_cursor_execute", revive)
    assert fired and stored(store) == before  # the waits, history and rows of both: all there
    assert engine.get("b").status is WorkflowStatus.FINISHED  # the revival was undone too
    assert engine.prune(clock.now()).workflows == 2
