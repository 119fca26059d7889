"""How a ``Session`` is built: by keyword, with the engine's settings grouped in one object."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine import ManualClock, MemoryStore, RetryPolicy
from engine._session.runner import Session, SessionOptions


def test_a_session_and_its_options_take_keywords_only() -> None:
    clock, retry = ManualClock(), RetryPolicy()
    positional: Any = SessionOptions
    with pytest.raises(TypeError):
        positional(clock, {}, retry, timedelta(seconds=30))
    options = SessionOptions(clock=clock, managers={}, retry=retry, lease=timedelta(seconds=30))
    assert options.max_state_bytes is None and options.max_input_bytes is None
    session: Any = Session
    with pytest.raises(TypeError):
        session(MemoryStore(), "owner", options)
