"""Clocks: the manual clock moves only when told, never backwards, always in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine import Clock, InvalidOperation, ManualClock, SystemClock


def test_manual_clock_starts_at_a_fixed_time() -> None:
    assert ManualClock().now() == datetime(2026, 1, 1, tzinfo=UTC)


def test_manual_clock_advances_only_when_told() -> None:
    clock = ManualClock()
    start = clock.now()
    assert clock.now() == start
    assert clock.advance(timedelta(minutes=10)) == start + timedelta(minutes=10)
    assert clock.now() == start + timedelta(minutes=10)


def test_manual_clock_set_and_naive_times_become_utc() -> None:
    clock = ManualClock(datetime(2030, 5, 1, 12, 0))
    assert clock.now().tzinfo is not None
    clock.set(datetime(2030, 5, 2))
    assert clock.now() == datetime(2030, 5, 2, tzinfo=UTC)


def test_manual_clock_never_goes_backwards() -> None:
    clock = ManualClock()
    with pytest.raises(InvalidOperation):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(InvalidOperation):
        clock.set(clock.now() - timedelta(days=1))
    assert clock.now() == datetime(2026, 1, 1, tzinfo=UTC)


def test_system_clock_is_aware_and_current() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    assert now.tzinfo is not None
    assert before <= now <= datetime.now(UTC)


def test_both_clocks_satisfy_the_protocol() -> None:
    clocks: list[Clock] = [ManualClock(), SystemClock()]
    assert all(isinstance(c.now(), datetime) for c in clocks)
