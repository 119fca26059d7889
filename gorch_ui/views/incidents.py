"""Incidents: failures grouped by cause; retry or cancel a whole group after its preview."""

import streamlit as st

from engine import BulkAction, BulkPreview, BulkReport, GorchError
from gorch_ui import services, ui
from gorch_ui.escape import md

engine = ui.engine()
st.title("Incidents")
st.caption(
    "Failed threads of failed workflows, grouped by cause: the workflow type, the statement, "
    "the error's class and its message with ids and numbers masked."
)
ui.show_flash()

report = st.session_state.pop("inc_report", None)
if isinstance(report, BulkReport):  # what the last bulk operation did
    bad = report.skipped or report.failed or any(s == "failed" for _, s in report.done)
    (st.warning if bad else st.success)(md(report.summary()))
    for wid, why in report.skipped:
        st.markdown(md(f"- skipped {wid}: {why}"))
    for wid, e in report.failed:
        st.markdown(md(f"- refused {wid}: {e}"))
    again = [w for w, s in report.done if s == "failed"]
    if again:
        st.markdown(md(f"- failed again: {', '.join(again)}"))

type_ = st.selectbox(
    "Type", ["", *sorted(engine.workflows)], format_func=lambda s: s or "any", key="inc_type"
)
found = services.incidents(engine, type_ or None)
if not found:
    st.success("No failed workflows. Nothing to do.")
    st.stop()

n_workflows = len({w for i in found for w in i.workflow_ids})
st.markdown(
    f"**{services.plural(len(found), 'cause')}** across "
    f"**{services.plural(n_workflows, 'failed workflow')}**."
)
st.dataframe(
    services.incident_rows(found),
    hide_index=True,
    column_config={
        "cause": st.column_config.TextColumn(width="large"),
        "first seen": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
        "last seen": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
    },
)

by_key = {i.key: i for i in found}
wanted = st.query_params.get("incident")
keys = sorted(by_key, key=lambda k: k != wanted)  # ?incident=<key> opens on it
key = st.selectbox(
    "Incident",
    keys,
    format_func=lambda k: (
        f"{by_key[k].type} · {by_key[k].statement} · {by_key[k].cause[:90]} "
        f"({services.plural(by_key[k].workflows, 'workflow')})"
    ),
    key="inc_key",
)
incident = by_key[key]
st.markdown(
    f"**{md(incident.cause)}** on **{md(incident.statement)}** of **{md(incident.type)}** · "
    f"{services.plural(incident.threads, 'thread')} in "
    f"{services.plural(incident.workflows, 'workflow')} · first seen "
    f"{md(f'{incident.first_seen:%Y-%m-%d %H:%M:%S}')}, last seen "
    f"{md(f'{incident.last_seen:%Y-%m-%d %H:%M:%S}')}"
)
st.caption("The newest error of the group as it was recorded:")
st.code(incident.example, language="text")
with st.expander(f"The {services.plural(incident.workflows, 'workflow')} of this incident"):
    for wid in incident.workflow_ids[:200]:
        st.page_link(
            "views/workflow.py", label=md(wid), icon=":material/error:", query_params={"id": wid}
        )
    if incident.workflows > 200:
        st.caption(f"… and {incident.workflows - 200} more")

st.subheader("Act on the whole group")
c1, c2 = st.columns([1, 3])
action = c1.radio(
    "Action",
    [BulkAction.RETRY, BulkAction.CANCEL],
    format_func=lambda a: "Retry every workflow" if a is BulkAction.RETRY else "Cancel them all",
    key="inc_action",
)
reason = c2.text_input("Reason (recorded in each workflow's history)", key="inc_reason")
can_act = ui.operator().can_act
help_ = None if can_act else "viewers cannot act"

preview = st.session_state.get("inc_preview")
if isinstance(preview, BulkPreview) and (preview.incident != key or preview.action != action):
    preview = None  # made for another group or action: make a new one
    st.session_state.pop("inc_preview", None)

if st.button(
    "Preview what it will touch",
    key="inc_preview_button",
    disabled=not can_act,
    help=help_,
):
    preview = services.bulk_preview(engine, incident, action)
    st.session_state["inc_preview"] = preview

if isinstance(preview, BulkPreview):
    with st.container(border=True):
        st.markdown(
            f"**Preview, {preview.at:%H:%M:%S}: {md(preview.summary())}.** Each is acted on "
            "only if it has not changed since (the same version); any that has is skipped "
            "and reported."
        )
        st.dataframe(
            services.preview_rows(preview),
            hide_index=True,
            column_config={"error": st.column_config.TextColumn(width="large")},
        )
        n = len(preview.targets)
        verb = "Retry" if preview.action is BulkAction.RETRY else "Cancel"
        go, keep = st.columns([2, 1])
        confirmed = go.button(
            f"{verb} {services.plural(n, 'workflow')}",
            key="inc_run",
            type="primary",
            disabled=not n or not can_act,
            help=help_,
        )
        if keep.button("Leave it", key="inc_keep"):
            st.session_state.pop("inc_preview", None)
            st.rerun()
        if confirmed:
            bar = st.progress(0.0, text=f"0 of {n}")
            try:
                done = services.run_bulk(
                    engine,
                    ui.operator(),
                    preview,
                    reason,
                    progress=lambda i, m: bar.progress(i / m, text=f"{i} of {m}"),
                )
            except GorchError as e:
                st.error(md(f"{verb} failed: {e}"))
            else:
                st.session_state["inc_report"] = done
                st.session_state.pop("inc_preview", None)
                st.rerun()
