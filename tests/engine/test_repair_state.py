"""A stored state that no longer loads after a model change: shown by ``get`` and ``list``,
repaired by ``update_state``. Every test runs on the memory store, SQLite and PostgreSQL.

The code changes from ``ClaimV1`` to ``ClaimV2`` under stored workflows, as a deploy would:
``amount`` is renamed ``total``, and ``note`` turns from text into a list of texts (so a
stored text no longer fits).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine import (
    DefinitionMismatch,
    Engine,
    InvalidOperation,
    ManualClock,
    On,
    PollingResumer,
    Return,
    S,
    Section,
    StateError,
    Step,
    Store,
    UnknownWorkflowType,
    Wait,
    WaitForUserAction,
    Workflow,
    WorkflowBusy,
    WorkflowStatus,
)
from tests.engine.store.conftest import open_store, pg_server, pg_url, store  # noqa: F401

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def claim(self: Any, value: int, legacy: bool = False) -> Section:
    return S(
        Step("start", lambda: None),
        Wait("approval (legacy)" if legacy else "approval",
             On("decision", WaitForUserAction(approve=lambda: None, deny=print))),
        Return(value),
    )  # fmt: skip


class ClaimV1(Workflow):
    type_name = "claim"
    amount: int = 0
    note: str | None = None

    def definition(self) -> Section:
        return claim(self, self.amount)


class ClaimV2(Workflow):
    type_name = "claim"
    total: int = 0
    note: list[str] | None = None
    ratio: float = 0.0
    legacy: bool = False  # True: the wait has another name (a position the thread loses)

    def definition(self) -> Section:
        return claim(self, self.total, self.legacy)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def deploy(store: Store, clock: ManualClock, **kw: Any) -> Engine:  # noqa: F811
    """Start ``old`` (renamed field), ``retyped`` and ``fine`` on v1, then deploy v2."""
    v1 = Engine(store, [ClaimV1], clock=clock)
    v1.new_workflow(ClaimV1(amount=5), "old")
    v1.new_workflow(ClaimV1(amount=6, note="urgent"), "retyped")
    clock.advance(timedelta(seconds=1))
    v2 = Engine(store, [ClaimV2], clock=clock, **kw)
    v2.new_workflow(ClaimV2(total=7), "fine")
    return v2


def stored(engine: Engine, wid: str) -> tuple[Any, ...]:
    """Everything stored about a workflow that a refused repair must leave alone."""
    rec = engine.store.load(wid)
    threads = [(t.id, t.position, t.phase, t.status, t.event) for t in rec.threads]
    waits = sorted((w.id, w.wait, w.event, w.status, w.pc) for w in engine.store.load_waits(wid))
    history = len(engine.store.history(wid))
    return rec.status, rec.state, threads, rec.pc, rec.version, waits, history


def test_get_shows_a_state_that_does_not_load_with_why(store: Store, clock: ManualClock) -> None:  # noqa: F811
    engine = deploy(store, clock)
    old = engine.get("old")
    assert old.state is None
    assert old.state_error is not None and "'amount'" in old.state_error
    assert "no longer declares" in old.state_error
    # Everything else is as stored: the page can show the threads, the status, the waits.
    assert old.status is WorkflowStatus.WAITING
    assert [(t.id, t.position) for t in old.threads] == [("main", "approval")]
    assert [w.event for w in engine.pending_waits("old")] == ["decision"]
    assert old._repr_mimebundle_()["text/plain"] == f"claim old: waiting\n{old.state_error}"
    retyped = engine.get("retyped")
    assert retyped.state is None and "note" in (retyped.state_error or "")
    assert "valid array" in (retyped.state_error or "")
    fine = engine.get("fine")
    assert (fine.state.total, fine.state_error) == (7, None)


def test_list_shows_every_row_with_its_error(store: Store, clock: ManualClock) -> None:  # noqa: F811
    engine = deploy(store, clock)
    rows = {i.id: i for i in engine.list()}
    assert set(rows) == {"old", "retyped", "fine"}
    assert rows["fine"].state.total == 7 and rows["fine"].state_error is None
    for wid in ("old", "retyped"):
        assert rows[wid].state is None and rows[wid].state_error == engine.get(wid).state_error
    assert [i.id for i in engine.list(status="waiting", search="ret")] == ["retyped"]


def test_list_survives_a_row_of_an_unregistered_type(store: Store, clock: ManualClock) -> None:  # noqa: F811
    engine = deploy(store, clock)
    Engine(store, [Other], clock=clock).new_workflow(Other(), "stray")
    rows = {i.id: i for i in engine.list()}
    assert set(rows) == {"old", "retyped", "fine", "stray"}
    assert rows["stray"].state is None and "unknown workflow type 'other'" in (
        rows["stray"].state_error or ""
    )
    with pytest.raises(UnknownWorkflowType):  # one workflow: nothing could be done with it
        engine.get("stray")


class Other(Workflow):
    type_name = "other"

    def definition(self) -> Section:
        return S(Wait("w", On("go", WaitForUserAction(approve=lambda: None, deny=print))))


def test_update_state_repairs_it_in_a_leased_checkpoint(store: Store, clock: ManualClock) -> None:  # noqa: F811
    engine = deploy(store, clock)
    before = engine.store.load("old")
    clock.advance(timedelta(minutes=1))
    info = engine.update_state("old", {"total": 5}, actor="ana", reason="amount is total now")
    assert (info.state.total, info.state_error, info.status) == (5, None, WorkflowStatus.WAITING)
    after = engine.store.load("old")
    assert after.state == {"total": 5, "note": None, "ratio": 0.0, "legacy": False}
    assert after.pc == before.pc + 1 and after.version > before.version
    assert after.lease_owner is None  # the session gave its lease back
    last = engine.history("old")[-1]
    assert (last.kind, last.actor, last.at, last.pc) == ("state_updated", "ana", clock.now(),
                                                         after.pc)  # fmt: skip
    assert last.detail["reason"] == "amount is total now"
    assert last.detail["changed"] == {
        "amount": [5, None],
        "total": [None, 5],
        "ratio": [None, 0.0],
        "legacy": [None, False],
    }
    assert "'amount'" in last.detail["repaired"]  # what was wrong with the stored state
    # The workflow goes on with the repaired state.
    engine.on_callback("old", "decision", {"approved": True}, actor="bo")
    done = engine.get("old")
    assert (done.status, done.result) == (WorkflowStatus.FINISHED, 5)


def test_a_repaired_retyped_field_goes_on(store: Store, clock: ManualClock) -> None:  # noqa: F811
    engine = deploy(store, clock)
    engine.update_state("retyped", {"total": 6, "note": ["urgent"]}, actor="ana")
    assert engine.get("retyped").state.note == ["urgent"]
    assert engine.history("retyped")[-1].detail["changed"]["note"] == ["urgent", ["urgent"]]
    engine.on_callback("retyped", "decision", {"approved": True}, actor="bo")
    assert engine.get("retyped").result == 6


BAD_REPAIRS: dict[str, tuple[dict[str, Any], type[Exception], str]] = {
    "wrong type": ({"total": "five"}, StateError, "does not fit ClaimV2: total"),
    "stale field kept": ({"amount": 5, "total": 5}, StateError, "'amount', which ClaimV2 does"),
    "typo": ({"totl": 5}, StateError, "'totl', which ClaimV2 does not declare"),
    "NaN": ({"total": 5, "ratio": math.nan}, StateError, "NaN"),
    "infinity": ({"total": 5, "ratio": math.inf}, StateError, "Infinity"),
    "NUL": ({"total": 5, "note": ["a\x00b"]}, StateError, "NUL"),
    "lone surrogate": ({"total": 5, "note": ["\udc80"]}, StateError, "surrogate"),
    "too large": ({"total": 5, "note": ["x" * 3000]}, StateError, "over the limit of 2000"),
    "position lost": ({"total": 5, "legacy": True}, DefinitionMismatch, "approval"),
}


@pytest.mark.parametrize("case", list(BAD_REPAIRS))
def test_an_invalid_repair_is_refused_and_changes_nothing(
    store: Store,  # noqa: F811
    clock: ManualClock,
    case: str,
) -> None:
    engine = deploy(store, clock, max_state_bytes=2000)
    new, error, match = BAD_REPAIRS[case]
    before = stored(engine, "old")
    with pytest.raises(error, match=match) as err:
        engine.update_state("old", new, actor="ana", reason="try")
    assert err.value.workflow_id == "old"  # type: ignore[attr-defined]
    assert stored(engine, "old") == before
    assert engine.get("old").state_error is not None  # still shown as it was
    assert engine.store.load("old").lease_owner is None  # the lease was given back


def test_a_finished_workflow_is_not_repaired(store: Store, clock: ManualClock) -> None:  # noqa: F811
    v1 = Engine(store, [ClaimV1], clock=clock)
    v1.new_workflow(ClaimV1(amount=3), "done")
    v1.on_callback("done", "decision", {"approved": True}, actor="bo")
    v2 = Engine(store, [ClaimV2], clock=clock)
    info = v2.get("done")
    assert (info.status, info.result, info.state) == (WorkflowStatus.FINISHED, 3, None)
    before = stored(v2, "done")
    with pytest.raises(InvalidOperation, match="finished"):
        v2.update_state("done", {"total": 3}, actor="ana")
    assert stored(v2, "done") == before


def test_a_repair_waits_for_the_lease(store: Store, clock: ManualClock) -> None:  # noqa: F811
    engine = deploy(store, clock, busy_timeout=timedelta(milliseconds=50))
    store.acquire("old", "someone-else", now=clock.now(), until=clock.now() + timedelta(hours=1))
    before = stored(engine, "old")
    with pytest.raises(WorkflowBusy):
        engine.update_state("old", {"total": 5}, actor="ana")
    assert stored(engine, "old") == before
    store.release("old", "someone-else")
    assert engine.update_state("old", {"total": 5}, actor="ana").state.total == 5


def test_a_repaired_workflow_runs_again_at_once(store: Store, clock: ManualClock) -> None:  # noqa: F811
    v1 = Engine(store, [ClaimV1], clock=clock, resumer=PollingResumer())
    v1.new_workflow(ClaimV1(amount=4), "queued")  # due, not run yet
    v2 = Engine(store, [ClaimV2], clock=clock, resumer=PollingResumer())
    assert v2.run_due() == 0  # cannot run: noted as blocked, left alone for a while
    assert engine_history_kinds(v2, "queued")[-1] == "blocked"
    v2.update_state("queued", {"total": 4}, actor="ana")
    assert v2.run_due() == 1  # not a minute later: the repair lifted the quarantine
    info = v2.get("queued")
    assert (info.status, info.threads[0].position) == (WorkflowStatus.WAITING, "approval")


def engine_history_kinds(engine: Engine, wid: str) -> list[str]:
    return [h.kind for h in engine.history(wid)]
