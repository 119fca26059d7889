"""Workflows: counts by status and type, and a filtered, searchable, paged table."""

import streamlit as st

from engine import WorkflowStatus
from gorch_ui import services, ui

engine = ui.engine()
st.title("Workflows")
ui.show_flash()

counts = services.counts(engine)
for col, s in zip(st.columns(len(WorkflowStatus)), WorkflowStatus, strict=True):
    col.metric(ui.status(s), counts.total[s])
with st.expander("By type"):
    st.dataframe(
        [{"type": t, **{s.value: n[s] for s in WorkflowStatus}} for t, n in counts.by_type.items()],
        hide_index=True,
    )

c1, c2, c3, c4 = st.columns([2, 2, 3, 1])
status = c1.selectbox(
    "Status", ["", *WorkflowStatus], format_func=lambda s: s or "any", key="wf_status"
)
type_ = c2.selectbox(
    "Type", ["", *sorted(engine.workflows)], format_func=lambda s: s or "any", key="wf_type"
)
search = c3.text_input("Search by id", key="wf_search", placeholder="part of an id")
size = c4.selectbox("Per page", [25, 50, 100, 200], index=1, key="wf_size")

filters = (status, type_, search, size)
if st.session_state.get("wf_filters") != filters:  # new filters start at the first page
    st.session_state["wf_filters"], st.session_state["wf_page"] = filters, 0
page = services.list_workflows(
    engine,
    status=status or None,
    type=type_ or None,
    search=search or None,
    page=st.session_state.get("wf_page", 0),
    page_size=size,
)

event = st.dataframe(
    page.rows,
    hide_index=True,
    on_select="rerun",
    selection_mode="single-row",
    key="wf_table",
    column_config={
        "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
        "updated": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
    },
)
if event.selection.rows:
    st.switch_page(
        "views/workflow.py", query_params={"id": page.rows[event.selection.rows[0]]["id"]}
    )


def _turn(delta: int) -> None:
    st.session_state["wf_page"] = max(0, st.session_state.get("wf_page", 0) + delta)


p1, p2, p3 = st.columns([1, 1, 4])
p1.button("Previous", key="wf_prev", on_click=_turn, args=(-1,), disabled=page.page == 0)
p2.button("Next", key="wf_next", on_click=_turn, args=(1,), disabled=not page.has_next)
p3.caption(
    f"Page {page.page + 1}"
    + (f" of {page.pages} · {page.total} workflows" if page.total else "")
    + " · select a row to open it"
)

with st.sidebar:
    st.divider()
    wid = st.text_input("Open workflow by id", key="wf_open")
    if st.button("Open", key="wf_open_button", disabled=not wid):
        st.switch_page("views/workflow.py", query_params={"id": wid.strip()})
    ui.action(
        "Run due work now",
        "wf_run_due",
        services.run_due,
        help="Fire due timers and retries here (a `gorch worker` does this continuously).",
    )
