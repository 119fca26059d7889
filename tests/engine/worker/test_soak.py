"""The soak in quick mode: 300 workflows through two worker processes on PostgreSQL, and
nothing left half-way (``bench/soak.py``; the full 10,000-workflow run is in
docs/reliability.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.postgres
def test_quick_soak_finishes_everything_and_leaves_nothing_behind(pg_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--quick", "--db", pg_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-3000:]
    rows = dict(re.findall(r"^\| (\S.*?) +\| (.*) \|$", out, re.MULTILINE))
    assert rows["workflows finished"] == "300/300"
    assert rows["leftovers"] == "0"
    assert rows["callbacks in history"] == "driver 150, timer 150"
    assert rows["step executions"] == "finish 300, start 300"
    assert rows["step executions repeated / missing"] == "0 / 0"
    assert rows["worker exit codes"] == "0 0"
    for worker in ("worker 1", "worker 2"):
        start, _, end, peak = rows[f"{worker} RSS start / 50% / end / peak"][:-4].split(" / ")
        assert 0 < float(start) <= float(peak) and 0 < float(end) <= float(peak), rows
    assert out.rstrip().endswith("soak: OK")
