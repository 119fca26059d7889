"""UI fixtures: the app on a memory or a SQLite store, seeded with the demo workflows.

Each test gets its own database URL (``memory://<uuid>`` or a temporary SQLite file), so the
engine the app caches with ``st.cache_resource`` is per test; the test reaches that same
engine through ``engine``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("streamlit", reason="the UI tests need the ui extra: pip install -e '.[ui]'")

import streamlit as st
from streamlit.testing.v1 import AppTest

from engine import Engine
from engine.config import DEFAULT_APP
from gorch_ui import APP_FILE, ui

AUTH_VARS = ("GORCH_UI_PASSWORD", "GORCH_UI_VIEWER_PASSWORD", "GORCH_UI_OPERATORS", "GORCH_APP",
             "GORCH_UI_SECRET_FILE", "GORCH_UI_SESSION_HOURS", "GORCH_UI_LOCKOUT_ATTEMPTS",
             "GORCH_UI_LOCKOUT_MINUTES")  # fmt: skip
TEST_SECRET = "test-secret-" + "0123456789" * 4


@pytest.fixture(params=["memory", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://{uuid.uuid4().hex}"
    return f"sqlite:///{tmp_path / 'gorch.db'}"


@pytest.fixture
def ui_env(monkeypatch: pytest.MonkeyPatch, db_url: str) -> Iterator[str]:
    """The environment the app reads: this test's database, no auth, inline execution."""
    monkeypatch.setenv("GORCH_DB_URL", db_url)
    monkeypatch.setenv("GORCH_UI_EXECUTE", "inline")
    for var in AUTH_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GORCH_UI_SECRET", TEST_SECRET)  # no secret file in the user's home
    st.cache_resource.clear()
    yield db_url
    st.cache_resource.clear()


@pytest.fixture
def engine(ui_env: str) -> Engine:
    """The very engine the app uses (seeded with the demo workflows on first use)."""
    return ui._open(ui_env, DEFAULT_APP)


@pytest.fixture
def open_page(ui_env: str) -> Callable[..., AppTest]:
    """``open_page("inbox", name="ana", workflow=...)``: the app run on that page.

    ``name`` is typed into the sidebar (no auth configured); other keywords become query
    parameters. Fails the test if the page raised.
    """

    def open_(page: str | None = None, *, name: str | None = "ana", **query: Any) -> AppTest:
        at = AppTest.from_file(str(APP_FILE), default_timeout=60).run()
        if name is not None and "operator_name" in {t.key for t in at.text_input}:
            at.text_input(key="operator_name").set_value(name)
        if page is not None:
            at.switch_page(f"views/{page}.py")
        for k, v in query.items():
            at.query_params[k] = v
        at.run()
        assert not at.exception, at.exception
        return at

    return open_
