"""Inbox: every pending wait, newest first; approve / deny, typed event forms, fire timers."""

import streamlit as st

from engine import HandlerType, WaitInfo
from gorch_ui import services, ui
from gorch_ui.escape import code, md
from gorch_ui.schema import form_fields
from gorch_ui.ui import Field, FormValues

engine = ui.engine()
st.title("Inbox")

wanted_workflow = st.query_params.get("workflow")
wanted_wait = st.query_params.get("wait")
if wanted_workflow:
    # Query parameters come from a link anyone may have written: shown, never as Markdown.
    st.info(f"Showing **{md(wanted_wait or 'every wait')}** of workflow {code(wanted_workflow)}.")
    if st.button("Show the whole inbox", key="inbox_all"):
        st.query_params.clear()
        st.rerun()
type_ = st.selectbox(
    "Type", ["", *services.wait_types(engine)], key="inbox_type", format_func=lambda t: t or "any"
)


def wait_card(w: WaitInfo) -> None:
    with st.container(border=True):
        top = st.columns([3, 2])
        top[0].markdown(f"**{md(w.wait)}** · {code(w.event)} · {md(w.type)}")
        top[0].page_link(
            "views/workflow.py",
            label=md(f"{w.workflow_id} (thread {w.thread_id})"),
            query_params={"id": w.workflow_id},
        )
        top[1].caption(f"waiting since {w.created_at:%Y-%m-%d %H:%M:%S} · pc {w.pc}")
        if w.type == HandlerType.USER_ACTION:
            with st.form(f"decide_{w.id}", border=False):
                st.text_input("Reason (required to deny)", key=f"reason_{w.id}")
                b = st.columns(2)
                with b[0]:
                    ui.action(
                        "Approve",
                        f"approve_{w.id}",
                        services.approve,
                        w,
                        Field(f"reason_{w.id}"),
                        submit=True,
                        type="primary",
                    )
                with b[1]:
                    ui.action(
                        "Deny",
                        f"deny_{w.id}",
                        services.deny,
                        w,
                        Field(f"reason_{w.id}"),
                        submit=True,
                    )
        elif w.type == HandlerType.TIMEOUT:
            due = f"{w.due_at:%Y-%m-%d %H:%M:%S}" if w.due_at else "when due"
            st.caption(f"fires at {due}")
            ui.action("Fire now", f"fire_{w.id}", services.resolve, w, None)
        else:
            schema = w.data.get("input")
            fields = form_fields(schema) if isinstance(schema, dict) else []
            with st.form(f"event_{w.id}", border=False):
                if fields:
                    ui.form(fields, f"ev_{w.id}_")
                    value: object = FormValues(tuple(fields), f"ev_{w.id}_")
                else:
                    st.text_area("Input (JSON)", key=f"ev_{w.id}_json")
                    value = Field(f"ev_{w.id}_json")
                ui.action(
                    "Send", f"send_{w.id}", services.resolve, w, value, submit=True, type="primary"
                )


@st.fragment(run_every=ui.REFRESH_SECONDS)
def waits() -> None:
    ui.show_flash()  # the buttons below rerun only this fragment
    found = services.inbox(
        engine, type=type_ or None, workflow_id=wanted_workflow or None, wait=wanted_wait or None
    )
    if not found:
        st.success(
            "Nothing is waiting."
            if not wanted_workflow
            else md(
                f"No pending wait {wanted_wait or ''} in workflow {wanted_workflow}: "
                "it may have been resolved already."
            )
        )
    for w in found:
        wait_card(w)


waits()
