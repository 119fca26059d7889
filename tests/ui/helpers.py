"""Helpers for the UI tests."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from engine import Engine, WaitInfo


def user_wait(engine: Engine, workflow_id: str = "demo-expense-waiting") -> WaitInfo:
    return next(w for w in engine.pending_waits(workflow_id) if w.type == "user_action")


def messages(at: AppTest) -> list[str]:
    """Every success, warning, error and info message on the page."""
    return [str(m.value) for kind in ("success", "warning", "error", "info") for m in at.get(kind)]


def keys(at: AppTest) -> set[str]:
    """The keys of every widget on the page."""
    return {str(w.key) for kind in ("button", "text_input", "selectbox") for w in at.get(kind)
            if getattr(w, "key", None)}  # fmt: skip
