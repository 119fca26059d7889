"""What a click on the workflow's graph opens, beside the graph where the eye is.

A waiting node opens its decision form (``gorch_ui.decide``); another statement a thread can
stand on opens the goto form, preset to it. The link carries the click in the URL
(``?id=...&decide=NAME`` or ``&goto=NAME``, ``services.node_links``), so the page opens with
the form next to the graph, not under threads and history.
"""

from __future__ import annotations

import streamlit as st

from engine import Engine
from gorch_ui import decide, services, ui
from gorch_ui.escape import md
from gorch_ui.services import WorkflowView
from gorch_ui.ui import Field


def wanted() -> tuple[str, str] | None:
    """The click the URL carries: ("decide" | "goto", statement name), or None."""
    for kind in ("decide", "goto"):
        name = st.query_params.get(kind)
        if name:
            return kind, name
    return None


def _close(kind: str) -> None:
    st.query_params.pop(kind, None)


def panel(engine: Engine, view: WorkflowView, clicked: tuple[str, str]) -> None:
    """The form the click asked for, with a button that closes it."""
    kind, name = clicked
    ui.show_flash()  # an action here reruns only the live part of the page
    if kind == "decide":
        _decide(engine, view, name)
    else:
        _goto(view, name)
    st.button("Close", key=f"click_close_{kind}", on_click=_close, args=(kind,))


def _decide(engine: Engine, view: WorkflowView, name: str) -> None:
    st.markdown(f"**Decide** {md(repr(name))}")
    found = services.inbox_page(engine, ui.operator(), workflow_id=view.info.id, wait=name)
    if not found.items:
        st.info(md(f"{name!r} is not waiting now: it may have been decided already."))
    for card in found.items:
        decide.card(card, prefix="g_", link=False)


def _goto(view: WorkflowView, name: str) -> None:
    wid, info = view.info.id, view.info
    owners = [t for t, names in view.targets.items() if name in names]
    st.markdown(f"**Move a thread to** {md(repr(name))}")
    if info.status.done:
        st.info(md(f"The workflow is {info.status.value}: no thread can move."))
        return
    if not owners:
        st.warning(f"No thread of this workflow can be moved to {md(repr(name))}.")
        return
    st.selectbox("Thread", owners, key="click_goto_thread")
    st.text_input("Reason (recorded in the history)", key="click_goto_reason")
    ui.action(
        "Go to", "click_goto", services.goto, wid, Field("click_goto_thread"), name,
        Field("click_goto_reason"), type="primary",
        disabled=view.info.state_error is not None,
    )  # fmt: skip
