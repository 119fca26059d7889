"""Definitions: each type's graph, where live threads stand on it, whether the code fits them."""

import streamlit as st

from gorch_ui import services, ui
from gorch_ui.escape import md
from gorch_ui.ui import Field

engine = ui.engine()
st.title("Definitions")
st.caption(
    "Drawn from each type's default state; the counts are the live threads of running, "
    "waiting and failed workflows."
)
ui.show_flash()

wanted = st.query_params.get("type")
types = sorted(engine.workflows, key=lambda t: (t != wanted, t))  # ?type=X opens on X
for tab, type_ in zip(st.tabs(types), types, strict=True):
    with tab:
        view = services.definition_view(engine, type_)
        note = f" (counted the newest {view.counted})" if view.counted < view.live else ""
        st.markdown(f"**{view.live}** live workflow{'' if view.live == 1 else 's'}{note}")
        if view.dot:
            st.graphviz_chart(view.dot, width="content")
        else:
            st.warning(md(f"Cannot draw {type_}: {view.error}"))
        if view.threads_at:
            rows = [{"statement": k, "live threads": n} for k, n in sorted(view.threads_at.items())]
            st.dataframe(rows, hide_index=True)

        st.subheader("Compatibility")
        if st.button("Check every unfinished workflow against this code", key=f"compat_{type_}"):
            st.session_state[f"compat_report_{type_}"] = services.compatibility(engine, type_)
        report = st.session_state.get(f"compat_report_{type_}")
        if report is not None:
            (st.success if report.ok else st.error)(report.summary())
        stranded = sorted(set(view.threads_at) - set(view.statements))
        with st.expander("Move every thread on a statement (bulk goto, one audited operation)"):
            c = st.columns(2)
            c[0].selectbox(
                "From",
                sorted(set(view.threads_at)),
                key=f"move_from_{type_}",
                help=md(f"not in the code now: {', '.join(stranded)}") if stranded else None,
            )
            c[1].selectbox("To", view.statements, key=f"move_to_{type_}")
            st.text_input("Reason", key=f"move_reason_{type_}")
            ui.confirm_action(
                "Move",
                f"move_{type_}",
                services.move,
                type_,
                Field(f"move_from_{type_}"),
                Field(f"move_to_{type_}"),
                Field(f"move_reason_{type_}"),
                preview=lambda t=type_: services.move_preview(
                    engine,
                    t,
                    st.session_state.get(f"move_from_{t}") or "",
                    st.session_state.get(f"move_to_{t}") or "",
                ),
                confirm="Move them",
                disabled=not view.threads_at,
            )
        st.page_link(
            "views/start.py",
            label=f"Start {services.a_or_an(type_)}",
            icon=":material/play_arrow:",
            query_params={"type": type_},
        )
