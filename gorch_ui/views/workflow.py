"""One workflow: the live graph, threads, waits, state and history, and the operator actions."""

import streamlit as st

from engine import GorchError, WorkflowNotFound, WorkflowStatus
from gorch_ui import graph_clicks, sandbox_panel, services, ui
from gorch_ui.escape import md
from gorch_ui.ui import Field

engine = ui.engine()
wid = st.query_params.get("id", "")
if not wid:
    st.title("Workflow")
    st.info("Open a workflow from the **Workflows** page, or add `?id=<workflow id>` to the URL.")
    st.page_link("views/workflows.py", label="All workflows", icon=":material/list:")
    st.stop()

try:
    view = services.workflow_view(engine, wid)  # the actions below act on what is stored now
except WorkflowNotFound:
    st.error(f"No workflow {md(repr(wid))}.")  # the id comes from the URL
    st.stop()
except GorchError as e:  # a type not registered, ...
    st.error(md(f"Cannot show workflow {wid!r}: {e}"))
    st.stop()
info = view.info
# The stored state no longer loads into the model (a field renamed or retyped in the code):
# nothing can run until an operator fixes it in the state editor below.
broken = info.state_error is not None
# Why the actions are disabled (else a viewer's "viewers cannot act" stays).
blocked = {"help": "The stored state does not load: fix it under State first."} if broken else {}

ui.show_flash()


@st.fragment(run_every=ui.REFRESH_SECONDS)
def live() -> None:
    view = services.workflow_view(engine, wid)
    info = view.info
    st.title(md(f"{info.type} · {info.id}"))
    cols = st.columns(4)
    cols[0].markdown(f"**{ui.status(info.status)}**")
    cols[1].caption(f"created {info.created_at:%Y-%m-%d %H:%M:%S}")
    code = f" · code {info.fingerprint}" if info.fingerprint else ""
    cols[2].caption(f"updated {info.updated_at:%Y-%m-%d %H:%M:%S} · pc {info.pc}{code}")
    if info.result is not None and not info.error:
        cols[3].success(md(f"result: {info.result}"))
    failed = services.failures(info)
    if failed:  # the error in the header, not only in the threads table
        st.error(
            f"**{md(info.type)} {md(info.id)} has failed.** "
            + "  \n".join(md(line) for line in failed)
            + "  \nRetry it below once the cause is fixed, or see every failure like it "
            "on the **Incidents** page.",
            icon=":material/error:",
        )
        st.page_link("views/incidents.py", label="Incidents", icon=":material/report:")
    elif info.error:
        st.error(f"**Finished with an error:** {md(info.error)}", icon=":material/error:")
    if info.state_error:
        st.error(
            "**The state does not load into the current model.** " + md(info.state_error),
            icon=":material/report:",
        )
        st.markdown(
            "The workflow has ended: its JSON as stored is shown under **State**."
            if info.status.done
            else "Nothing can run until it is fixed. The **State** editor below holds the JSON "
            "as stored: correct it to fit the current model, preview the changes and save them."
        )
    if view.dot:
        clicked = graph_clicks.wanted()  # a click on the graph: its form beside the graph
        chart, side = st.columns([3, 2]) if clicked else (st.container(), None)
        chart.graphviz_chart(view.dot, width="content")
        if side is not None and clicked is not None:
            with side:
                graph_clicks.panel(engine, view, clicked)
        if view.waits:
            st.caption(
                "Click a highlighted wait to decide it beside the graph, or another statement "
                "to move a thread there."
            )
    elif not view.info.state_error:  # a state that does not load is explained at the top
        st.warning(md(f"The definition cannot be drawn: {view.graph_error}"))
    st.subheader("Threads")
    st.dataframe(services.thread_rows(info), hide_index=True)
    if view.waits:
        st.subheader("Pending waits")
        for w in view.waits:
            st.page_link(
                "views/inbox.py",
                label=md(
                    f"{w.wait} · {w.event} ({w.type}) on thread {w.thread_id} since "
                    f"{w.created_at:%Y-%m-%d %H:%M:%S}: resolve in the inbox"
                ),
                icon=":material/inbox:",
                query_params={"workflow": wid, "wait": w.wait},
            )
    st.subheader("History")
    st.dataframe(
        services.history_rows(view.history),
        hide_index=True,
        column_config={"detail": st.column_config.TextColumn(width="large")},
    )
    for title, text in services.tracebacks(view.history):  # full, expandable, copyable
        with st.expander(f"Traceback · {md(title)}", icon=":material/bug_report:"):
            st.code(text, language="text")


