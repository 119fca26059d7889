"""``Store.list_workflows`` and ``Engine.list``: time ranges, order and keyset paging, on every
backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine import Engine, InvalidOperation, MemoryStore, Store, WorkflowSort, WorkflowStatus
from engine._records import ThreadState, WorkflowRecord

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def _record(
    i: int, *, status: WorkflowStatus, created: datetime, updated: datetime
) -> WorkflowRecord:
    return WorkflowRecord(
        id=f"wf-{i:03d}",
        type="A" if i % 2 else "B",
        status=status,
        state={},
        threads=[ThreadState("main")],
        created_at=created,
        updated_at=updated,
    )


@pytest.fixture
def filled(store: Store) -> Store:
    """30 workflows: created a minute apart (three share each minute, so ties break by id),
    updated in the reverse order, one in three failed."""
    for i in range(30):
        created = T0 + timedelta(minutes=i // 3)
        updated = T0 + timedelta(hours=1, minutes=30 - i)
        status = WorkflowStatus.FAILED if i % 3 == 0 else WorkflowStatus.WAITING
        assert store.create(_record(i, status=status, created=created, updated=updated), [])
    return store


def _ids(rows: list[WorkflowRecord]) -> list[str]:
    return [r.id for r in rows]


def _walk(store: Store, size: int, **kw: object) -> list[list[str]]:
    """Every page, by keyset cursor."""
    pages: list[list[str]] = []
    after = None
    sort = WorkflowSort(kw.get("sort", WorkflowSort.CREATED))
    while True:
        rows = store.list_workflows(limit=size, after=after, **kw)  # type: ignore[arg-type]
        if not rows:
            return pages
        pages.append(_ids(rows))
        last = rows[-1]
        after = (getattr(last, sort.value), last.id)


def test_keyset_pages_cover_every_row_once_in_order(filled: Store) -> None:
    expected = [f"wf-{i:03d}" for i in reversed(range(30))]  # newest first, ties by id desc
    assert _ids(filled.list_workflows(limit=100)) == expected
    pages = _walk(filled, 7)
    assert [len(p) for p in pages] == [7, 7, 7, 7, 2]
    assert [i for p in pages for i in p] == expected
    # the same pages as OFFSET gives
    assert pages[2] == _ids(filled.list_workflows(limit=7, offset=14))


def test_ascending_and_by_updated_time(filled: Store) -> None:
    oldest = _ids(filled.list_workflows(limit=4, ascending=True))
    assert oldest == ["wf-000", "wf-001", "wf-002", "wf-003"]
    # updated in reverse: the most recently updated is wf-000
    assert _ids(filled.list_workflows(limit=3, sort=WorkflowSort.UPDATED)) == [
        "wf-000",
        "wf-001",
        "wf-002",
    ]
    pages = _walk(filled, 4, sort=WorkflowSort.UPDATED, status=WorkflowStatus.FAILED)
    assert [i for p in pages for i in p] == [f"wf-{i:03d}" for i in range(0, 30, 3)]
    # the previous page: ascending after the first row of a page, reversed
    page2 = pages[1]
    first = filled.load(page2[0])
    back = filled.list_workflows(
        limit=4,
        sort=WorkflowSort.UPDATED,
        status=WorkflowStatus.FAILED,
        ascending=True,
        after=(first.updated_at, first.id),
    )
    assert list(reversed(_ids(back))) == pages[0]


def test_time_ranges_are_half_open_and_combine(filled: Store) -> None:
    # created in [T0+2min, T0+4min): workflows 6..11
    rows = filled.list_workflows(
        created_after=T0 + timedelta(minutes=2), created_before=T0 + timedelta(minutes=4)
    )
    assert sorted(_ids(rows)) == [f"wf-{i:03d}" for i in range(6, 12)]
    # updated at or after T0+1h+25min: workflows 0..5 (updated 1h30 .. 1h25)
    rows = filled.list_workflows(updated_after=T0 + timedelta(hours=1, minutes=25))
    assert sorted(_ids(rows)) == [f"wf-{i:03d}" for i in range(6)]
    rows = filled.list_workflows(
        updated_before=T0 + timedelta(hours=1, minutes=25),
        status=WorkflowStatus.FAILED,
        type="B",
    )
    assert _ids(rows) == ["wf-024", "wf-018", "wf-012", "wf-006"]
    # another time zone names the same instant
    east = T0.astimezone(timezone(timedelta(hours=5)))
    assert len(filled.list_workflows(created_before=east + timedelta(minutes=1))) == 3


def test_bad_times_and_cursors_are_refused(filled: Store) -> None:
    with pytest.raises(InvalidOperation, match="timezone-aware"):
        filled.list_workflows(created_after=datetime(2026, 1, 1))
    with pytest.raises(InvalidOperation, match="cursor"):
        filled.list_workflows(after=("wf-001", T0))  # type: ignore[arg-type]
    with pytest.raises(InvalidOperation, match="timezone-aware"):
        filled.list_workflows(after=(datetime(2026, 1, 1), "wf-001"))


def test_engine_list_passes_them_on_and_checks_sort() -> None:
    store = MemoryStore()
    for i in range(5):
        store.create(
            _record(i, status=WorkflowStatus.FAILED, created=T0 + timedelta(seconds=i), updated=T0),
            [],
        )
    engine = Engine(store)
    rows = engine.list(created_after=T0 + timedelta(seconds=3), sort="created_at")
    assert [r.id for r in rows] == ["wf-004", "wf-003"]
    page = engine.list(limit=2, after=(T0 + timedelta(seconds=3), "wf-003"))
    assert [r.id for r in page] == ["wf-002", "wf-001"]
    with pytest.raises(InvalidOperation, match="unknown sort"):
        engine.list(sort="name")


def test_count_by_type_in_one_read(filled: Store) -> None:
    counts = filled.count_by_type()
    assert set(counts) == {"A", "B"}
    assert counts["A"][WorkflowStatus.FAILED] == 5  # i % 3 == 0 and odd: 3, 9, 15, 21, 27
    assert counts["B"][WorkflowStatus.WAITING] == 10
    assert counts["A"][WorkflowStatus.CANCELLED] == 0
    for type_ in ("A", "B"):
        assert counts[type_] == filled.count_workflows(type=type_)
