"""Start: pick a registered workflow type and fill its initial state from its model."""

import streamlit as st

from engine import Engine
from gorch_ui import services, ui
from gorch_ui.access import Operator
from gorch_ui.escape import md
from gorch_ui.schema import form_fields
from gorch_ui.ui import Field, FormValues

engine = ui.engine()
st.title("Start a workflow")
ui.show_flash()

types = sorted(engine.workflows)
wanted = st.query_params.get("type")
type_ = st.selectbox(
    "Type", types, key="start_type", index=types.index(wanted) if wanted in types else 0
)
if type_ is None:
    st.info("No workflow types are registered (see GORCH_APP).")
    st.stop()
cls = engine.workflows[type_]
if cls.__doc__:
    st.caption(cls.__doc__.strip().splitlines()[0])

fields = form_fields(services.model_schema(engine, type_))


def start(engine: Engine, op: Operator, type_name: str, values: dict, wid: str | None) -> str:
    new = services.start(engine, op, type_name, values, wid)
    st.session_state["start_created"] = new  # for the link below
    return f"started {type_name} {new}"


with st.form("start", border=True):
    ui.form(fields, f"start_{type_}_")
    st.text_input("Workflow id (optional; a random one otherwise)", key="start_id")
    ui.action(
        "Start",
        "start_button",
        start,
        type_,
        FormValues(tuple(fields), f"start_{type_}_"),
        Field("start_id"),
        submit=True,
        type="primary",
    )
created = st.session_state.get("start_created")
if created:
    st.page_link(
        "views/workflow.py",
        label=md(f"Open {created}"),
        icon=":material/account_tree:",
        query_params={"id": created},
    )
