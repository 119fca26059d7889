"""``engine._incidents``: masking and grouping, with no store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine._incidents import group, mask, split_error
from engine._records import ThreadState, ThreadStatus, WorkflowRecord, WorkflowStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_mask_hides_ids_and_numbers_but_not_words() -> None:
    assert mask("order exp-42 failed after 3.5s", ["exp-42"]) == "order <id> failed after <n>s"
    assert (
        mask("key 9f86d081884c7d65 at 0x7f3a12 uuid 123e4567-e89b-12d3-a456-426614174000")
        == "key <id> at <n> uuid <id>"
    )
    assert mask("deadbeef facade decade") == "deadbeef facade decade"  # hex-like words stay
    assert mask("line one\n  line two") == "line one line two"
    assert mask("x" * 600) == "x" * 500


def test_split_error() -> None:
    assert split_error("KeyError: 'a': b") == ("KeyError", "'a': b")
    assert split_error("http.client.HTTPException: x") == ("http.client.HTTPException", "x")
    assert split_error("Go 'g': thread id 'x' is already used") == (
        "",
        "Go 'g': thread id 'x' is already used",
    )


def _failed(wid: str, error: str, at: datetime, position: str = "charge") -> WorkflowRecord:
    return WorkflowRecord(
        id=wid,
        type="Order",
        status=WorkflowStatus.FAILED,
        state={},
        threads=[
            ThreadState("main", position=position, status=ThreadStatus.FAILED, error=error),
            ThreadState("g", go="g", status=ThreadStatus.WAITING),
        ],
        created_at=T0,
        updated_at=at,
    )


def test_group_counts_first_and_last_seen_and_orders_by_size() -> None:
    records = [
        _failed("ord-1", "ValueError: bad amount 10 for ord-1", T0),
        _failed("ord-2", "ValueError: bad amount 20 for ord-2", T0 + timedelta(hours=1)),
        _failed("ord-3", "KeyError: 'x'", T0 + timedelta(hours=2)),
        _failed("ord-4", "ValueError: bad amount 30 for ord-4", T0, position="refund"),
    ]
    found = group(records)
    assert [(i.statement, i.error_class, i.workflows) for i in found] == [
        ("charge", "ValueError", 2),
        ("charge", "KeyError", 1),
        ("refund", "ValueError", 1),
    ]
    first = found[0]
    assert first.message == "bad amount <n> for <id>"
    assert first.cause == "ValueError: bad amount <n> for <id>"
    assert (first.first_seen, first.last_seen) == (T0, T0 + timedelta(hours=1))
    assert first.workflow_ids == ("ord-2", "ord-1")
    assert first.example == "ValueError: bad amount 20 for ord-2"
    assert first.key == group(list(reversed(records)))[0].key  # stable
    assert len({i.key for i in found}) == 3