live()
sandbox_panel.timeline(engine, wid)  # the graph as it stood after any line of the history
sandbox_panel.try_it(engine, wid)  # a fork in this browser session: nothing in it is real

st.subheader("Actions")
st.text_input("Reason (recorded in the history)", key="act_reason")
if info.status.done:  # a finished or cancelled workflow: nothing to step, run or retry
    st.caption(f"This workflow is {info.status.value}: nothing more runs.")
else:
    a = st.columns(4)
    question = st.container()  # where Retry and Cancel ask, full width under the buttons
    with a[0]:
        ui.action(
            "Step once", "act_step", services.step, wid, Field("act_reason"), disabled=broken,
            **blocked,
        )  # fmt: skip
    with a[1]:
        ui.action(
            "Execute", "act_execute", services.execute, wid, Field("act_reason"),
            disabled=broken, **blocked,
        )  # fmt: skip
    with a[2]:
        ui.confirm_action(
            "Retry",
            "act_retry",
            services.retry,
            wid,
            Field("act_reason"),
            preview=lambda: services.retry_preview(info),
            disabled=info.status is not WorkflowStatus.FAILED or broken,
            area=question,
            **blocked,
        )
    with a[3]:
        ui.confirm_action(
            "Cancel",
            "act_cancel",
            services.cancel,
            wid,
            Field("act_reason"),
            preview=lambda: services.cancel_preview(view),
            confirm="Cancel for good",
            disabled=broken,
            area=question,
            **blocked,
        )

g = st.columns([2, 3, 1])
thread = g[0].selectbox("Thread", list(view.targets), key="goto_thread")
g[1].selectbox("Move it to", view.targets.get(thread or "", []), key="goto_statement")
with g[2]:
    st.write("")
    ui.action(
        "Go to",
        "act_goto",
        services.goto,
        wid,
        Field("goto_thread"),
        Field("goto_statement"),
        Field("act_reason"),
        disabled=info.status.done or broken,
    )

st.subheader("State")
if broken:
    st.caption("As stored (it does not load into the current model):")
    st.json(view.stored_state, expanded=True)
if info.status.done:
    if not broken:
        st.json(info.state.model_dump(mode="json"))
else:
    if st.session_state.get("state_for") != (wid, info.version):  # reload after any change
        st.session_state["state_for"] = (wid, info.version)
        st.session_state["state_editor"] = services.editable_state(view)
        st.session_state.pop("state_preview", None)
    st.text_area(
        "Fixed state (JSON, validated by the model)"
        if broken
        else "State (JSON, validated by the model)",
        key="state_editor",
        height=220,
    )

    def preview() -> None:
        try:
            st.session_state["state_preview"] = services.preview_state(
                engine, wid, st.session_state["state_editor"]
            )
        except GorchError as e:
            st.session_state["state_preview"] = None
            ui.flash("error", f"Invalid state: {e}", key="state_preview_button")

    st.button("Preview changes", key="state_preview_button", on_click=preview)
    ui.show_message("state_preview_button")
    diff = st.session_state.get("state_preview")
    if diff is not None:
        if diff.changed:
            st.code(diff.text, language="diff")
            ui.action(
                "Save state",
                "state_save",
                services.update_state,
                wid,
                Field("state_editor"),
                Field("act_reason"),
                type="primary",
            )
        else:
            st.info("No changes.")
