"""Clocks: the system clock, and a manual clock that tests and notebooks move by hand."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from engine.errors import InvalidOperation


class Clock(Protocol):
    """Tells the engine what time it is (timezone-aware, UTC)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """Time that moves only when told: ``advance(timedelta)`` or ``set(datetime)``.

    Args:
        start: the initial time; defaults to 2026-01-01T00:00:00Z so runs are repeatable.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _aware(start) if start else datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now  # one attribute read is atomic; writers hold the lock

    def advance(self, delta: timedelta) -> datetime:
        """Move the time forward by ``delta`` and return the new time."""
        if delta < timedelta(0):
            raise InvalidOperation("ManualClock cannot go backwards")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (not earlier than now)."""
        when = _aware(when)
        with self._lock:
            if when < self._now:
                raise InvalidOperation("ManualClock cannot go backwards")
            self._now = when


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
