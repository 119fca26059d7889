"""Fault-suite fixtures: the store tests' databases (SQLite and PostgreSQL), and a report.

Every run adds its counts to ``fault_report``; they are printed at the end of the pytest
session (the figures quoted in docs/reliability.md come from there).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.engine.faults.scenario import Rig
from tests.engine.store.conftest import db_url, pg_server, pg_url  # noqa: F401

LONG = os.environ.get("GORCH_LONG") == "1"
"""``GORCH_LONG=1``: more workflows and more seeds (minutes instead of seconds)."""

_LINES: list[str] = []


@pytest.fixture
def fault_report() -> list[str]:
    """Append one summary line per run; they are printed after the test session."""
    return _LINES


@pytest.fixture
def rig(db_url: str) -> Iterator[Rig]:  # noqa: F811
    """An engine on a fault-injecting store over ``db_url``, faults forced one by one."""
    r = Rig(db_url)
    yield r
    r.inner.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LINES:
        terminalreporter.write_sep("=", "fault injection")
        for line in _LINES:
            terminalreporter.write_line(line)
