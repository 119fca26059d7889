"""Incidents (failures grouped by cause) and bulk retry/cancel after a preview, through
``Engine`` on every backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine import (
    BulkAction,
    Engine,
    HistoryKind,
    InvalidOperation,
    ManualClock,
    RetryPolicy,
    S,
    Section,
    Step,
    Store,
    Workflow,
    WorkflowStatus,
)

BROKEN = {"charge": True}


class Order(Workflow):
    """Charges a card; the charge fails while ``BROKEN["charge"]``."""

    number: int = 0
    divide_by: int = 1

    def definition(self) -> Section:
        once = RetryPolicy(max_attempts=1)
        return S(
            Step("charge", self.charge, retry=once),
            Step("split", self.split, retry=once),
        )

    def charge(self) -> None:
        if BROKEN["charge"]:
            raise ConnectionError(f"card 4111{self.number:04d} declined for order-{self.number}")

    def split(self) -> None:
        _ = 10 // self.divide_by


@pytest.fixture
def engine(store: Store, clock: ManualClock) -> Engine:
    BROKEN["charge"] = True
    return Engine(store, [Order], clock=clock)


def _fail_some(engine: Engine, clock: ManualClock) -> dict[str, str]:
    ids = {}
    for n in (7, 42, 1234):
        ids[f"charge{n}"] = engine.new_workflow(Order(number=n), id=f"order-{n}")
        clock.advance(timedelta(minutes=1))
    BROKEN["charge"] = False
    ids["split"] = engine.new_workflow(Order(number=5, divide_by=0), id="order-split")
    return ids


def test_failures_group_by_cause_with_ids_and_numbers_masked(
    engine: Engine, clock: ManualClock
) -> None:
    _fail_some(engine, clock)
    found = engine.incidents()
    assert [(i.statement, i.error_class, i.workflows) for i in found] == [
        ("charge", "ConnectionError", 3),
        ("split", "ZeroDivisionError", 1),
    ]
    big = found[0]
    assert big.type == "Order"
    assert big.message == "card <n> declined for <id>"
    assert big.threads == 3
    assert set(big.workflow_ids) == {"order-7", "order-42", "order-1234"}
    assert big.workflow_ids[0] == "order-1234"  # newest failure first
    assert big.last_seen - big.first_seen == timedelta(minutes=2)
    assert "order-1234" in big.example  # the example keeps the real text
    assert engine.incidents(type="Nope") == []
    with pytest.raises(InvalidOperation):
        engine.incidents(scan=0)


def test_a_group_is_retried_after_its_preview_and_a_changed_one_is_skipped(
    engine: Engine, clock: ManualClock
) -> None:
    for n in (1, 2, 3):
        engine.new_workflow(Order(number=n), id=f"order-{n}")
    group = engine.incidents()[0]
    preview = engine.preview_bulk("retry", group.workflow_ids, incident=group.key)
    assert preview.action is BulkAction.RETRY
    assert [t.workflow_id for t in preview.targets] == list(group.workflow_ids)
    assert all("ConnectionError" in t.error for t in preview.targets)
    assert preview.summary() == "retry 3 workflows"

    BROKEN["charge"] = False
    engine.retry("order-2", "carol", "fixed by hand")  # changes it after the preview
    seen = []
    report = engine.retry_many(
        preview, "alice", "card gateway back", progress=lambda n, m: seen.append((n, m))
    )

    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert sorted(w for w, _ in report.done) == ["order-1", "order-3"]
    assert all(s is WorkflowStatus.FINISHED for _, s in report.done)
    assert [w for w, _ in report.skipped] == ["order-2"]
    assert "changed since the preview" in report.skipped[0][1]
    assert report.failed == []
    assert "skipped" in report.summary() and report.operation in report.summary()
    for wid in ("order-1", "order-3"):
        retried = [h for h in engine.history(wid) if h.kind == HistoryKind.RETRIED]
        assert len(retried) == 1
        assert retried[0].actor == "alice"
        assert retried[0].detail["operation"] == report.operation
        assert retried[0].detail["reason"] == "card gateway back"
    by_carol = [h for h in engine.history("order-2") if h.kind == HistoryKind.RETRIED]
    assert [h.actor for h in by_carol] == ["carol"]  # acted on once, by carol only
    assert engine.incidents() == []


def test_a_retry_that_fails_again_is_reported_as_failed(engine: Engine) -> None:
    engine.new_workflow(Order(number=9), id="order-9")
    preview = engine.preview_bulk("retry", ["order-9"])
    report = engine.retry_many(preview, "alice")
    assert report.done == [("order-9", WorkflowStatus.FAILED)]
    assert "1 failed again" in report.summary()


def test_cancel_many_leaves_alone_what_it_does_not_apply_to(
    engine: Engine, clock: ManualClock
) -> None:
    engine.new_workflow(Order(number=1), id="order-1")
    BROKEN["charge"] = False
    engine.new_workflow(Order(number=2), id="order-2")  # finishes
    preview = engine.preview_bulk(BulkAction.CANCEL, ["order-1", "order-2", "nope"])
    assert [t.workflow_id for t in preview.targets] == ["order-1"]
    assert dict(preview.refused)["order-2"] == "it is finished"
    assert "WorkflowNotFound" in dict(preview.refused)["nope"]
    with pytest.raises(InvalidOperation, match="retry_many takes"):
        engine.retry_many(preview, "alice")
    report = engine.cancel_many(preview, "alice", "duplicate orders")
    assert report.done == [("order-1", WorkflowStatus.CANCELLED)]
    cancelled = [h for h in engine.history("order-1") if h.kind == HistoryKind.CANCELLED]
    assert cancelled[0].detail["operation"] == report.operation
    # a second run of the same preview acts on nothing: the version moved on
    again = engine.cancel_many(preview, "alice")
    assert again.done == [] and [w for w, _ in again.skipped] == ["order-1"]
    with pytest.raises(InvalidOperation, match="unknown bulk action"):
        engine.preview_bulk("delete", ["order-1"])
    with pytest.raises(InvalidOperation, match="list of ids"):
        engine.preview_bulk("cancel", "order-1")


def test_failures_keep_their_traceback_in_the_history(engine: Engine) -> None:
    engine.new_workflow(Order(number=3), id="order-3")
    failed = [h for h in engine.history("order-3") if h.kind == HistoryKind.THREAD_FAILED]
    tb = failed[0].detail["traceback"]
    assert tb.startswith("Traceback (most recent call last)")
    assert "in charge" in tb and "ConnectionError: card 41110003 declined" in tb
