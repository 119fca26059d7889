"""The decision form of one pending ``Wait``: its context, who may decide, its events as actions.

One card per wait: an approval and its timeout are one decision, shown with Approve and Deny
and "times out at 16:59" beside them. Drawn on inbox cards and beside the workflow's graph
when its waiting node is clicked (``gorch_ui.graph_clicks``); the services decide, the
engine enforces who may.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from engine import HandlerType, PendingDecision, WaitInfo
from gorch_ui import services, ui
from gorch_ui.escape import code, md
from gorch_ui.schema import form_fields
from gorch_ui.ui import Field, FormValues


def context_text(context: dict[str, Any]) -> str:
    """The decision's context as inert Markdown: ``amount: 120 · requester: ana``."""
    # The colon escaped too: the page's own text holds no markup a value could extend.
    return " · ".join(f"**{md(k)}**\\: {md(_value(v))}" for k, v in context.items())


def _value(v: Any) -> str:
    return "—" if v is None or v == "" else str(v)


def card(decision: PendingDecision, *, prefix: str = "", link: bool = True) -> None:
    """One decision, bordered: what it is, its context, who may decide, and its actions.

    Widget keys are ``prefix`` + the kind + the event's wait id (``approve_<id>``), so two
    forms of one wait on a page (``prefix`` apart) never share a key."""
    first = decision.events[0]
    with st.container(border=True, key=f"card_{prefix}{first.id}"):
        top = st.columns([3, 2])
        kind = md(decision.workflow_type) + " · " if decision.workflow_type else ""
        top[0].markdown(f"{kind}**{md(decision.wait)}**")
        if link:
            top[0].page_link(
                "views/workflow.py",
                label=md(f"{decision.workflow_id} (thread {decision.thread_id})"),
                query_params={"id": decision.workflow_id},
            )
        top[1].caption(f"waiting since {decision.created_at:%Y-%m-%d %H:%M:%S} · pc {first.pc}")
        if decision.context:
            st.markdown(context_text(decision.context))
        if decision.assignees is not None:
            st.caption("may decide: " + md(services.who_decides(decision)))
        actions(decision, prefix=prefix)


def actions(decision: PendingDecision, *, prefix: str = "") -> None:
    """The wait's events as its actions, in one row: Approve/Deny, a typed form, fire a timer."""
    people = [w for w in decision.events if w.type != HandlerType.TIMEOUT]
    timers = [w for w in decision.events if w.type == HandlerType.TIMEOUT]
    for w in people:
        if w.type == HandlerType.USER_ACTION:
            _approval(w, timers, key=f"{prefix}{w.id}")
        else:
            _event_form(w, key=f"{prefix}{w.id}")
    if not people:  # only timers: nobody decides, an operator may fire one early
        for w in timers:
            _timer(w, key=f"{prefix}{w.id}")
    elif timers:
        with st.container(horizontal=True):
            for w in timers:
                _timer(w, key=f"{prefix}{w.id}", small=True)


def _due(w: WaitInfo) -> str:
    return f"{w.due_at:%Y-%m-%d %H:%M}" if w.due_at else "when due"


def _approval(w: WaitInfo, timers: list[WaitInfo], *, key: str) -> None:
    with st.form(f"decide_{key}", border=False):
        st.text_input("Comment (a reason is required to deny)", key=f"reason_{key}")
        # One row that wraps when narrow (beside the graph): the actions, then the timers.
        with st.container(horizontal=True, vertical_alignment="center"):
            ui.action("Approve", f"approve_{key}", services.approve, w, Field(f"reason_{key}"),
                      submit=True, type="primary")  # fmt: skip
            ui.action("Deny", f"deny_{key}", services.deny, w, Field(f"reason_{key}"),
                      submit=True)  # fmt: skip
            if timers:
                st.caption(" · ".join(f"{md(t.event)}: times out at {_due(t)}" for t in timers))


def _timer(w: WaitInfo, *, key: str, small: bool = False) -> None:
    if not small:
        st.caption(f"{md(w.event)}: fires at {_due(w)}")
    ui.action(
        f"Fire {md(w.event)} now" if small else "Fire now",
        f"fire_{key}",
        services.resolve,
        w,
        None,
        help=f"Deliver {md(w.event)} now instead of at {_due(w)}",
    )


def _event_form(w: WaitInfo, *, key: str) -> None:
    schema = w.data.get("input")
    fields = form_fields(schema) if isinstance(schema, dict) else []
    st.markdown(f"event {code(w.event)}")
    with st.form(f"event_{key}", border=False):
        if fields:
            ui.form(fields, f"ev_{key}_")
            value: object = FormValues(tuple(fields), f"ev_{key}_")
        else:
            st.text_area("Input (JSON)", key=f"ev_{key}_json")
            value = Field(f"ev_{key}_json")
        ui.action("Send", f"send_{key}", services.resolve, w, value, submit=True, type="primary")
