"""Helpers for the UI tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from engine import Engine, WaitInfo


def user_wait(engine: Engine, workflow_id: str = "demo-expense-waiting") -> WaitInfo:
    return next(w for w in engine.pending_waits(workflow_id) if w.type == "user_action")


def break_state(engine: Engine, workflow_id: str, **changes: Any) -> dict[str, Any]:
    """Rewrite a stored state as a model change leaves it: ``changes`` set fields, and a
    ``(new name,)`` tuple renames one (``amount=("amount_eur",)``). Returns the stored state."""
    now = engine.clock.now()
    rec = engine.store.acquire(workflow_id, "test", now=now, until=now + timedelta(minutes=1))
    state = dict(rec.state)
    for name, value in changes.items():
        if isinstance(value, tuple):
            state[value[0]] = state.pop(name)
        else:
            state[name] = value
    rec.state = state
    engine.store.checkpoint(rec, owner="test", waits=None, history=[])
    engine.store.release(workflow_id, "test")
    return state


def messages(at: AppTest) -> list[str]:
    """Every success, warning, error and info message on the page."""
    return [str(m.value) for kind in ("success", "warning", "error", "info") for m in at.get(kind)]


def keys(at: AppTest) -> set[str]:
    """The keys of every widget on the page."""
    return {str(w.key) for kind in ("button", "text_input", "selectbox") for w in at.get(kind)
            if getattr(w, "key", None)}  # fmt: skip


ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextmanager
def streamlit_server(tmp_path: Path, env: dict[str, str], unset: tuple[str, ...]) -> Iterator[str]:
    """``streamlit run gorch_ui`` from the repository root with ``env`` (minus ``unset``) on
    top of this process's environment; yields its URL once it answers, stops it afterwards."""
    port = free_port()
    full = {**os.environ, **env}
    for var in unset:
        full.pop(var, None)
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "gorch_ui", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=full, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start:\n{(tmp_path / 'streamlit.log').read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
